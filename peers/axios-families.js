// wechatpay-axios-plugin (npm) driving one product family end to end (tests/test_peers_families.py).
// Reads {family, plan, ...merchant config} on stdin, prints one JSON result line. Signing
// (requestInterceptor), response verification (responseVerifier) and the encryption of sensitive
// fields (Rsa.encrypt) are the plugin's own; only baseURL points at the local server.
'use strict';
const fs = require('fs');
const { Wechatpay, Rsa, Formatter } = require('wechatpay-axios-plugin');

let lastResponse = null;

// One step: the answer as the plugin returns it after its verifier accepted the signature (a
// rejected signature throws; its code is recorded as `rejected`).
async function step(call) {
  try {
    const res = await call();
    lastResponse = res;
    return {
      status: res.status,
      body: res.data === '' ? null : res.data,
      serial: res.headers['wechatpay-serial'],
      verified: true,
    };
  } catch (err) {
    return { rejected: err.code || String(err.message).slice(0, 200) };
  }
}

// The employee's side (inside WeChat in real life): consent through the sandbox control API.
async function consent(cfg, token) {
  const res = await fetch(`${cfg.base_url}/sandbox/webizpay/authorizations`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${cfg.control_token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ token }),
  });
  return { status: res.status, body: await res.json() };
}

async function recharge(wxpay, plan) {
  const employees = wxpay.v3.platsolution.ecommerce.rechargeEmployees;
  const one = employees.subMchid._sub_mchid_;
  const ids = { sub_mchid: plan.sub_mchid, sp_openid: plan.sp_openid };
  return {
    add: await step(() => employees.post(ids)),
    list: await step(() => one.get(ids)),
    // R3: body-less POST, signed over an empty body (the plugin signs JSON.stringify(undefined) as '').
    delete: await step(() => one.spOpenid._sp_openid_.chain('delete').post(undefined, ids)),
    list_after: await step(() => one.get(ids)),
    // a refusal is signed too, and verified (validateStatus lets the verifier see every status)
    refused: await step(() => employees.post({ ...ids, sub_mchid: plan.foreign_sub_mchid })),
  };
}

async function webizpay(wxpay, plan, cfg) {
  const who = { sp_mchid: plan.sp_mchid, sub_mchid: plan.sub_mchid };
  const user = wxpay.v3.webizpay.users._user_id_;
  const out = {};
  out.authorize = await step(() => user.authorizationUrl.post(
    { ...who, application_type: plan.application_type }, { user_id: plan.user_id },
  ));
  const token = new URL(out.authorize.body.authorization_url).searchParams.get('token');
  out.consent = await consent(cfg, token);
  const employeeId = out.consent.body.employee_id;
  out.state = await step(() => user.authorizationState.get({ user_id: plan.user_id, params: who }));
  const employee = wxpay.v3.webizpay.employees._employee_id_;
  out.issue = await step(() => employee.quotaCards.post(plan.card, { employee_id: employeeId }));
  const card = { employee_id: employeeId, card_no: out.issue.body.card_no };
  out.query = await step(() => employee.quotaCards._card_no_.get({ ...card, params: who }));
  out.cancel = await step(() => employee.quotaCards._card_no_.cancel.post(
    { ...who, reason: plan.cancel_reason }, card,
  ));
  out.revoke = await step(() => employee.revoke.post(who, { employee_id: employeeId }));
  out.query_after = await step(() => employee.quotaCards._card_no_.get({ ...card, params: who }));
  return out;
}

// Sets the value at a JSON pointer ("/contact_info/name") through fn.
function update(doc, pointer, fn) {
  const parts = pointer.split('/').slice(1);
  const last = parts.pop();
  const node = parts.reduce((n, p) => n[p], doc);
  node[last] = fn(node[last]);
}

async function apply4subject(wxpay, plan, cfg) {
  const platformKey = Rsa.from(cfg.platform_key, Rsa.KEY_TYPE_PUBLIC);
  const body = JSON.parse(JSON.stringify(plan.applyment));
  plan.sensitive.forEach((p) => update(body, p, (plain) => Rsa.encrypt(plain, platformKey)));
  const applyment = wxpay.v3.apply4subject.applyment;
  const code = { business_code: body.business_code };
  const out = {
    submit: await step(() => applyment.post(body, { headers: { 'Wechatpay-Serial': cfg.platform_serial } })),
    query: await step(() => applyment.get({ params: code })),
    // A3: body-less POST answered 204 with a signed empty body, which the verifier must accept.
    cancel: await step(() => applyment._business_code_.cancel.post(undefined, code)),
  };
  // Its verification is not vacuous on the empty body: one byte more and Rsa.verify refuses.
  const h = lastResponse.headers;
  out.cancel.tampered_verified = Rsa.verify(
    Formatter.response(h['wechatpay-timestamp'], h['wechatpay-nonce'], ' '), h['wechatpay-signature'], platformKey,
  );
  out.query_after = await step(() => applyment.get({ params: code }));
  return out;
}

const FAMILIES = { recharge, webizpay, apply4subject };

async function main() {
  const cfg = JSON.parse(fs.readFileSync(0, 'utf8'));
  const wxpay = new Wechatpay({
    mchid: cfg.mchid,
    serial: cfg.serial_no,
    privateKey: cfg.private_key,
    // the platform certificate (certificate mode) or WeChat Pay public key (public-key mode)
    certs: { [cfg.platform_serial]: cfg.platform_key },
    baseURL: `${cfg.base_url}/`,
    // The plugin skips verification for non-2xx answers; accepting every status makes its verifier
    // run on error bodies too, so a refusal is still a verified answer.
    validateStatus: () => true,
  });
  const out = await FAMILIES[cfg.family](wxpay, cfg.plan, cfg);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ fatal: String(err && err.stack ? err.stack : err) })}\n`);
  process.exit(1);
});
