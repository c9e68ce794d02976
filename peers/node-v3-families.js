// wechatpay-node-v3 (npm) driving one product family end to end (tests/test_peers_families.py).
// Reads {family, plan, ...merchant config} on stdin, prints one JSON result line. The library has no
// methods for these families, so each call is built as its own methods build theirs: buildAuthorization
// + getHeaders over its createHttp() transport (ours only swaps the host and keeps the raw text).
// Certificates (get_certificates), verification (verifySign) and encryption (publicEncrypt) are its own.
'use strict';
const fs = require('fs');
const WxPay = require('wechatpay-node-v3');

const REAL_HOST = 'https://api.mch.weixin.qq.com';

class LoopbackHttp {
  constructor(base) { this.base = base; this.last = null; }

  async send(method, url, params, headers) {
    const init = { method, headers };
    if (params !== undefined) init.body = JSON.stringify(params);
    const res = await fetch(url.replace(REAL_HOST, this.base), init);
    const text = await res.text();
    this.last = { status: res.status, text, headers: Object.fromEntries(res.headers.entries()) };
    let data = text;
    try { data = JSON.parse(text); } catch (e) { /* not JSON (204) */ }
    return { status: res.status, data };
  }

  get(url, headers) { return this.send('GET', url, undefined, headers); }

  post(url, params, headers) { return this.send('POST', url, params, headers); }
}

let pay;
let http;
let apiv3Key;
let lastRaw; // the last answer of call(); verifySign may fetch certificates through http meanwhile

async function verify(last) {
  return pay.verifySign({
    timestamp: last.headers['wechatpay-timestamp'],
    nonce: last.headers['wechatpay-nonce'],
    serial: last.headers['wechatpay-serial'],
    signature: last.headers['wechatpay-signature'],
    body: last.text, // the exact bytes received; the library would JSON.stringify an object
    apiSecret: apiv3Key,
  });
}

// One call as the library's own methods make it (e.g. Pay.prototype.close): sign, send, and verify
// the answer with verifySign.
async function call(method, path, params, extraHeaders = {}) {
  const url = `${REAL_HOST}${path}`;
  const auth = pay.buildAuthorization(method, url, params);
  const type = method === 'POST' ? { 'Content-Type': 'application/json' } : {};
  await http.send(method, url, params, pay.getHeaders(auth, { ...type, ...extraHeaders }));
  const { last } = http;
  lastRaw = last;
  return {
    status: last.status,
    body: last.text ? JSON.parse(last.text) : null,
    serial: last.headers['wechatpay-serial'],
    // a 401 carries no Wechatpay-* headers (as WeChat's), so there is nothing to verify
    verified: last.headers['wechatpay-signature'] ? await verify(last) : null,
  };
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

async function recharge(plan) {
  const base = '/v3/platsolution/ecommerce/recharge-employees';
  const one = `${base}/sub-mchid/${plan.sub_mchid}`;
  const del = `${one}/sp-openid/${plan.sp_openid}/delete`;
  return {
    add: await call('POST', base, { sub_mchid: plan.sub_mchid, sp_openid: plan.sp_openid }),
    list: await call('GET', one),
    // Quirk: getSignature drops the empty body's line ("POST\n<url>\n<ts>\n<nonce>\n", one "\n"
    // short), so a body-less POST is refused with 401 SIGN_ERROR (unsigned, as WeChat's 401s).
    delete_bodyless: await call('POST', del),
    // The workaround its users have: an empty JSON object, signed and sent as "{}" (R3 ignores it).
    delete: await call('POST', del, {}),
    list_after: await call('GET', one),
    refused: await call('POST', base, { sub_mchid: plan.foreign_sub_mchid, sp_openid: plan.sp_openid }),
  };
}

async function webizpay(plan, cfg) {
  const who = { sp_mchid: plan.sp_mchid, sub_mchid: plan.sub_mchid };
  const qs = `sp_mchid=${plan.sp_mchid}&sub_mchid=${plan.sub_mchid}`;
  const out = {};
  out.authorize = await call('POST', `/v3/webizpay/users/${plan.user_id}/authorization-url`,
    { ...who, application_type: plan.application_type });
  const token = new URL(out.authorize.body.authorization_url).searchParams.get('token');
  out.consent = await consent(cfg, token);
  const employee = `/v3/webizpay/employees/${out.consent.body.employee_id}`;
  out.state = await call('GET', `/v3/webizpay/users/${plan.user_id}/authorization-state?${qs}`);
  out.issue = await call('POST', `${employee}/quota-cards`, plan.card);
  const card = `${employee}/quota-cards/${out.issue.body.card_no}`;
  out.query = await call('GET', `${card}?${qs}`);
  out.cancel = await call('POST', `${card}/cancel`, { ...who, reason: plan.cancel_reason });
  // W8 in seed 004's singular spelling (/employee/); the other peers use /employees/.
  out.revoke = await call('POST', `/v3/webizpay/employee/${out.consent.body.employee_id}/revoke`, who);
  out.query_after = await call('GET', `${card}?${qs}`);
  return out;
}

function update(doc, pointer, fn) {
  const parts = pointer.split('/').slice(1);
  const last = parts.pop();
  const node = parts.reduce((n, p) => n[p], doc);
  node[last] = fn(node[last]);
}

async function apply4subject(plan, cfg) {
  // The platform key comes from the library's own certificate download and decryption (the newest).
  const certs = await pay.get_certificates(apiv3Key);
  const platform = certs.reduce((a, b) => (a.expire_time >= b.expire_time ? a : b));
  const body = JSON.parse(JSON.stringify(plan.applyment));
  plan.sensitive.forEach((p) => update(body, p, (plain) => pay.publicEncrypt(plain, platform.publicKey)));
  const base = '/v3/apply4subject/applyment';
  const out = {
    platform_serial: platform.serial_no,
    submit: await call('POST', base, body, { 'Wechatpay-Serial': platform.serial_no }),
  };
  // By applyment_id here (the other peers use business_code), in the query and in the cancel path.
  const id = out.submit.body.applyment_id;
  const qs = `applyment_id=${id}`;
  out.query = await call('GET', `${base}?${qs}`);
  // A3 is body-less too; the same "{}" workaround (the server ignores a body on A3).
  out.cancel = await call('POST', `${base}/${id}/cancel`, {});
  // The verifier is not vacuous on the empty 204 body: one byte more and it refuses.
  out.cancel.tampered_verified = await verify({ ...lastRaw, text: ' ' });
  out.query_after = await call('GET', `${base}?${qs}`);
  return out;
}

const FAMILIES = { recharge, webizpay, apply4subject };

async function main() {
  const cfg = JSON.parse(fs.readFileSync(0, 'utf8'));
  apiv3Key = cfg.apiv3_key;
  pay = new WxPay({
    appid: 'wx0000000000000000',
    mchid: cfg.mchid,
    serial_no: cfg.serial_no,
    publicKey: Buffer.from(cfg.certificate),
    privateKey: Buffer.from(cfg.private_key),
    key: cfg.apiv3_key,
  });
  http = new LoopbackHttp(cfg.base_url);
  pay.createHttp(http);
  const out = await FAMILIES[cfg.family](cfg.plan, cfg);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ fatal: String(err && err.stack ? err.stack : err) })}\n`);
  process.exit(1);
});
