// The checkout workflow under Stripe's real-world behaviour: early, late, out-of-order and async
// reports, and the expiry compensation. Real Temporal, PostgreSQL and stripe-mock.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startCheckoutBench,
  type CheckoutBench,
  type CheckoutStarted,
} from './checkout-harness.js';
import { keepHistory } from './history-recorder.js';
import { sessionObject, stripeEvent, type RecordedSession } from './stripe.js';
import { deliveredNotifications } from './helpers.js';
import { searchAttributes, type CheckoutState } from '../src/shared.js';

let bench: CheckoutBench;
/** Customers have 3 seconds to pay here, so the expiry path runs within a test. */
let shortBench: CheckoutBench;

beforeAll(async () => {
  [bench, shortBench] = await Promise.all([
    startCheckoutBench('checkout-flows'),
    startCheckoutBench('checkout-expiry', { expirySeconds: 3 }),
  ]);
});

afterAll(async () => {
  await Promise.all([bench?.close(), shortBench?.close()]);
});

async function open(on: CheckoutBench, pack = 'small') {
  const customer = await on.customer();
  const res = await on.buy(customer.token, pack);
  expect(res.status).toBe(202);
  const started = (await res.json()) as CheckoutStarted;
  return { customer, started, session: on.stripe.session(started.id) };
}

const completed = (session: RecordedSession, paymentStatus = 'paid') =>
  stripeEvent(
    'checkout.session.completed',
    sessionObject(session, { payment_status: paymentStatus }),
  );
const sessionEvent = (type: string, session: RecordedSession, overrides = {}) =>
  stripeEvent(type, sessionObject(session, overrides));

/** Delivers a signed event, which Stripe must see accepted (a 2xx stops its retries). */
async function accepted(on: CheckoutBench, event: unknown): Promise<void> {
  const res = await on.deliver(event);
  expect(res.status, await res.clone().text()).toBe(200);
}

async function result(on: CheckoutBench, workflowId: string): Promise<CheckoutState> {
  return on.temporal.workflow.getHandle(workflowId).result() as Promise<CheckoutState>;
}

async function topupCount(on: CheckoutBench, paymentId: string): Promise<number> {
  const rows = await on.db.sql`
    select id from entries where type = 'topup' and metadata->>'paymentId' = ${paymentId}`;
  return rows.length;
}

describe('a payment racing the expiry', () => {
  it('pays or expires, never both: each side wins, and a paid session is credited exactly once', async () => {
    // Aimed at the moment the 3-second wait ends; re-aimed towards a side that has not won yet.
    let aim = 3000;
    const seen = { paidBeforeExpiry: 0, paidFoundByExpiry: 0, expired: 0 };
    const race = async (i: number): Promise<keyof typeof seen> => {
      const customer = await shortBench.customer();
      const startedAt = Date.now();
      const res = await shortBench.buy(customer.token, 'small');
      expect(res.status).toBe(202);
      const started = (await res.json()) as CheckoutStarted;
      await new Promise((r) => setTimeout(r, startedAt + aim - 200 + i * 50 - Date.now()));
      // The customer pays at Stripe, which only an open session allows; Stripe then reports it.
      const paid = shortBench.stripe.pay(started.id);
      const session = shortBench.stripe.session(started.id);
      if (paid) await accepted(shortBench, completed(session));
      if (paid) await shortBench.waitFor(customer.token, started.id, 'credited');
      const final = await result(shortBench, started.workflowId);
      expect(final.status).toBe(paid ? 'credited' : 'expired');
      expect(await shortBench.ledger.walletBalance(customer.id)).toBe(paid ? 100 : 0);
      expect(await topupCount(shortBench, started.id)).toBe(paid ? 1 : 0);
      if (!paid) {
        expect(session).toMatchObject({ status: 'expired', expireCalls: 1 });
        return 'expired';
      }
      // Paid first: either the webhook beat the timer, or the expiry found the session paid.
      return session.expireCalls === 0 ? 'paidBeforeExpiry' : 'paidFoundByExpiry';
    };
    for (let round = 0; round < 10; round++) {
      for (const outcome of await Promise.all(Array.from({ length: 8 }, (_, i) => race(i)))) {
        seen[outcome]++;
      }
      if (round >= 1 && Object.values(seen).every((n) => n > 0)) break;
      if (seen.expired === 0) aim += 150;
      else if (seen.paidBeforeExpiry === 0) aim -= 150;
    }
    expect(seen.paidBeforeExpiry).toBeGreaterThan(0);
    expect(seen.paidFoundByExpiry).toBeGreaterThan(0);
    expect(seen.expired).toBeGreaterThan(0);
  }, 150_000);
});

