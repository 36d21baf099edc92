// `npm run stripe:simulate -- <paymentId> [--event completed|async-succeeded|async-failed|expired]`:
// plays Stripe for a local top-up — builds the event for the payment's session, signs it with
// STRIPE_WEBHOOK_SECRET exactly as Stripe does, and posts it to the running API's webhook.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import Stripe from 'stripe';
import { loadConfigOrExit, loadLocalStackEnv, required } from '../src/config.js';
import { createDatabase } from '../src/db/client.js';
import { checkoutMetadata } from '../src/stripe/gateway.js';

const EVENTS: Record<string, { type: string; paymentStatus: string; status: string }> = {
  completed: { type: 'checkout.session.completed', paymentStatus: 'paid', status: 'complete' },
  'async-succeeded': {
    type: 'checkout.session.async_payment_succeeded',
    paymentStatus: 'paid',
    status: 'complete',
  },
  'async-failed': {
    type: 'checkout.session.async_payment_failed',
    paymentStatus: 'unpaid',
    status: 'complete',
  },
  expired: { type: 'checkout.session.expired', paymentStatus: 'unpaid', status: 'expired' },
};

loadLocalStackEnv();
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    event: { type: 'string', default: 'completed' },
    url: { type: 'string' },
    'payment-intent': { type: 'string' },
  },
});
const paymentId = positionals[0];
const kind = EVENTS[values.event];
if (!paymentId || !kind) {
  console.error(
    `Usage: npm run stripe:simulate -- <paymentId> [--event ${Object.keys(EVENTS).join('|')}]`,
  );
  process.exit(2);
}
const config = loadConfigOrExit();
const secret = required(
  config.stripe.webhookSecret,
  'STRIPE_WEBHOOK_SECRET',
  'to sign the event (start the stack with npm start, or set it)',
);
const db = createDatabase(required(config.databaseUrl, 'DATABASE_URL', 'to find the payment'));
try {
  const [payment] = await db.sql<
    {
      workflow_id: string;
      customer_id: string;
      pack: string;
      credits: string;
      amount: string;
      currency: string;
      stripe_session_id: string | null;
      payment_intent_id: string | null;
    }[]
  >`select * from payments where id = ${paymentId}`;
  if (!payment?.stripe_session_id) {
    console.error(
      `No payment ${paymentId} with a Stripe session; start one with POST /v1/checkouts.`,
    );
    process.exit(1);
  }
  const paymentIntent =
    values['payment-intent'] ??
    payment.payment_intent_id ??
    `pi_local_${randomBytes(12).toString('hex')}`;
  const event = {
    id: `evt_local_${randomBytes(12).toString('hex')}`,
    object: 'event',
    api_version: '2025-10-29.clover',
    created: Math.floor(Date.now() / 1000),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type: kind.type,
    data: {
      object: {
        id: payment.stripe_session_id,
        object: 'checkout.session',
        mode: 'payment',
        client_reference_id: paymentId,
        metadata: checkoutMetadata({
          paymentId,
          workflowId: payment.workflow_id,
          customerId: payment.customer_id,
          pack: payment.pack,
          credits: Number(payment.credits),
          amount: Number(payment.amount),
          currency: payment.currency,
        }),
        amount_total: Number(payment.amount),
        currency: payment.currency,
        payment_intent: paymentIntent,
        payment_status: kind.paymentStatus,
        status: kind.status,
      },
    },
  };
  const body = JSON.stringify(event);
  const signature = new Stripe('sk_test_unused').webhooks.generateTestHeaderString({
    payload: body,
    secret,
  });
  const url = values.url ?? `http://localhost:${config.port}/webhooks/stripe`;
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'stripe-signature': signature },
    body,
  });
  console.log(`${kind.type} ${event.id} → ${res.status} ${await res.text()}`);
  if (!res.ok) process.exitCode = 1;
} finally {
  await db.close();
}
