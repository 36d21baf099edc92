// `npm run sms:code -- <verificationId> [code]`: plays the SMS provider locally and delivers a
// code to POST /webhooks/sms, signed with SMS_WEBHOOK_SECRET like the real provider would
// (`X-Signature: t=<now>,sha256=<HMAC of "<t>.<body>">`, valid for a few minutes).
import { signSmsBody } from '../src/api/webhooks/sms.js';
import { loadConfigOrExit, loadLocalStackEnv, required } from '../src/config.js';

loadLocalStackEnv();
const [verificationId, code = String(Math.floor(100000 + Math.random() * 900000))] =
  process.argv.slice(2);
if (!verificationId) {
  console.error('Usage: npm run sms:code -- <verificationId> [code]');
  process.exit(2);
}
const config = loadConfigOrExit();
const secret = required(
  config.sms.webhookSecret,
  'SMS_WEBHOOK_SECRET',
  'to sign the webhook (npm start sets it)',
);
const body = JSON.stringify({ verificationId, code });
const res = await fetch(`http://localhost:${config.port}/webhooks/sms`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', 'x-signature': signSmsBody(secret, body) },
  body,
});
console.log(res.status, await res.text());
process.exitCode = res.ok ? 0 : 1;
