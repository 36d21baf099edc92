// Refunds made at Stripe (the Dashboard): charge.refunded reaches the refund workflow, which takes
// back each Stripe refund's share of the credits exactly once, whatever the order and number of
// the events, and records what the wallet no longer held as the customer's debt.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Activities } from '../src/activities/index.js';
import { createLogger } from '../src/logger.js';
import { refundStateQuery } from '../src/shared.js';
import { workflowIds } from '../src/shared.js';
import { creditedTopup, startCheckoutBench, type CheckoutBench } from './checkout-harness.js';
import {
  connectTestClient,
  deliveredNotifications,
  eventually,
  testApp,
  uniqueId,
} from './helpers.js';
import { keepHistory, recordingHistories } from './history-recorder.js';
import { TEST_WEBHOOK_SECRET, stripeEvent, webhookRequest } from './stripe.js';

let bench: CheckoutBench;
/** Its take-back step fails once right after it committed, as if the worker died then. */
let crashing: CheckoutBench;
const crashes = new Set<string>();

beforeAll(async () => {
  [bench, crashing] = await Promise.all([
    startCheckoutBench('refund-stripe'),
    startCheckoutBench('refund-stripe-crash', {
      wrap: (real) => ({
        takeBackStripeRefund: (async (input) => {
          const result = await real.takeBackStripeRefund(input);
          if (!crashes.has(input.refund.id)) {
            crashes.add(input.refund.id);
            throw new Error('worker lost after the commit');
          }
          return result;
        }) satisfies Activities['takeBackStripeRefund'],
      }),
    }),
  ]);
});

afterAll(async () => {
  await Promise.all([bench?.close(), crashing?.close()]);
});

/** Stripe tells us about the charge as it stands now (cumulative amount_refunded). */
const chargeRefunded = (on: CheckoutBench, paymentId: string) =>
  stripeEvent('charge.refunded', on.stripe.chargeObject(paymentId));

async function accepted(on: CheckoutBench, event: unknown) {
  const res = await on.deliver(event);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as { status: string; duplicate?: boolean };
}

async function clawbacks(on: CheckoutBench, paymentId: string) {
  const rows = await on.db.sql<{ key: string; credits: string; refund_id: string }[]>`
    select e.idempotency_key as key, e.metadata->>'stripeRefundId' as refund_id,
           (select sum(p.amount) from postings p join accounts a on a.id = p.account_id
             where p.entry_id = e.id and a.code = 'refunds') as credits
    from entries e
    where e.type = 'stripe_refund_clawback' and e.metadata->>'paymentId' = ${paymentId}
    order by e.id`;
  return rows.map((r) => ({ key: r.key, refundId: r.refund_id, credits: Number(r.credits) }));
}

async function payment(on: CheckoutBench, paymentId: string) {
  const [row] = await on.db.sql<
    { status: string; refunded_credits: string; refunded_amount: string }[]
  >`select status, refunded_credits, refunded_amount from payments where id = ${paymentId}`;
  return {
    status: row!.status,
    refundedCredits: Number(row!.refunded_credits),
    refundedAmount: Number(row!.refunded_amount),
  };
}

/** Waits until the payment has had `credits` taken back. */
const refundedCredits = (on: CheckoutBench, paymentId: string, credits: number) =>
  eventually(async () =>
    (await payment(on, paymentId)).refundedCredits === credits ? true : undefined,
  );

