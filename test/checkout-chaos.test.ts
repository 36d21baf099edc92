// A worker process killed (SIGKILL) in the middle of a checkout: the next worker finishes it,
// and the wallet is credited exactly once.
import type { Client } from '@temporalio/client';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { createLedger } from '../src/ledger/ledger.js';
import type { CheckoutState } from '../src/shared.js';
import { checkoutMetadata } from '../src/stripe/gateway.js';
import { expectPaidPaymentsCreditedOnce, type CheckoutStarted } from './checkout-harness.js';
import {
  connectTestClient,
  createCustomer,
  customerToken,
  deliveredNotifications,
  expectLedgerConsistent,
  jsonRequest,
  spawnWorkerProcess,
  testApp,
  testDatabase,
  uniqueId,
} from './helpers.js';
import { TEST_STRIPE_KEY, TEST_WEBHOOK_SECRET, stripeEvent, webhookRequest } from './stripe.js';

let db: Database;
let temporal: Client;
const customers: string[] = [];
// The worker process talks to stripe-mock through the service's real gateway.
const stripeEnv = () => ({
  STRIPE_API_BASE: inject('stripeApiBase'),
  STRIPE_SECRET_KEY: TEST_STRIPE_KEY,
});

beforeAll(async () => {
  db = testDatabase();
  temporal = await connectTestClient();
});

afterAll(async () => {
  await expectPaidPaymentsCreditedOnce(db, customers);
  await expectLedgerConsistent(db);
  await temporal.connection.close();
  await db.close();
});

describe('checkout with a worker process that dies', () => {
  it.each([
    // Deterministic: the workflow sits in its wait, cached in the dead worker, when the events come.
    ['while the workflow waits for Stripe', 'waiting'],
    // Racy on purpose: the kill lands somewhere in paid → credit → notify.
    ['right after the paid webhook', 'after-webhook'],
  ] as const)('credits exactly once when the worker is killed %s', async (_label, killWhen) => {
    const taskQueue = uniqueId('chaos-checkout');
    const app = testApp(db, temporal, taskQueue, { stripeWebhookSecret: TEST_WEBHOOK_SECRET });
    const customer = await createCustomer(db);
    customers.push(customer.id);
    const token = await customerToken(customer.id);

    const first = await spawnWorkerProcess(taskQueue, stripeEnv());
    let started: CheckoutStarted;
    try {
      const res = await app.request('/v1/checkouts', jsonRequest('POST', { pack: 'large' }, token));
      expect(res.status).toBe(202);
      started = (await res.json()) as CheckoutStarted;
      expect(started.checkoutUrl).toBeTruthy();
    } catch (err) {
      await first.kill();
      throw err;
    }
    if (killWhen === 'waiting') await first.kill();

    // What Stripe would send: the session as stored, with the metadata the gateway gave it.
    const [payment] = await db.sql<{ stripe_session_id: string; amount: string }[]>`
      select stripe_session_id, amount from payments where id = ${started.id}`;
    const paymentIntentId = `pi_test_${randomBytes(12).toString('hex')}`;
    const metadata = checkoutMetadata({
      paymentId: started.id,
      workflowId: started.workflowId,
      customerId: customer.id,
      pack: 'large',
      credits: 1200,
      amount: Number(payment!.amount),
      currency: 'eur',
    });
    const event = stripeEvent('checkout.session.completed', {
      id: payment!.stripe_session_id,
      object: 'checkout.session',
      client_reference_id: started.id,
      metadata,
      amount_total: Number(payment!.amount),
      currency: 'eur',
      payment_intent: paymentIntentId,
      payment_status: 'paid',
      status: 'complete',
    });
    expect((await app.request('/webhooks/stripe', webhookRequest(event))).status).toBe(200);
    if (killWhen === 'after-webhook') await first.kill();

    // Stripe redelivers, and sends the payment intent's own event too, while no worker runs.
    expect((await app.request('/webhooks/stripe', webhookRequest(event))).status).toBe(200);
    const intent = stripeEvent('payment_intent.succeeded', {
      id: paymentIntentId,
      object: 'payment_intent',
      metadata,
      amount: Number(payment!.amount),
      amount_received: Number(payment!.amount),
      currency: 'eur',
      status: 'succeeded',
    });
    expect((await app.request('/webhooks/stripe', webhookRequest(intent))).status).toBe(200);

    const second = await spawnWorkerProcess(taskQueue, stripeEnv());
    try {
      const state = (await temporal.workflow
        .getHandle(started.workflowId)
        .result()) as CheckoutState;
      expect(state.status).toBe('credited');
      expect(await deliveredNotifications(db, customer.id)).toHaveLength(1);
    } finally {
      await second.stop();
    }
    expect(await createLedger(db.sql).walletBalance(customer.id)).toBe(1200);
    const entries = await db.sql`
      select idempotency_key from entries where metadata->>'paymentId' = ${started.id}`;
    expect(entries).toEqual([{ idempotency_key: `topup:${paymentIntentId}` }]);
  });
});
