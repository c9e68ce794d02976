// Black-box driver for wechatpay-node-v3 (npm). Reads a JSON config on stdin, prints one JSON result.
// The library hard-codes https://api.mch.weixin.qq.com; it offers createHttp() to plug in the HTTP
// transport, so the harness swaps only the transport (host -> local server). Signing
// (buildAuthorization), certificate download/decryption (fetchCertificates) and response
// verification (verifySign) are the library's own code.
'use strict';
const fs = require('fs');
const WxPay = require('wechatpay-node-v3');

const REAL_HOST = 'https://api.mch.weixin.qq.com';

class LoopbackHttp {
  constructor(base) { this.base = base; this.last = null; }

  async get(url, headers) {
    const res = await fetch(url.replace(REAL_HOST, this.base), { headers });
    const text = await res.text();
    this.last = { status: res.status, text, headers: Object.fromEntries(res.headers.entries()) };
    let data = text;
    try { data = JSON.parse(text); } catch (e) { /* not JSON */ }
    return { status: res.status, data };
  }
}

async function verify(pay, last, apiv3Key) {
  return pay.verifySign({
    timestamp: last.headers['wechatpay-timestamp'],
    nonce: last.headers['wechatpay-nonce'],
    serial: last.headers['wechatpay-serial'],
    signature: last.headers['wechatpay-signature'],
    body: last.text, // the exact bytes received; the library would JSON.stringify an object
    apiSecret: apiv3Key,
  });
}

async function main() {
  const cfg = JSON.parse(fs.readFileSync(0, 'utf8'));
  const pay = new WxPay({
    appid: 'wx0000000000000000',
    mchid: cfg.mchid,
    serial_no: cfg.serial_no,
    publicKey: Buffer.from(cfg.certificate),
    privateKey: Buffer.from(cfg.private_key),
    key: cfg.apiv3_key,
  });
  const http = new LoopbackHttp(cfg.base_url);
  pay.createHttp(http);
  const out = {};
  const certs = await pay.get_certificates(cfg.apiv3_key);
  const certResponse = http.last;
  out.certificates = {
    status: certResponse.status,
    serials: certs.map((c) => c.serial_no),
    public_keys: certs.map((c) => c.publicKey),
  };
  // verifySign fetches the certificates itself (fetchCertificates) when the serial is unknown.
  out.certificates.verified = await verify(pay, certResponse, cfg.apiv3_key);
  const tampered = { ...certResponse, text: `${certResponse.text} ` };
  out.certificates.tampered_verified = await verify(pay, tampered, cfg.apiv3_key);

  const url = `${REAL_HOST}/v3/certificates?algorithm_type=BOGUS`;
  await http.get(url, pay.getHeaders(pay.buildAuthorization('GET', url)));
  const errResponse = http.last;
  out.error = {
    status: errResponse.status,
    body: JSON.parse(errResponse.text),
    serial: errResponse.headers['wechatpay-serial'],
    verified: await verify(pay, errResponse, cfg.apiv3_key),
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err) => {
  process.stdout.write(`${JSON.stringify({ fatal: String(err && err.stack ? err.stack : err) })}\n`);
  process.exit(1);
});