describe('a refund made in the Stripe Dashboard', () => {
  it('takes back all the credits of a full refund, once, even when the event comes twice', async () => {
    const { customer, paymentId } = await creditedTopup(bench);
    const refund = bench.stripe.refundAtStripe(paymentId);
    const event = chargeRefunded(bench, paymentId);
    expect(await accepted(bench, event)).toMatchObject({ status: 'completed' });
    await refundedCredits(bench, paymentId, 100);

    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
    expect(await clawbacks(bench, paymentId)).toEqual([
      { key: `stripe-refund:${refund.id}`, refundId: refund.id, credits: 100 },
    ]);
    expect(await payment(bench, paymentId)).toEqual({
      status: 'refunded',
      refundedCredits: 100,
      refundedAmount: 500,
    });
    const [row] = await bench.db.sql`
      select id, kind, status, credits, amount, debt_credits, stripe_refund_id, workflow_id
      from refunds where payment_id = ${paymentId}`;
    expect(row).toEqual({
      id: `rfd_${refund.id}`,
      kind: 'stripe',
      status: 'refunded',
      credits: '100',
      amount: '500',
      debt_credits: '0',
      stripe_refund_id: refund.id,
      workflow_id: workflowIds.stripeRefund(paymentId),
    });
    expect((await bench.read(customer.token, paymentId)).status).toBe('refunded');

    // Stripe delivers the same event again: recorded once, nothing taken twice.
    expect(await accepted(bench, event)).toMatchObject({ duplicate: true, status: 'completed' });
    // A new event id about the same refund (Stripe's own retry or a reconciliation) converges too.
    await accepted(bench, chargeRefunded(bench, paymentId));
    const state = await eventually(async () => {
      const s = await bench.temporal.workflow
        .getHandle(workflowIds.stripeRefund(paymentId))
        .query(refundStateQuery);
      return s.credits === 100 ? s : undefined;
    });
    expect(state).toMatchObject({ kind: 'stripe', credits: 100, debtCredits: 0 });
    expect(await clawbacks(bench, paymentId)).toHaveLength(1);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);

    const told = await deliveredNotifications(bench.db, customer.id);
    expect(told.map((n) => n.title)).toContain('Credits taken back after a refund');
    if (recordingHistories()) {
      // The run ends once no report came for a minute; only worth the wait when recording.
      const handle = bench.temporal.workflow.getHandle(workflowIds.stripeRefund(paymentId));
      await handle.result();
      await keepHistory(bench.temporal, 'refund-stripe-taken-back', handle.workflowId);
    }
  }, 120_000);

  it('takes back the pro-rata share of a partial refund and keeps the rest spendable', async () => {
    const { customer, paymentId } = await creditedTopup(bench, 'medium'); // 550 credits, 2500
    bench.stripe.refundAtStripe(paymentId, 333);
    await accepted(bench, chargeRefunded(bench, paymentId));
    // 550 × 333 / 2500 = 73.26 → 74 (rounded up: the whole amount takes back every credit)
    await refundedCredits(bench, paymentId, 74);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(476);
    expect(await payment(bench, paymentId)).toEqual({
      status: 'partially_refunded',
      refundedCredits: 74,
      refundedAmount: 333,
    });
    expect((await bench.read(customer.token, paymentId)).status).toBe('partially_refunded');

    // The rest of the money: exactly the credits not yet taken back, never one more.
    bench.stripe.refundAtStripe(paymentId);
    await accepted(bench, chargeRefunded(bench, paymentId));
    await refundedCredits(bench, paymentId, 550);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
    expect((await clawbacks(bench, paymentId)).map((c) => c.credits)).toEqual([74, 476]);
    expect(await payment(bench, paymentId)).toMatchObject({
      status: 'refunded',
      refundedAmount: 2500,
    });
  });

  it('takes back each of two refunds once when their events arrive in reverse order', async () => {
    const { customer, paymentId } = await creditedTopup(bench, 'medium');
    const first = bench.stripe.refundAtStripe(paymentId, 1000);
    const early = chargeRefunded(bench, paymentId);
    const second = bench.stripe.refundAtStripe(paymentId, 1500);
    const late = chargeRefunded(bench, paymentId);
    await accepted(bench, late);
    await accepted(bench, early);
    await accepted(bench, early);
    await refundedCredits(bench, paymentId, 550);
    const taken = await clawbacks(bench, paymentId);
    expect(taken.map((c) => c.refundId).sort()).toEqual([first.id, second.id].sort());
    expect(taken.reduce((sum, c) => sum + c.credits, 0)).toBe(550);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
  });

  it('claws back what the wallet holds and records the rest as a debt, with an alert', async () => {
    const { customer, paymentId } = await creditedTopup(bench);
    await bench.ledger.postEntry({
      idempotencyKey: uniqueId('spend'),
      type: 'test_debit',
      description: 'spent before the refund',
      lines: [
        { account: { wallet: customer.id }, amount: -70 },
        { account: { system: 'revenue' }, amount: 70 },
      ],
    });
    const refund = bench.stripe.refundAtStripe(paymentId);
    await accepted(bench, chargeRefunded(bench, paymentId));
    await refundedCredits(bench, paymentId, 100);

    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
    const key = `stripe-refund:${refund.id}`;
    const lines = await bench.db.sql<{ code: string; amount: string }[]>`
      select case when a.kind = 'wallet' then 'wallet' else a.code end as code, p.amount
      from postings p
      join entries e on e.id = p.entry_id join accounts a on a.id = p.account_id
      where e.idempotency_key = ${key} order by a.code`;
    expect(lines).toEqual([
      { code: 'receivables', amount: '-70' },
      { code: 'refunds', amount: '100' },
      { code: 'wallet', amount: '-30' },
    ]);
    const debts = await bench.db.sql`
      select credits, settled_credits, source from customer_debts where customer_id = ${customer.id}`;
    expect(debts).toEqual([{ credits: '70', settled_credits: '0', source: key }]);
    const [row] = await bench.db.sql`
      select credits, debt_credits from refunds where stripe_refund_id = ${refund.id}`;
    expect(row).toEqual({ credits: '100', debt_credits: '70' });
    const alerts = await bench.db.sql`
      select kind, severity, status from alerts where key = ${`customer_debt:${key}`}`;
    expect(alerts).toEqual([{ kind: 'customer_debt', severity: 'warning', status: 'open' }]);
  });

  it('leaves our own API refunds alone: their credits were taken back before Stripe was asked', async () => {
    const { customer, paymentId, session } = await creditedTopup(bench);
    const ourId = uniqueId('rfd');
    await bench.db.sql`
      insert into refunds (id, workflow_id, kind, customer_id, payment_id, credits, amount, currency,
                           reason, requested_by, status)
      values (${ourId}, ${`refund-${ourId}`}, 'topup', ${customer.id}, ${paymentId}, 0, 0, 'eur',
              'test', 'test', 'processing')`;
    await bench.stripe.gateway.createRefund({
      paymentIntentId: session.paymentIntentId,
      amount: 200,
      refundId: ourId,
      workflowId: `refund-${ourId}`,
      idempotencyKey: `refund-${ourId}:stripe`,
    });
    await accepted(bench, chargeRefunded(bench, paymentId));
    // Then a Dashboard refund of 300: only that one is taken back (100 × 300 / 500 = 60).
    const dashboard = bench.stripe.refundAtStripe(paymentId, 300);
    await accepted(bench, chargeRefunded(bench, paymentId));
    await refundedCredits(bench, paymentId, 60);
    expect((await clawbacks(bench, paymentId)).map((c) => c.refundId)).toEqual([dashboard.id]);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(40);
    expect((await payment(bench, paymentId)).refundedAmount).toBe(300);
  });

  it('reads Stripe’s list again when it lags behind the event, then trusts the list', async () => {
    const { customer, paymentId } = await creditedTopup(bench);
    // The event already says 500 refunded; Stripe's list shows the refund a moment later.
    const event = stripeEvent(
      'charge.refunded',
      bench.stripe.chargeObject(paymentId, { amount_refunded: 500, refunded: true }),
    );
    await accepted(bench, event);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await clawbacks(bench, paymentId)).toEqual([]);
    const refund = bench.stripe.refundAtStripe(paymentId);
    await eventually(
      async () => ((await payment(bench, paymentId)).refundedCredits === 100 ? true : undefined),
      { timeoutMs: 30_000 },
    );
    expect((await clawbacks(bench, paymentId)).map((c) => c.refundId)).toEqual([refund.id]);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
  }, 40_000);

  it('flags a refund of a payment intent we never recorded, with an alert', async () => {
    const event = stripeEvent('charge.refunded', {
      id: 'ch_unknown',
      object: 'charge',
      payment_intent: `pi_unknown_${uniqueId('x').replace(/-/g, '')}`,
      amount_refunded: 500,
    });
    expect(await accepted(bench, event)).toMatchObject({ status: 'flagged' });
    const [row] = await bench.db.sql`select status from stripe_events where id = ${event.id}`;
    expect(row).toEqual({ status: 'flagged' });
    const alerts = await bench.db.sql`
      select kind from alerts where key = ${`stripe_event_flagged:${event.id}`}`;
    expect(alerts).toEqual([{ kind: 'stripe_event_flagged' }]);
  });

  it('answers 503 when Temporal is unreachable, and Stripe’s redelivery then takes the credits back', async () => {
    const { customer, paymentId } = await creditedTopup(bench);
    bench.stripe.refundAtStripe(paymentId);
    const event = chargeRefunded(bench, paymentId);
    const broken = await connectTestClient();
    await broken.connection.close();
    const brokenApp = testApp(bench.db, broken, bench.taskQueue, {
      stripeWebhookSecret: TEST_WEBHOOK_SECRET,
      logger: createLogger({ level: 'silent' }),
    });
    const failed = await brokenApp.request('/webhooks/stripe', webhookRequest(event));
    expect(failed.status).toBe(503);
    const [row] = await bench.db.sql`select status from stripe_events where id = ${event.id}`;
    expect(row).toEqual({ status: 'failed' });
    expect(await bench.ledger.walletBalance(customer.id)).toBe(100);

    expect(await accepted(bench, event)).toMatchObject({ status: 'completed' });
    await refundedCredits(bench, paymentId, 100);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
  });
});

describe('a worker lost right after the take-back committed', () => {
  it('retries the step and still takes the credits back exactly once', async () => {
    const { customer, paymentId } = await creditedTopup(crashing, 'medium');
    const first = crashing.stripe.refundAtStripe(paymentId, 500);
    await accepted(crashing, chargeRefunded(crashing, paymentId));
    const second = crashing.stripe.refundAtStripe(paymentId, 500);
    await accepted(crashing, chargeRefunded(crashing, paymentId));
    await refundedCredits(crashing, paymentId, 220);
    const state = await eventually(async () => {
      const s = await crashing.temporal.workflow
        .getHandle(workflowIds.stripeRefund(paymentId))
        .query(refundStateQuery);
      return s.credits === 220 ? s : undefined;
    });
    expect(state.credits).toBe(220);
    expect(crashes).toEqual(new Set([first.id, second.id]));
    expect((await clawbacks(crashing, paymentId)).map((c) => c.credits)).toEqual([110, 110]);
    expect(await crashing.ledger.walletBalance(customer.id)).toBe(330);
    const rows = await crashing.db.sql`select id from refunds where payment_id = ${paymentId}`;
    expect(rows).toHaveLength(2);
  });
});
