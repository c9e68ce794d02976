// Black-box driver for wechatpay-axios-plugin (npm). Reads a JSON config on stdin, prints one JSON
// result line. Signing (requestInterceptor) and response verification (responseVerifier) are the
// library's own; we only point its baseURL at the local server and let it verify non-2xx too.
'use strict';
const fs = require('fs');
const { Wechatpay, Aes } = require('wechatpay-axios-plugin');

async function main() {
  const cfg = JSON.parse(fs.readFileSync(0, 'utf8'));
  const wxpay = new Wechatpay({
    mchid: cfg.mchid,
    serial: cfg.serial_no,
    privateKey: cfg.private_key,
    certs: { [cfg.platform_serial]: cfg.platform_certificate },
    baseURL: `${cfg.base_url}/`,
    // Quirk: the plugin skips verification for non-2xx answers; accepting every status makes its
    // responseVerifier run on WeChat error bodies as well (a failed check throws).
    validateStatus: () => true,
  });
  const out = {};
  const certs = await wxpay.v3.certificates.get();
  out.certificates = { status: certs.status, serials: [], decrypted: [] };
  for (const item of certs.data.data) {
    const enc = item.encrypt_certificate;
    out.certificates.serials.push(item.serial_no);
    out.certificates.decrypted.push(Aes.AesGcm.decrypt(enc.ciphertext, cfg.apiv3_key, enc.nonce, enc.associated_data));
  }
  const bad = await wxpay.v3.certificates.get({ params: { algorithm_type: 'BOGUS' } });
  out.error = { status: bad.status, body: bad.data, serial: bad.headers['wechatpay-serial'] };
  // Tampering check: a verifier that knows only a wrong key must refuse our answer.
  const wrong = new Wechatpay({
    mchid: cfg.mchid,
    serial: cfg.serial_no,
    privateKey: cfg.private_key,
    certs: { [cfg.platform_serial]: cfg.wrong_certificate },
    baseURL: `${cfg.base_url}/`,
  });
  try {
    await wrong.v3.certificates.get();
    out.wrong_key = 'accepted';
  } catch (err) {
    out.wrong_key = err.code || String(err.message).slice(0, 80);
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ fatal: String(err && err.stack ? err.stack : err) })}\n`);
  process.exit(1);
});
