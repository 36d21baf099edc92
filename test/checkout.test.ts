// The checkout workflow under Stripe's real-world behaviour: early, late, out-of-order and async
// reports, and the expiry compensation. Real Temporal, PostgreSQL and stripe-mock.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startCheckoutBench,
  type CheckoutBench,
  type CheckoutStarted,
} from './checkout-harness.js';
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

async function result(on: CheckoutBench, workflowId: string): Promise<CheckoutState> {
  return on.temporal.workflow.getHandle(workflowId).result() as Promise<CheckoutState>;
}

async function topupCount(on: CheckoutBench, paymentId: string): Promise<number> {
  const rows = await on.db.sql`
    select id from entries where type = 'topup' and metadata->>'paymentId' = ${paymentId}`;
  return rows.length;
}

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
  });

  it('ignores a stale expired event that arrives after the payment was credited', async () => {
    const { customer, started, session } = await open(bench);
    await bench.deliver(completed(session));
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

    await bench.deliver(sessionEvent('checkout.session.async_payment_succeeded', session));
    expect((await result(bench, started.workflowId)).status).toBe('credited');
    expect(await bench.ledger.walletBalance(customer.id)).toBe(550);
    expect(await topupCount(bench, started.id)).toBe(1);
  });

  it('marks an async payment that fails as failed, credits nothing, and credits it if Stripe later reports it paid', async () => {
    const { customer, started, session } = await open(bench);
    await bench.deliver(completed(session, 'unpaid'));
    await bench.deliver(
      sessionEvent('checkout.session.async_payment_failed', session, { payment_status: 'unpaid' }),
    );
    const failed = await result(bench, started.workflowId);
    expect(failed.status).toBe('failed');
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
    expect(await topupCount(bench, started.id)).toBe(0);
    const description = await bench.temporal.workflow.getHandle(started.workflowId).describe();
    expect(description.typedSearchAttributes.get(searchAttributes.flowStatus)).toBe('failed');

    // Late: the payment intent succeeded after all (the late-payment rule credits it).
    const intent = stripeEvent('payment_intent.succeeded', {
      id: session.paymentIntentId,
      object: 'payment_intent',
      metadata: sessionObject(session).metadata,
    });
    expect((await bench.deliver(intent)).status).toBe(200);
    await bench.waitFor(customer.token, started.id, 'credited');
    expect(await bench.ledger.walletBalance(customer.id)).toBe(100);
    expect(await topupCount(bench, started.id)).toBe(1);
  });

  it("ends expired when Stripe's own expired event arrives first, without calling Stripe again", async () => {
    const { started, session } = await open(bench);
    await bench.deliver(
      sessionEvent('checkout.session.expired', session, {
        status: 'expired',
        payment_status: 'unpaid',
      }),
    );
    expect((await result(bench, started.workflowId)).status).toBe('expired');
    expect(session.expireCalls).toBe(0);
    expect(await topupCount(bench, started.id)).toBe(0);
  });

  it('expires the Stripe session when nobody pays in time, then credits a late payment', async () => {
    const { customer, started, session } = await open(shortBench, 'medium');
    const expired = await result(shortBench, started.workflowId);
    expect(expired.status).toBe('expired');
    expect(session.expireCalls).toBe(1);
    const [row] = await shortBench.db.sql<{ status: string }[]>`
      select status from payments where id = ${started.id}`;
    expect(row?.status).toBe('expired');

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
  });
});
