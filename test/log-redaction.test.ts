// A full flow logged at debug — a customer created with an e-mail, a token, a top-up paid through
// a signed Stripe webhook with a saved card, a verification completed through the signed SMS
// webhook — and none of the e-mail, token, secrets, signatures or card data in what was written.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signSmsBody } from '../src/api/webhooks/sms.js';
import type { App } from '../src/api/app.js';
import type { Database } from '../src/db/client.js';
import { createLogger } from '../src/logger.js';
import { SimulatedSmsProvider } from '../src/sms/provider.js';
import type { Client } from '@temporalio/client';
import {
  JWT_SECRET,
  SMS_SECRET,
  adminToken,
  connectTestClient,
  customerToken,
  eventually,
  jsonRequest,
  startTestWorker,
  testApp,
  testDatabase,
  uniqueId,
} from './helpers.js';
import {
  StripeDouble,
  TEST_STRIPE_KEY,
  TEST_WEBHOOK_SECRET,
  sessionObject,
  signatureFor,
  stripeEvent,
  startStripeDouble,
} from './stripe.js';

const lines: string[] = [];
const logger = createLogger({
  level: 'debug',
  destination: { write: (line: string) => void lines.push(line) },
});

const EMAIL = `log-flow-${randomBytes(4).toString('hex')}@example.com`;
const CARD_NUMBER = '4000056655665556';
const LAST4 = '5556';
const service = `log-flow-${randomBytes(4).toString('hex')}`;

let db: Database;
let temporal: Client;
let stripe: StripeDouble;
let worker: Awaited<ReturnType<typeof startTestWorker>>;
let app: App;

beforeAll(async () => {
  db = testDatabase();
  temporal = await connectTestClient();
  stripe = await startStripeDouble();
  const taskQueue = uniqueId('log-redaction');
  const sms = new SimulatedSmsProvider();
  await db.sql`insert into prices (service, country, price) values (${service}, 'US', 40)`;
  worker = await startTestWorker(db, taskQueue, { stripe: stripe.gateway, sms }, {}, { logger });
  app = testApp(db, temporal, taskQueue, { logger, stripeWebhookSecret: TEST_WEBHOOK_SECRET });
});

afterAll(async () => {
  await worker?.stop();
  if (db) await db.sql`delete from prices where service = ${service}`;
  await stripe?.close();
  await temporal?.connection.close();
  await db?.close();
});

/** Every value in the parsed lines, with the key it sits under. */
function* fields(value: unknown, key = ''): Generator<[string, unknown]> {
  yield [key, value];
  if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) yield* fields(v, k);
  }
}

describe('the logs of a full flow', () => {
  it('hold none of the e-mail, token, secrets, signatures or card data', async () => {
    const admin = await adminToken();

    // A customer with an e-mail, looked up by it (the e-mail in the URL, as a customer's
    // reference can be).
    const created = await app.request(
      '/v1/customers',
      jsonRequest('POST', { email: EMAIL }, admin),
    );
    expect(created.status).toBe(201);
    const { id: customerId } = (await created.json()) as { id: string };
    const byEmail = await app.request(`/v1/customers/${encodeURIComponent(EMAIL)}`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(byEmail.status).toBe(200);
    const token = await customerToken(customerId);

    // A top-up paid at Stripe with a saved card, reported by a signed webhook carrying the
    // e-mail and the card the way Stripe events do.
    const checkout = await app.request(
      '/v1/checkouts',
      jsonRequest('POST', { pack: 'small', saveCard: true }, token),
    );
    expect(checkout.status).toBe(202);
    const { id: paymentId } = (await checkout.json()) as { id: string };
    expect(stripe.pay(paymentId)).toBe(true);
    const session = stripe.session(paymentId);
    stripe.cards.get(session.paymentMethodId!)!.last4 = LAST4;
    const event = JSON.stringify(
      stripeEvent(
        'checkout.session.completed',
        sessionObject(session, {
          customer_email: EMAIL,
          customer_details: { email: EMAIL, name: 'Jane Doe' },
          payment_method_details: { card: { brand: 'visa', last4: LAST4, number: CARD_NUMBER } },
        }),
      ),
    );
    const signature = signatureFor(event);
    const paid = await app.request('/webhooks/stripe', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'stripe-signature': signature },
      body: event,
    });
    expect(paid.status).toBe(200);
    await eventually(async () => {
      const res = await app.request(`/v1/checkouts/${paymentId}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      const body = (await res.json()) as { status: string };
      return body.status === 'credited' ? true : undefined;
    });
    // The card is saved once the payment is credited (the webhook carried it, and so did Stripe).
    await eventually(async () => {
      const res = await app.request('/v1/wallet/auto-topup', {
        headers: { authorization: `Bearer ${token}` },
      });
      return (await res.text()).includes(LAST4) ? true : undefined;
    });

    // A verification, its code delivered through the signed SMS webhook.
    const bought = await app.request(
      '/v1/verifications',
      jsonRequest('POST', { service, country: 'US' }, token),
    );
    expect(bought.status).toBe(202);
    const { id: verificationId } = (await bought.json()) as { id: string };
    const state = async () => {
      const res = await app.request(`/v1/verifications/${verificationId}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      return (await res.json()) as { status: string };
    };
    await eventually(async () => ((await state()).status === 'active' ? true : undefined));
    const smsBody = JSON.stringify({ verificationId, code: '424242' });
    const smsSignature = signSmsBody(SMS_SECRET, smsBody);
    const delivered = await app.request('/webhooks/sms', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-signature': smsSignature },
      body: smsBody,
    });
    expect(delivered.status).toBe(200);
    await eventually(async () => ((await state()).status === 'completed' ? true : undefined));

    // The flow was logged (a request line per call, with its headers), and nothing secret was.
    const out = lines.join('');
    const parsed = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const requests = parsed.filter((line) => line['msg'] === 'request');
    expect(requests.length).toBeGreaterThanOrEqual(8);
    expect(requests.some((r) => String(r['url']).startsWith('/v1/customers/'))).toBe(true);
    expect(requests.some((r) => r['url'] === '/webhooks/stripe')).toBe(true);
    expect(requests.some((r) => r['url'] === '/webhooks/sms')).toBe(true);

    const secrets = {
      email: EMAIL,
      'url-encoded email': encodeURIComponent(EMAIL),
      'email local part': EMAIL.split('@')[0]!,
      'admin token': admin,
      'customer token': token,
      'JWT secret': JWT_SECRET,
      'Stripe webhook secret': TEST_WEBHOOK_SECRET,
      'Stripe key': TEST_STRIPE_KEY,
      'Stripe-Signature': signature,
      'Stripe-Signature v1': signature.split('v1=')[1]!,
      'SMS webhook secret': SMS_SECRET,
      'SMS signature': smsSignature.split('sha256=')[1]!,
      'card number': CARD_NUMBER,
    };
    for (const [what, value] of Object.entries(secrets)) {
      expect(out.includes(value), `${what} is in the logs`).toBe(false);
    }
    expect(out).not.toMatch(new RegExp(`last4\\W{1,6}${LAST4}`, 'i'));
    for (const line of parsed) {
      for (const [key, value] of fields(line)) {
        if (/last4|^card$|email|authorization|signature/i.test(key)) {
          expect(value, `${key} in ${JSON.stringify(line).slice(0, 300)}`).toBe('[redacted]');
        }
      }
    }
  });
});
