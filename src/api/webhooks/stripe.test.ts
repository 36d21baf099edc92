// POST /webhooks/stripe: signature checks, once-only recording, routing, concurrency.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startCheckoutBench,
  type CheckoutBench,
  type CheckoutStarted,
} from '../../../test/checkout-harness.js';
import { connectTestClient, deliveredNotifications, testApp } from '../../../test/helpers.js';
import {
  TEST_WEBHOOK_SECRET,
  sessionObject,
  signatureFor,
  stripeEvent,
  webhookRequest,
} from '../../../test/stripe.js';

let bench: CheckoutBench;

beforeAll(async () => {
  bench = await startCheckoutBench('stripe-webhooks');
});

afterAll(async () => {
  await bench?.close();
});

async function openCheckout(pack = 'small') {
  const customer = await bench.customer();
  const started = (await (await bench.buy(customer.token, pack)).json()) as CheckoutStarted;
  return { customer, started, session: bench.stripe.session(started.id) };
}

async function eventRow(id: string) {
  const [row] = await bench.db.sql<
    {
      type: string;
      status: string;
      payment_id: string | null;
      error: string | null;
      processed_at: Date | null;
    }[]
  >`select type, status, payment_id, error, processed_at from stripe_events where id = ${id}`;
  return row;
}

async function topups(paymentId: string) {
  return bench.db
    .sql`select id from entries where type = 'topup' and metadata->>'paymentId' = ${paymentId}`;
}

describe('POST /webhooks/stripe refuses what Stripe did not sign', () => {
  it.each([
    ['no Stripe-Signature header', { signature: null }, 'missing_signature'],
    [
      'a signature made with another secret',
      { secret: `whsec_${randomBytes(16).toString('hex')}` },
      'invalid_signature',
    ],
    ['a stale timestamp', { timestamp: Math.floor(Date.now() / 1000) - 600 }, 'invalid_signature'],
    ['a garbage signature', { signature: 't=1,v1=deadbeef' }, 'invalid_signature'],
  ])('400 for %s, and nothing written', async (_label, options, code) => {
    const { customer, started, session } = await openCheckout();
    const event = stripeEvent('checkout.session.completed', sessionObject(session));
    const res = await bench.deliver(event, options);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(code);
    expect(body.error.message.length).toBeGreaterThan(20);
    expect(await eventRow(event.id)).toBeUndefined();
    expect((await bench.read(customer.token, started.id)).status).toBe('init');
    await settle(started.id, session);
  });

  it('400 for a tampered body (signed, then the credits changed), and nothing written', async () => {
    const { customer, started, session } = await openCheckout();
    const event = stripeEvent('checkout.session.completed', sessionObject(session));
    const signed = JSON.stringify(event);
    const tampered = signed.replace('"credits":"100"', '"credits":"100000"');
    expect(tampered).not.toBe(signed);
    const res = await bench.app.request('/webhooks/stripe', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'stripe-signature': signatureFor(signed) },
      body: tampered,
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 'invalid_signature' } });
    expect(await eventRow(event.id)).toBeUndefined();
    expect((await bench.read(customer.token, started.id)).status).toBe('init');
    await settle(started.id, session);
  });

  it.each([
    ['a body that is not JSON', `not json ${randomBytes(8).toString('hex')}`],
    ['JSON that is not a Stripe event', JSON.stringify({ hello: randomBytes(8).toString('hex') })],
    [
      'an event without data',
      JSON.stringify({ id: `evt_${randomBytes(8).toString('hex')}`, object: 'event', type: 'x' }),
    ],
  ])('400 for %s, even correctly signed, and nothing written', async (_label, body) => {
    const before = await bench.db.sql<{ n: string }[]>`
      select count(*) as n from stripe_events where payload::text like ${`%${body.slice(-16)}%`}`;
    const res = await bench.app.request('/webhooks/stripe', webhookRequest(body));
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 'invalid_payload' } });
    const after = await bench.db.sql<{ n: string }[]>`
      select count(*) as n from stripe_events where payload::text like ${`%${body.slice(-16)}%`}`;
    expect(after).toEqual(before);
  });

  it('503 while no webhook secret is configured, so Stripe retries', async () => {
    const app = testApp(bench.db, bench.temporal, bench.taskQueue);
    const event = stripeEvent('customer.created', { id: 'cus_1', object: 'customer' });
    const res = await app.request('/webhooks/stripe', webhookRequest(event));
    expect(res.status).toBe(503);
    expect(await eventRow(event.id)).toBeUndefined();
  });
});

/** Pays a checkout so the file leaves nothing open. */
async function settle(paymentId: string, session: ReturnType<typeof bench.stripe.session>) {
  const res = await bench.deliver(
    stripeEvent('checkout.session.completed', sessionObject(session)),
  );
  expect(res.status).toBe(200);
  await bench.temporal.workflow.getHandle(`checkout-${paymentId}`).result();
}

