// `npm run sms:code -- <verificationId> [code] [--url <api>]`: plays the SMS provider and delivers
// a code to POST /webhooks/sms of any API (--url, else API_URL, else the local one), signed with
// SMS_WEBHOOK_SECRET like the real provider would (`X-Signature: t=<now>,sha256=<HMAC of
// "<t>.<body>">`, valid for a few minutes).
import { signSmsBody } from '../src/api/webhooks/sms.js';
import { loadConfigOrExit, loadLocalStackEnv, required } from '../src/config.js';
import { UsageError, parseSmsCodeArgs } from './local-tools.js';

loadLocalStackEnv();
const config = loadConfigOrExit();
let args;
try {
  args = parseSmsCodeArgs(process.argv.slice(2), { apiUrl: config.apiUrl, port: config.port }, () =>
    String(Math.floor(100000 + Math.random() * 900000)),
  );
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  console.error(`${err.message}\n\n${err.usage}`);
  process.exit(2);
}
const secret = required(
  config.sms.webhookSecret,
  'SMS_WEBHOOK_SECRET',
  "to sign the webhook (npm start sets it; against another API, use that API's secret)",
);
const body = JSON.stringify({ verificationId: args.verificationId, code: args.code });
let res: Response;
try {
  res = await fetch(args.webhookUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-signature': signSmsBody(secret, body) },
    body,
  });
} catch (err) {
  console.error(`Could not reach ${args.webhookUrl}: ${(err as Error).message}`);
  process.exit(1);
}
console.log(`code ${args.code} → ${res.status} ${await res.text()}`);
process.exitCode = res.ok ? 0 : 1;