describe('checkout workflow', () => {
  it('credits a payment completed before the workflow reached its wait', async () => {
    const customer = await bench.customer();
    let early: Response | undefined;
    // Stripe's webhook lands while the session-creating activity is still running.
    bench.stripe.afterCreate = async (session) => {
      bench.stripe.afterCreate = undefined;
      early = await bench.deliver(completed(session));
    };
    const started = (await (await bench.buy(customer.token, 'large')).json()) as CheckoutStarted;
    expect(early?.status).toBe(200);
    const state = await result(bench, started.workflowId);
    expect(state.status).toBe('credited');
    expect(await bench.ledger.walletBalance(customer.id)).toBe(1200);
    expect(await topupCount(bench, started.id)).toBe(1);
    await keepHistory(bench.temporal, 'checkout-paid-before-wait', started.workflowId);
  });

  it('ignores a stale expired event that arrives after the payment was credited', async () => {
    const { customer, started, session } = await open(bench);
    await accepted(bench, completed(session));
    await result(bench, started.workflowId);
    const stale = await bench.deliver(
      sessionEvent('checkout.session.expired', session, {
        status: 'expired',
        payment_status: 'unpaid',
      }),
    );
    expect(stale.status).toBe(200);
    expect((await bench.read(customer.token, started.id)).status).toBe('credited');
    expect(await bench.ledger.walletBalance(customer.id)).toBe(100);
  });

  it('waits through an async payment and credits it when it succeeds', async () => {
    const { customer, started, session } = await open(bench, 'medium');
    expect((await bench.deliver(completed(session, 'unpaid'))).status).toBe(200);
    // Still waiting: the bank debit has not settled.
    await new Promise((r) => setTimeout(r, 500));
    const pending = await bench.read(customer.token, started.id);
    expect(pending.status).toBe('init');
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);

    await accepted(bench, sessionEvent('checkout.session.async_payment_succeeded', session));
    expect((await result(bench, started.workflowId)).status).toBe('credited');
    expect(await bench.ledger.walletBalance(customer.id)).toBe(550);
    expect(await topupCount(bench, started.id)).toBe(1);
    await keepHistory(bench.temporal, 'checkout-async-paid', started.workflowId);
  });

  it('marks an async payment that fails as failed, credits nothing, and credits it if Stripe later reports it paid', async () => {
    const { customer, started, session } = await open(bench);
    await accepted(bench, completed(session, 'unpaid'));
    await accepted(
      bench,
      sessionEvent('checkout.session.async_payment_failed', session, { payment_status: 'unpaid' }),
    );
    const failed = await result(bench, started.workflowId);
    expect(failed.status).toBe('failed');
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
    expect(await topupCount(bench, started.id)).toBe(0);
    const description = await bench.temporal.workflow.getHandle(started.workflowId).describe();
    expect(description.typedSearchAttributes.get(searchAttributes.flowStatus)).toBe('failed');
    await keepHistory(bench.temporal, 'checkout-async-failed', started.workflowId);

    // Late: the payment intent succeeded after all (the late-payment rule credits it).
    const intent = stripeEvent('payment_intent.succeeded', {
      id: session.paymentIntentId,
      object: 'payment_intent',
      metadata: sessionObject(session).metadata,
      amount: session.request.amount,
      amount_received: session.request.amount,
      currency: session.request.currency,
      status: 'succeeded',
    });
    expect((await bench.deliver(intent)).status).toBe(200);
    await bench.waitFor(customer.token, started.id, 'credited');
    expect(await bench.ledger.walletBalance(customer.id)).toBe(100);
    expect(await topupCount(bench, started.id)).toBe(1);
  });

  it("ends expired when Stripe's own expired event arrives first, without calling Stripe again", async () => {
    const { started, session } = await open(bench);
    await accepted(
      bench,
      sessionEvent('checkout.session.expired', session, {
        status: 'expired',
        payment_status: 'unpaid',
      }),
    );
    expect((await result(bench, started.workflowId)).status).toBe('expired');
    expect(session.expireCalls).toBe(0);
    expect(await topupCount(bench, started.id)).toBe(0);
    await keepHistory(bench.temporal, 'checkout-expired-by-stripe', started.workflowId);
  });

  it('expires the Stripe session when nobody pays in time, then credits a late payment', async () => {
    const { customer, started, session } = await open(shortBench, 'medium');
    const expired = await result(shortBench, started.workflowId);
    expect(expired.status).toBe('expired');
    expect(session.expireCalls).toBe(1);
    // Every call that changes something at Stripe carries a key made of the workflow id and step.
    expect(shortBench.stripe.callsFor(started.id)).toEqual([
      ['POST', '/v1/checkout/sessions', `${started.workflowId}:create-session`, 200],
      ['POST', '/v1/checkout/sessions/{id}/expire', `${started.workflowId}:expire-session`, 200],
    ]);
    const [row] = await shortBench.db.sql<{ status: string }[]>`
      select status from payments where id = ${started.id}`;
    expect(row?.status).toBe('expired');
    const firstRun = await shortBench.temporal.workflow.getHandle(started.workflowId).describe();
    await keepHistory(
      shortBench.temporal,
      'checkout-expired-by-timer',
      started.workflowId,
      firstRun.runId,
    );

    // Stripe reports a payment anyway (it raced the expiry): a new run credits it.
    const late = await shortBench.deliver(completed(session));
    expect(late.status).toBe(200);
    const credited = await shortBench.waitFor(customer.token, started.id, 'credited');
    expect(credited.credits).toBe(550);
    await shortBench.temporal.workflow.getHandle(started.workflowId).result();
    expect(await shortBench.ledger.walletBalance(customer.id)).toBe(550);
    expect(await topupCount(shortBench, started.id)).toBe(1);
    // The late run never opened a second session.
    expect(shortBench.stripe.sessions.get(started.id)?.id).toBe(session.id);
    const notices = await deliveredNotifications(shortBench.db, customer.id);
    expect(notices.filter((n) => n.kind === 'credits_added')).toHaveLength(1);
    const lateRun = await shortBench.temporal.workflow.getHandle(started.workflowId).describe();
    expect(lateRun.runId).not.toBe(firstRun.runId);
    await keepHistory(shortBench.temporal, 'checkout-late-payment', started.workflowId);
  });

  it('credits a session Stripe reports paid when the expiry reaches it, before any webhook', async () => {
    const customer = await shortBench.customer();
    shortBench.stripe.afterCreate = (session) => {
      shortBench.stripe.afterCreate = undefined;
      // Paid at Stripe, but the webhook is lost: the expiry call is where we learn it.
      session.status = 'complete';
      session.paymentStatus = 'paid';
      return Promise.resolve();
    };
    const started = (await (
      await shortBench.buy(customer.token, 'small')
    ).json()) as CheckoutStarted;
    const state = await result(shortBench, started.workflowId);
    expect(state.status).toBe('credited');
    expect(await shortBench.ledger.walletBalance(customer.id)).toBe(100);
    expect(await topupCount(shortBench, started.id)).toBe(1);
    // Learnt from the expiry: Stripe refused to expire a paid session, the gateway read it back.
    expect(shortBench.stripe.callsFor(started.id)).toEqual([
      ['POST', '/v1/checkout/sessions', `${started.workflowId}:create-session`, 200],
      ['POST', '/v1/checkout/sessions/{id}/expire', `${started.workflowId}:expire-session`, 400],
      ['GET', '/v1/checkout/sessions/{id}', undefined, 200],
    ]);
    await keepHistory(shortBench.temporal, 'checkout-expiry-found-paid', started.workflowId);
  });
});