describe('POST /webhooks/stripe records and routes verified events', () => {
  it('records an unknown event type as ignored and answers 200', async () => {
    const event = stripeEvent('customer.created', { id: 'cus_test_1', object: 'customer' });
    const res = await bench.deliver(event);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ received: true, status: 'ignored' });
    expect(await eventRow(event.id)).toMatchObject({ type: 'customer.created', status: 'ignored' });
    const again = await bench.deliver(event);
    expect(await again.json()).toMatchObject({ duplicate: true, status: 'ignored' });
  });

  it('ignores a checkout session that is not ours (no checkout metadata)', async () => {
    const event = stripeEvent('checkout.session.completed', {
      id: 'cs_test_foreign',
      object: 'checkout.session',
      metadata: {},
      payment_status: 'paid',
    });
    expect((await bench.deliver(event)).status).toBe(200);
    expect(await eventRow(event.id)).toMatchObject({
      status: 'ignored',
      error: expect.stringContaining('not a creditflow checkout') as string,
    });
  });

  it('flags, and does not credit, a session with our metadata that we never opened or that names someone else', async () => {
    const { customer, session } = await openCheckout('small');
    const stranger = await bench.customer();
    const forged = sessionObject(session);
    const forgedPaymentId = `pay_${'0'.repeat(32)}`;
    const unknown = stripeEvent('checkout.session.completed', {
      ...forged,
      client_reference_id: forgedPaymentId,
      metadata: {
        ...(forged.metadata as Record<string, string>),
        paymentId: forgedPaymentId,
        workflowId: `checkout-${forgedPaymentId}`,
      },
    });
    const otherCustomer = stripeEvent('checkout.session.completed', {
      ...forged,
      metadata: { ...(forged.metadata as Record<string, string>), customerId: stranger.id },
    });
    for (const event of [unknown, otherCustomer]) {
      const res = await bench.deliver(event);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ status: 'flagged' });
      expect(await eventRow(event.id)).toMatchObject({
        status: 'flagged',
        error: expect.stringContaining('not credited') as string,
      });
    }
    const [created] = await bench.db.sql`select 1 from payments where id = ${forgedPaymentId}`;
    expect(created).toBeUndefined();
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
    expect(await bench.ledger.walletBalance(stranger.id)).toBe(0);
  });

  it('credits once when the same event arrives 10 times at once, and a later repeat changes nothing', async () => {
    const { customer, started, session } = await openCheckout('medium');
    const event = stripeEvent('checkout.session.completed', sessionObject(session));
    const responses = await Promise.all(Array.from({ length: 10 }, () => bench.deliver(event)));
    for (const res of responses) expect(res.status).toBe(200);
    await bench.waitFor(customer.token, started.id, 'credited');
    await bench.temporal.workflow.getHandle(started.workflowId).result();

    const repeat = await bench.deliver(event);
    expect(repeat.status).toBe(200);
    expect(await repeat.json()).toMatchObject({ duplicate: true, status: 'completed' });
    // A different event for the same payment (Stripe sends payment_intent.succeeded too).
    const intent = stripeEvent('payment_intent.succeeded', {
      id: session.paymentIntentId,
      object: 'payment_intent',
      metadata: sessionObject(session).metadata,
      amount: 2500,
      currency: 'eur',
    });
    expect((await bench.deliver(intent)).status).toBe(200);

    expect(await bench.ledger.walletBalance(customer.id)).toBe(550);
    expect(await topups(started.id)).toHaveLength(1);
    expect(await eventRow(event.id)).toMatchObject({ status: 'completed', payment_id: started.id });
    expect(await deliveredNotifications(bench.db, customer.id)).toHaveLength(1);
  });

  it('records refunds and disputes as flagged for review, without touching the wallet', async () => {
    const { customer, started, session } = await openCheckout();
    await settle(started.id, session);
    for (const [type, object] of [
      [
        'charge.refunded',
        {
          id: 'ch_test_1',
          object: 'charge',
          payment_intent: session.paymentIntentId,
          amount_refunded: 500,
        },
      ],
      [
        'charge.dispute.created',
        {
          id: 'dp_test_1',
          object: 'dispute',
          payment_intent: session.paymentIntentId,
          amount: 500,
        },
      ],
    ] as const) {
      const event = stripeEvent(type, object);
      const res = await bench.deliver(event);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ status: 'flagged' });
      expect(await eventRow(event.id)).toMatchObject({
        status: 'flagged',
        payment_id: started.id,
        error: expect.stringContaining('flagged for review') as string,
      });
    }
    expect(await bench.ledger.walletBalance(customer.id)).toBe(100);
    expect((await bench.read(customer.token, started.id)).status).toBe('credited');
  });

  it('answers 503 when the event cannot be handed to Temporal, and a redelivery then succeeds', async () => {
    const { customer, started, session } = await openCheckout();
    const broken = await connectTestClient();
    await broken.connection.close();
    const brokenApp = testApp(bench.db, broken, bench.taskQueue, {
      stripeWebhookSecret: TEST_WEBHOOK_SECRET,
    });
    const event = stripeEvent('checkout.session.completed', sessionObject(session));
    const failed = await brokenApp.request('/webhooks/stripe', webhookRequest(event));
    expect(failed.status).toBe(503);
    expect(await eventRow(event.id)).toMatchObject({ status: 'failed' });
    expect((await bench.read(customer.token, started.id)).status).toBe('init');

    const retried = await bench.deliver(event);
    expect(retried.status).toBe(200);
    await bench.waitFor(customer.token, started.id, 'credited');
    expect(await eventRow(event.id)).toMatchObject({ status: 'completed', error: null });
  });
});
