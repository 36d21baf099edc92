// POST /webhooks/stripe: signature checks, once-only recording, routing, concurrency.
import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startCheckoutBench,
  type CheckoutBench,
  type CheckoutStarted,
} from '../../../test/checkout-harness.js';
import { connectTestClient, deliveredNotifications, testApp } from '../../../test/helpers.js';
import {
  TEST_WEBHOOK_SECRET,
  type RecordedSession,
  sessionObject,
  signatureFor,
  stripeEvent,
  webhookRequest,
} from '../../../test/stripe.js';
import { createMetrics } from '../../metrics.js';
import { checkoutMetadata } from '../../stripe/gateway.js';

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

  it('flags refunds and disputes of a payment intent we never recorded, without touching a wallet', async () => {
    const { customer, started, session } = await openCheckout();
    await settle(started.id, session);
    const unknownIntent = `${session.paymentIntentId}_not_ours`;
    for (const [type, object] of [
      [
        'charge.refunded',
        { id: 'ch_test_1', object: 'charge', payment_intent: unknownIntent, amount_refunded: 500 },
      ],
      [
        'charge.dispute.created',
        { id: 'dp_test_1', object: 'dispute', payment_intent: unknownIntent, amount: 500 },
      ],
    ] as const) {
      const event = stripeEvent(type, object);
      const res = await bench.deliver(event);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ status: 'flagged' });
      expect(await eventRow(event.id)).toMatchObject({
        status: 'flagged',
        payment_id: null,
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

describe('POST /webhooks/stripe credits only what agrees with the recorded payment', () => {
  /** An app on the bench's queue whose alerts (error logs, metric) the test can read. */
  function watchedApp() {
    const lines: { level: number; msg: string; alert?: string; paymentId?: string }[] = [];
    const logger = pino(
      { level: 'warn' },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          lines.push(JSON.parse(chunk.toString()) as (typeof lines)[number]);
          done();
        },
      }),
    );
    const metrics = createMetrics();
    const app = testApp(bench.db, bench.temporal, bench.taskQueue, {
      stripeWebhookSecret: TEST_WEBHOOK_SECRET,
      logger,
      metrics,
    });
    return {
      deliver: (event: unknown) => app.request('/webhooks/stripe', webhookRequest(event)),
      alerts: () => lines.filter((l) => l.level >= 50 && l.alert === 'stripe_event_flagged'),
      flaggedCount: async () =>
        (await metrics.stripeEventsFlagged.get()).values.reduce((n, v) => n + v.value, 0),
    };
  }

  async function expectFlaggedNotCredited(
    watched: ReturnType<typeof watchedApp>,
    event: ReturnType<typeof stripeEvent>,
    opened: Awaited<ReturnType<typeof openCheckout>>,
    mentions: RegExp,
  ) {
    const before = await watched.flaggedCount();
    const res = await watched.deliver(event);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ received: true, status: 'flagged' });
    const row = await eventRow(event.id);
    expect(row).toMatchObject({ status: 'flagged', payment_id: opened.started.id });
    expect(row?.error).toMatch(mentions);
    expect(row?.error).toContain('not credited');
    expect(await watched.flaggedCount()).toBe(before + 1);
    expect(watched.alerts().some((l) => l.paymentId === opened.started.id)).toBe(true);
    // Nothing moved: the workflow never saw it, the wallet is untouched.
    await new Promise((r) => setTimeout(r, 300));
    expect((await bench.read(opened.customer.token, opened.started.id)).status).toBe('init');
    expect(await bench.ledger.walletBalance(opened.customer.id)).toBe(0);
    expect(await topups(opened.started.id)).toHaveLength(0);
  }

  it('flags the reviewed event: no payment required, amount 0, another currency, a foreign session', async () => {
    const watched = watchedApp();
    const opened = await openCheckout('small');
    const event = stripeEvent(
      'checkout.session.completed',
      sessionObject(opened.session, {
        id: `cs_test_foreign_${randomBytes(8).toString('hex')}`,
        payment_status: 'no_payment_required',
        amount_total: 0,
        currency: 'usd',
      }),
    );
    await expectFlaggedNotCredited(watched, event, opened, /session cs_test_foreign/);
    const { error } = (await eventRow(event.id))!;
    expect(error).toMatch(/payment_status "no_payment_required"/);
    expect(error).toMatch(/amount 0/);
    expect(error).toMatch(/currency usd/);
    await settle(opened.started.id, opened.session);
    expect(await bench.ledger.walletBalance(opened.customer.id)).toBe(100);
  });

  const oneDisagreement: [
    string,
    string,
    (s: RecordedSession) => Record<string, unknown>,
    RegExp,
  ][] = [
    [
      'a session id we did not record',
      'checkout.session.completed',
      () => ({ id: 'cs_test_other' }),
      /session cs_test_other/,
    ],
    [
      'payment_status no_payment_required',
      'checkout.session.completed',
      () => ({ payment_status: 'no_payment_required' }),
      /payment_status "no_payment_required"/,
    ],
    ['an amount of 0', 'checkout.session.completed', () => ({ amount_total: 0 }), /amount 0/],
    [
      'a missing amount',
      'checkout.session.completed',
      () => ({ amount_total: undefined }),
      /amount undefined/,
    ],
    ['another currency', 'checkout.session.completed', () => ({ currency: 'usd' }), /currency usd/],
    [
      'a payment intent we did not record',
      'checkout.session.async_payment_succeeded',
      () => ({}),
      /payment intent/,
    ],
    [
      'a client_reference_id that names another payment than the metadata',
      'checkout.session.completed',
      () => ({ client_reference_id: `pay_${'1'.repeat(32)}` }),
      /name different payments/,
    ],
    [
      'metadata naming another customer',
      'checkout.session.completed',
      (s) => ({ metadata: { ...checkoutMetadata(s.request), customerId: randomUUID() } }),
      /customer/,
    ],
    [
      'an async success that is not paid',
      'checkout.session.async_payment_succeeded',
      () => ({ payment_status: 'unpaid' }),
      /payment_status "unpaid"/,
    ],
  ];

  it.each(oneDisagreement)(
    'flags, with an alert, a paid event with %s',
    async (label, type, change, mentions) => {
      const watched = watchedApp();
      const opened = await openCheckout('small');
      if (label.startsWith('a payment intent')) {
        // Record the real intent first (an async payment in progress), then name another one.
        const processing = stripeEvent(
          'checkout.session.completed',
          sessionObject(opened.session, { payment_status: 'unpaid' }),
        );
        expect((await bench.deliver(processing)).status).toBe(200);
        await bench.db.sql`
        update payments set payment_intent_id = ${opened.session.paymentIntentId}
        where id = ${opened.started.id}`;
      }
      const overrides = change(opened.session);
      const object = sessionObject(opened.session, overrides);
      if ('amount_total' in overrides && overrides.amount_total === undefined)
        delete object.amount_total;
      if (label.startsWith('a payment intent')) object.payment_intent = 'pi_test_someone_else';
      await expectFlaggedNotCredited(watched, stripeEvent(type, object), opened, mentions);
      await settle(opened.started.id, opened.session);
    },
  );

  it('flags a payment_intent.succeeded whose amount or currency differs from the payment', async () => {
    const watched = watchedApp();
    const opened = await openCheckout('small');
    const intent = (overrides: Record<string, unknown>) =>
      stripeEvent('payment_intent.succeeded', {
        id: opened.session.paymentIntentId,
        object: 'payment_intent',
        metadata: checkoutMetadata(opened.session.request),
        amount: 500,
        amount_received: 500,
        currency: 'eur',
        status: 'succeeded',
        ...overrides,
      });
    await expectFlaggedNotCredited(watched, intent({ amount_received: 1 }), opened, /amount 1/);
    await expectFlaggedNotCredited(watched, intent({ currency: 'jpy' }), opened, /currency jpy/);
    await expectFlaggedNotCredited(
      watched,
      intent({ status: 'requires_payment_method' }),
      opened,
      /status "requires_payment_method"/,
    );
    await settle(opened.started.id, opened.session);
  });

  it('routes by client_reference_id: a session without our metadata is credited when it agrees', async () => {
    const opened = await openCheckout('small');
    const object = sessionObject(opened.session);
    delete object.metadata;
    const event = stripeEvent('checkout.session.completed', object);
    const res = await bench.deliver(event);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'completed' });
    await bench.waitFor(opened.customer.token, opened.started.id, 'credited');
    expect(await bench.ledger.walletBalance(opened.customer.id)).toBe(100);
    expect(await eventRow(event.id)).toMatchObject({
      status: 'completed',
      payment_id: opened.started.id,
    });
  });

  it('routes by client_reference_id: the same session, not paid as recorded, is flagged, not ignored', async () => {
    const watched = watchedApp();
    const opened = await openCheckout('small');
    const object = sessionObject(opened.session, { amount_total: 1 });
    delete object.metadata;
    await expectFlaggedNotCredited(
      watched,
      stripeEvent('checkout.session.completed', object),
      opened,
      /amount 1/,
    );
    await settle(opened.started.id, opened.session);
  });

  it('refuses a signature dated in the future like a stale one, and writes nothing', async () => {
    const opened = await openCheckout('small');
    const event = stripeEvent('checkout.session.completed', sessionObject(opened.session));
    const res = await bench.deliver(event, { timestamp: Math.floor(Date.now() / 1000) + 600 });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 'invalid_signature' } });
    expect(await eventRow(event.id)).toBeUndefined();
    await settle(opened.started.id, opened.session);
  });
});
