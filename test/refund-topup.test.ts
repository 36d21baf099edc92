// Top-up refunds through the API: credits back first, then the money at Stripe, pro rata; refused
// when the credits are spent; compensated when Stripe refuses; exactly once under retries, outages
// and a worker crash. Real Temporal, PostgreSQL and the Stripe double in front of stripe-mock.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Activities } from '../src/activities/index.js';
import type { RefundState } from '../src/shared.js';
import {
  creditedTopup,
  startCheckoutBench,
  type CheckoutBench,
  type CheckoutStarted,
} from './checkout-harness.js';
import {
  adminToken,
  deliveredNotifications,
  eventually,
  jsonRequest,
  startTestWorker,
  uniqueId,
} from './helpers.js';
import { keepHistory } from './history-recorder.js';
import { sessionObject, stripeEvent } from './stripe.js';

let bench: CheckoutBench;
/** No worker of its own: the crash test runs and stops workers on its queue itself. */
let crashBench: CheckoutBench;
let admin: string;

beforeAll(async () => {
  [bench, crashBench] = await Promise.all([
    startCheckoutBench('refund-topup'),
    startCheckoutBench('refund-topup-crash', { worker: false }),
  ]);
  admin = await adminToken();
});

afterAll(async () => {
  // Both end with the ledger checker and "every paid payment credited once".
  await Promise.all([bench?.close(), crashBench?.close()]);
});

function requestRefund(
  on: CheckoutBench,
  token: string,
  body: Record<string, unknown>,
  key = uniqueId('refund'),
) {
  return on.app.request(
    '/v1/refunds',
    jsonRequest('POST', { reason: 'changed my mind', ...body }, token, { 'idempotency-key': key }),
  );
}

async function readRefund(on: CheckoutBench, token: string, id: string): Promise<RefundState> {
  const res = await on.app.request(`/v1/refunds/${id}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  expect(res.status).toBe(200);
  return (await res.json()) as RefundState;
}

const settled = (on: CheckoutBench, token: string, id: string, timeoutMs = 30_000) =>
  eventually(
    async () => {
      const state = await readRefund(on, token, id);
      return ['refunded', 'failed', 'rejected'].includes(state.status) ? state : undefined;
    },
    { timeoutMs, intervalMs: 200 },
  );

async function payment(on: CheckoutBench, id: string) {
  const [row] = await on.db.sql<
    { status: string; refunded_credits: string; refunded_amount: string }[]
  >`select status, refunded_credits, refunded_amount from payments where id = ${id}`;
  return {
    status: row!.status,
    refundedCredits: Number(row!.refunded_credits),
    refundedAmount: Number(row!.refunded_amount),
  };
}

async function entries(on: CheckoutBench, paymentId: string) {
  return on.db.sql<{ type: string; idempotency_key: string }[]>`
    select type, idempotency_key from entries
    where metadata->>'paymentId' = ${paymentId} and type like 'refund%' order by id`;
}

/** Keeps the run's history when histories are being recorded, once it has closed. */
async function keep(on: CheckoutBench, name: string, workflowId: string) {
  await on.temporal.workflow
    .getHandle(workflowId)
    .result()
    .catch(() => undefined);
  await keepHistory(on.temporal, name, workflowId);
}

const stripeRefundsOf = (on: CheckoutBench, intent: string) =>
  on.stripe.refunds.filter((r) => r.paymentIntentId === intent);

describe('a customer refunds their own top-up', () => {
  it('in full: credits taken back, money refunded at Stripe once, payment refunded', async () => {
    const { customer, paymentId, intent } = await creditedTopup(bench);
    const res = await requestRefund(bench, customer.token, { paymentId });
    expect(res.status, await res.clone().text()).toBe(202);
    const started = (await res.json()) as { id: string; workflowId: string; status: string };
    expect(started.id).toMatch(/^rfd_[0-9a-f]{32}$/);
    expect(started.workflowId).toBe(`refund-${started.id}`);
    expect(started.status).toBe('processing');

    const state = await settled(bench, customer.token, started.id);
    expect(state).toMatchObject({
      id: started.id,
      kind: 'topup',
      status: 'refunded',
      credits: 100,
      amount: 500,
      currency: 'eur',
      reason: 'changed my mind',
      paymentId,
    });
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
    expect(await payment(bench, paymentId)).toEqual({
      status: 'refunded',
      refundedCredits: 100,
      refundedAmount: 500,
    });
    const atStripe = stripeRefundsOf(bench, intent);
    expect(atStripe).toHaveLength(1);
    expect(atStripe[0]).toMatchObject({
      amount: 500,
      status: 'succeeded',
      metadata: { refundId: started.id, workflowId: started.workflowId },
    });
    const [row] = await bench.db
      .sql`select stripe_refund_id, status from refunds where id = ${started.id}`;
    expect(row).toEqual({ stripe_refund_id: atStripe[0]!.id, status: 'refunded' });
    expect((await entries(bench, paymentId)).map((e) => e.type)).toEqual(['refund_clawback']);
    await keep(bench, 'refund-topup-refunded', started.workflowId);

    // The list shows it; the customer was told.
    const list = await bench.app.request(`/v1/refunds?paymentId=${paymentId}`, {
      headers: { authorization: `Bearer ${customer.token}` },
    });
    expect(list.status).toBe(200);
    const { refunds } = (await list.json()) as { refunds: RefundState[] };
    expect(refunds.map((r) => [r.id, r.status])).toEqual([[started.id, 'refunded']]);
    const told = await deliveredNotifications(bench.db, customer.id);
    expect(told.map((n) => n.title)).toContain('Top-up refund started');

    // Nothing is left: a second refund is refused before anything starts.
    const again = await requestRefund(bench, customer.token, { paymentId });
    expect(again.status).toBe(422);
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe(
      'nothing_to_refund',
    );
  });

  it('in parts: money pro rata rounded down, the last part gets what is left, never more than paid', async () => {
    // medium: 550 credits for 25.00 EUR; 100 credits are worth 454.54… cents.
    const { customer, paymentId, intent } = await creditedTopup(bench, 'medium');
    const first = await requestRefund(bench, customer.token, { paymentId, credits: 100 });
    expect(first.status).toBe(202);
    const a = await settled(bench, customer.token, ((await first.json()) as { id: string }).id);
    expect(a).toMatchObject({ status: 'refunded', credits: 100, amount: 454 });
    expect(await payment(bench, paymentId)).toEqual({
      status: 'partially_refunded',
      refundedCredits: 100,
      refundedAmount: 454,
    });

    // More than is left is refused, nothing written.
    const tooMuch = await requestRefund(bench, customer.token, { paymentId, credits: 451 });
    expect(tooMuch.status).toBe(422);
    expect(((await tooMuch.json()) as { error: { code: string } }).error.code).toBe(
      'refund_exceeds_payment',
    );

    const second = await requestRefund(bench, customer.token, { paymentId, credits: 100 });
    const b = await settled(bench, customer.token, ((await second.json()) as { id: string }).id);
    expect(b).toMatchObject({ status: 'refunded', amount: 454 });
    // All that is left (350 credits): 2500 - 908 = 1592, not floor(350 × 2500 / 550) = 1590.
    const last = await requestRefund(bench, customer.token, { paymentId });
    const c = await settled(bench, customer.token, ((await last.json()) as { id: string }).id);
    expect(c).toMatchObject({ status: 'refunded', credits: 350, amount: 1592 });

    expect(await payment(bench, paymentId)).toEqual({
      status: 'refunded',
      refundedCredits: 550,
      refundedAmount: 2500,
    });
    expect(stripeRefundsOf(bench, intent).map((r) => r.amount)).toEqual([454, 454, 1592]);
    expect(bench.stripe.refunded(intent)).toBe(2500);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);

    // The database itself refuses more than was paid, whatever the code does.
    await expect(
      bench.db
        .sql`update payments set refunded_credits = refunded_credits + 1 where id = ${paymentId}`,
    ).rejects.toThrow(/payments_refunded_credits_check/);
    await expect(
      bench.db
        .sql`update payments set refunded_amount = refunded_amount + 1 where id = ${paymentId}`,
    ).rejects.toThrow(/payments_refunded_amount_check/);
  });

  it('two partial refunds racing for more than is left: one refunds, the other is rejected', async () => {
    const { customer, paymentId, intent } = await creditedTopup(bench, 'medium');
    // Each fits on its own (300 of 550); together they do not.
    const answers = await Promise.all([
      requestRefund(bench, customer.token, { paymentId, credits: 300 }),
      requestRefund(bench, customer.token, { paymentId, credits: 300 }),
    ]);
    const outcomes: string[] = [];
    for (const res of answers) {
      if (res.status === 202) {
        const state = await settled(
          bench,
          customer.token,
          ((await res.json()) as { id: string }).id,
        );
        outcomes.push(state.status === 'rejected' ? state.error!.code : state.status);
      } else {
        expect(res.status).toBe(422);
        outcomes.push(((await res.json()) as { error: { code: string } }).error.code);
      }
    }
    expect(outcomes.sort()).toEqual(['credits_already_spent', 'refunded']);
    expect(await payment(bench, paymentId)).toEqual({
      status: 'partially_refunded',
      refundedCredits: 300,
      refundedAmount: 1363,
    });
    expect(stripeRefundsOf(bench, intent).map((r) => r.amount)).toEqual([1363]);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(250);
  });

  it('credits already spent: 422 and nothing written, unless a partial refund of what is left is asked', async () => {
    const { customer, paymentId, intent } = await creditedTopup(bench);
    // 70 of the 100 credits are spent.
    await bench.ledger.postEntry({
      idempotencyKey: uniqueId('spend'),
      type: 'test_debit',
      description: 'spent on something',
      lines: [
        { account: { wallet: customer.id }, amount: -70 },
        { account: { system: 'revenue' }, amount: 70 },
      ],
    });
    const res = await requestRefund(bench, customer.token, { paymentId });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('credits_already_spent');
    expect(body.error.message).toContain('at most 30 credits');
    expect(await entries(bench, paymentId)).toEqual([]);
    expect(await bench.db.sql`select id from refunds where payment_id = ${paymentId}`).toEqual([]);
    expect(stripeRefundsOf(bench, intent)).toEqual([]);
    expect(await payment(bench, paymentId)).toMatchObject({
      status: 'credited',
      refundedCredits: 0,
    });

    const partial = await requestRefund(bench, customer.token, { paymentId, credits: 30 });
    expect(partial.status).toBe(202);
    const done = await settled(
      bench,
      customer.token,
      ((await partial.json()) as { id: string }).id,
    );
    expect(done).toMatchObject({ status: 'refunded', credits: 30, amount: 150 });
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
  });

  it('credits spent between the request and the claw-back: the workflow rejects it, nothing moves', async () => {
    const { customer, paymentId, intent } = await creditedTopup(bench);
    // Straight to the workflow, as a POST that passed its checks a moment before the spend.
    await bench.ledger.postEntry({
      idempotencyKey: uniqueId('spend'),
      type: 'test_debit',
      description: 'spent meanwhile',
      lines: [
        { account: { wallet: customer.id }, amount: -1 },
        { account: { system: 'revenue' }, amount: 1 },
      ],
    });
    const refundId = `rfd_${uniqueId('race').replaceAll('-', '').slice(0, 32)}`;
    const handle = await bench.temporal.workflow.start('refund', {
      taskQueue: bench.taskQueue,
      workflowId: `refund-${refundId}`,
      args: [
        {
          refundId,
          kind: 'topup',
          customerId: customer.id,
          paymentId,
          reason: 'race',
          requestedBy: `customer:${customer.id}`,
          startedBy: 'api',
        },
      ],
    });
    expect(await handle.result()).toMatchObject({ status: 'rejected' });
    await keep(bench, 'refund-topup-rejected', handle.workflowId);
    const state = await readRefund(bench, customer.token, refundId);
    expect(state).toMatchObject({ status: 'rejected', error: { code: 'credits_already_spent' } });
    expect(await entries(bench, paymentId)).toEqual([]);
    expect(stripeRefundsOf(bench, intent)).toEqual([]);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(99);
    // The claw-back's fence is closed: no late attempt can post it now.
    const [fence] = await bench.db.sql`
      select closed_at is not null as closed from step_fences where key = ${`refund-${refundId}:clawback`}`;
    expect(fence).toEqual({ closed: true });
  });

  it('outside the refund window, or someone else’s payment: refused, nothing written', async () => {
    const { customer, paymentId } = await creditedTopup(bench);
    const other = await bench.customer();
    const theirs = await requestRefund(bench, other.token, { paymentId });
    expect(theirs.status).toBe(404);
    expect(await theirs.text()).not.toContain(customer.id);

    await bench.db.sql`
      update payments set created_at = now() - interval '15 days' where id = ${paymentId}`;
    const late = await requestRefund(bench, customer.token, { paymentId });
    expect(late.status).toBe(403);
    expect(((await late.json()) as { error: { code: string } }).error.code).toBe(
      'refund_window_closed',
    );
    // A customer cannot ask a purchase refund at all.
    const purchase = await requestRefund(bench, customer.token, {
      verificationId: `ver_${'0'.repeat(32)}`,
    });
    expect(purchase.status).toBe(403);
    expect(((await purchase.json()) as { error: { code: string } }).error.code).toBe(
      'refund_not_allowed',
    );
    expect(await bench.db.sql`select id from refunds where payment_id = ${paymentId}`).toEqual([]);

    // An admin may refund it past the window.
    const byAdmin = await requestRefund(bench, admin, { paymentId, reason: 'support ticket 42' });
    expect(byAdmin.status).toBe(202);
    const done = await settled(bench, admin, ((await byAdmin.json()) as { id: string }).id);
    expect(done).toMatchObject({ status: 'refunded', credits: 100, amount: 500 });
    // The customer sees the admin's refund of their payment; another customer does not.
    const mine = await bench.app.request(`/v1/refunds/${done.id}`, {
      headers: { authorization: `Bearer ${customer.token}` },
    });
    expect(mine.status).toBe(200);
    const notMine = await bench.app.request(`/v1/refunds/${done.id}`, {
      headers: { authorization: `Bearer ${other.token}` },
    });
    expect(notMine.status).toBe(404);
    const list = await bench.app.request(`/v1/refunds?paymentId=${paymentId}`, {
      headers: { authorization: `Bearer ${other.token}` },
    });
    expect(((await list.json()) as { refunds: unknown[] }).refunds).toEqual([]);
  });

  it('a retried POST with the same Idempotency-Key is one refund; another body under it is 409', async () => {
    const { customer, paymentId, intent } = await creditedTopup(bench);
    const key = uniqueId('same-key');
    const [one, two] = await Promise.all([
      requestRefund(bench, customer.token, { paymentId, credits: 40 }, key),
      requestRefund(bench, customer.token, { paymentId, credits: 40 }, key),
    ]);
    expect([one.status, two.status]).toEqual([202, 202]);
    const a = (await one.json()) as { id: string };
    const b = (await two.json()) as { id: string };
    expect(a.id).toBe(b.id);
    await settled(bench, customer.token, a.id);
    const three = await requestRefund(bench, customer.token, { paymentId, credits: 40 }, key);
    expect(three.status).toBe(202);
    expect(((await three.json()) as { id: string; status: string }).status).toBe('refunded');
    const conflict = await requestRefund(bench, customer.token, { paymentId, credits: 41 }, key);
    expect(conflict.status).toBe(409);
    expect(stripeRefundsOf(bench, intent)).toHaveLength(1);
    expect((await entries(bench, paymentId)).map((e) => e.type)).toEqual(['refund_clawback']);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(60);

    const missingKey = await bench.app.request(
      '/v1/refunds',
      jsonRequest('POST', { paymentId, reason: 'x' }, customer.token),
    );
    expect(missingKey.status).toBe(400);
  });
});

describe('Stripe refuses or is down', () => {
  it('refuses for good (refund failed at Stripe): credits put back, refund failed, payment credited', async () => {
    const { customer, paymentId, intent } = await creditedTopup(bench);
    bench.stripe.refundOutcome = 'failed';
    try {
      const res = await requestRefund(bench, customer.token, { paymentId });
      expect(res.status).toBe(202);
      const state = await settled(bench, customer.token, ((await res.json()) as { id: string }).id);
      expect(state).toMatchObject({ status: 'failed', error: { code: 'refund_refused' } });
      await keep(bench, 'refund-topup-failed', state.workflowId);
    } finally {
      bench.stripe.refundOutcome = 'succeeded';
    }
    expect(await bench.ledger.walletBalance(customer.id)).toBe(100);
    expect(await payment(bench, paymentId)).toEqual({
      status: 'credited',
      refundedCredits: 0,
      refundedAmount: 0,
    });
    expect((await entries(bench, paymentId)).map((e) => e.type)).toEqual([
      'refund_clawback',
      'refund_recredit',
    ]);
    expect(stripeRefundsOf(bench, intent).map((r) => r.status)).toEqual(['failed']);
    const told = await deliveredNotifications(bench.db, customer.id);
    expect(told.map((n) => n.title)).toContain('Top-up refund failed');
    // A person is told: the customer expected money back and none went.
    const alerts = await bench.db.sql<{ kind: string; occurrences: number }[]>`
      select kind, occurrences from alerts where customer_id = ${customer.id}`;
    expect(alerts).toEqual([{ kind: 'refund_failed', occurrences: 1 }]);
  });

  it('refuses the request itself (400): the same compensation', async () => {
    const { customer, paymentId } = await creditedTopup(bench);
    bench.stripe.failNext = {
      path: /^\/v1\/refunds$/,
      times: 1,
      status: 400,
      type: 'invalid_request_error',
    };
    const res = await requestRefund(bench, customer.token, { paymentId, credits: 10 });
    const state = await settled(bench, customer.token, ((await res.json()) as { id: string }).id);
    expect(state).toMatchObject({ status: 'failed', error: { code: 'refund_refused' } });
    expect(await bench.ledger.walletBalance(customer.id)).toBe(100);
    expect(await payment(bench, paymentId)).toMatchObject({
      status: 'credited',
      refundedCredits: 0,
    });
  });

  it('an outage retries with the same idempotency key until Stripe answers: one refund', async () => {
    const { customer, paymentId, intent } = await creditedTopup(bench);
    bench.stripe.failNext = { path: /^\/v1\/refunds$/, times: 4 };
    const res = await requestRefund(bench, customer.token, { paymentId });
    const id = ((await res.json()) as { id: string }).id;
    const state = await settled(bench, customer.token, id, 60_000);
    expect(state.status).toBe('refunded');
    expect(bench.stripe.failNext?.times).toBe(0);
    const attempts = bench.stripe.requests.filter(
      (r) => r.method === 'POST' && r.path === '/v1/refunds' && r.body.includes(intent),
    );
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(new Set(attempts.map((r) => r.idempotencyKey))).toEqual(
      new Set([`refund-${id}:stripe-refund`]),
    );
    expect(stripeRefundsOf(bench, intent)).toHaveLength(1);
    expect(await payment(bench, paymentId)).toMatchObject({
      status: 'refunded',
      refundedAmount: 500,
    });
  });
});

describe('a worker crash mid-refund', () => {
  it('after the claw-back and the Stripe call, before either reported: one claw-back, one Stripe refund', async () => {
    const { customer, paymentId, intent } = await (async () => {
      // The crash bench has no worker: credit the top-up with a short-lived one.
      const w = await startTestWorker(crashBench.db, crashBench.taskQueue, {
        stripe: crashBench.stripe.gateway,
      });
      try {
        return await creditedTopup(crashBench);
      } finally {
        await w.stop();
      }
    })();

    // Worker 1 refunds at Stripe, then "dies" before the activity reports it.
    let reachedStripe = false;
    const first = await startTestWorker(
      crashBench.db,
      crashBench.taskQueue,
      { stripe: crashBench.stripe.gateway },
      {
        refundTopupAtStripe: async (input: Parameters<Activities['refundTopupAtStripe']>[0]) => {
          await crashBench.stripe.gateway.createRefund({
            paymentIntentId: input.paymentIntentId,
            amount: input.amount,
            refundId: input.refundId,
            workflowId: input.workflowId,
            idempotencyKey: `${input.workflowId}:stripe-refund`,
          });
          reachedStripe = true;
          throw new Error('worker lost before reporting');
        },
      },
    );
    const res = await requestRefund(crashBench, customer.token, { paymentId });
    expect(res.status).toBe(202);
    const id = ((await res.json()) as { id: string }).id;
    await eventually(() => Promise.resolve(reachedStripe ? true : undefined), {
      timeoutMs: 20_000,
    });
    await first.stop();
    expect(stripeRefundsOf(crashBench, intent)).toHaveLength(1);
    const [mid] = await crashBench.db.sql`select status from refunds where id = ${id}`;
    expect(mid).toEqual({ status: 'processing' });

    const second = await startTestWorker(crashBench.db, crashBench.taskQueue, {
      stripe: crashBench.stripe.gateway,
    });
    try {
      const state = await settled(crashBench, customer.token, id, 60_000);
      expect(state).toMatchObject({ status: 'refunded', credits: 100, amount: 500 });
    } finally {
      await second.stop();
    }
    expect(stripeRefundsOf(crashBench, intent)).toHaveLength(1);
    expect((await entries(crashBench, paymentId)).map((e) => e.type)).toEqual(['refund_clawback']);
    expect(await crashBench.ledger.walletBalance(customer.id)).toBe(0);
    expect(await payment(crashBench, paymentId)).toEqual({
      status: 'refunded',
      refundedCredits: 100,
      refundedAmount: 500,
    });
  });
});

/**
 * A debt as the refund-at-Stripe flow records it: one entry taking what the wallet held and
 * booking the rest as receivable, and the customer_debts row under the entry's key.
 */
async function recordDebt(
  on: CheckoutBench,
  customerId: string,
  lines: { held: number; debt: number; paymentId?: string },
) {
  const key = uniqueId('stripe-refund-debt');
  const posted = await on.ledger.postEntry(
    {
      idempotencyKey: key,
      type: lines.paymentId ? 'stripe_refund_clawback' : 'test_debt',
      description: 'refunded at Stripe beyond what the wallet held',
      metadata: lines.paymentId ? { paymentId: lines.paymentId } : {},
      lines: [
        ...(lines.held > 0 ? [{ account: { wallet: customerId }, amount: -lines.held }] : []),
        { account: { system: 'receivables' }, amount: -lines.debt },
        {
          account: { system: lines.paymentId ? 'refunds' : 'adjustments' },
          amount: lines.held + lines.debt,
        },
      ],
    },
    async (tx, entry) => {
      if (lines.paymentId) {
        await tx`
          update payments set refunded_credits = refunded_credits + ${lines.held + lines.debt},
                              refunded_amount = amount, status = 'refunded'
          where id = ${lines.paymentId}`;
      }
      await tx`
        insert into customer_debts (customer_id, source, credits, entry_id)
        values (${customerId}, ${key}, ${lines.debt}, ${entry.entryId})`;
    },
  );
  return posted;
}

async function debts(on: CheckoutBench, customerId: string) {
  return on.db.sql<{ credits: string; settled_credits: string; settled: boolean }[]>`
    select credits, settled_credits, settled_at is not null as settled
    from customer_debts where customer_id = ${customerId} order by id`;
}

describe('the next top-up settles what the customer owes first', () => {
  it('a refund at Stripe the wallet could not cover: the next pack pays the debt, the rest is credited', async () => {
    const { customer, paymentId } = await creditedTopup(bench);
    await bench.ledger.postEntry({
      idempotencyKey: uniqueId('spend'),
      type: 'test_debit',
      description: 'spent',
      lines: [
        { account: { wallet: customer.id }, amount: -70 },
        { account: { system: 'revenue' }, amount: 70 },
      ],
    });
    // Refunded in full at Stripe: the 30 left are taken, 70 are owed.
    await recordDebt(bench, customer.id, { held: 30, debt: 70, paymentId });
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);

    const res = await bench.buy(customer.token, 'small');
    const started = (await res.json()) as CheckoutStarted;
    bench.stripe.pay(started.id);
    await bench.deliver(
      stripeEvent(
        'checkout.session.completed',
        sessionObject(bench.stripe.session(started.id), { payment_status: 'paid' }),
      ),
    );
    await bench.waitFor(customer.token, started.id, 'credited');
    expect(await bench.ledger.walletBalance(customer.id)).toBe(30);
    expect(await debts(bench, customer.id)).toEqual([
      { credits: '70', settled_credits: '70', settled: true },
    ]);
    const [topup] = await bench.db.sql<{ metadata: { settledDebt?: number } }[]>`
      select metadata from entries where type = 'topup' and metadata->>'paymentId' = ${started.id}`;
    expect(topup!.metadata.settledDebt).toBe(70);
    const told = await deliveredNotifications(bench.db, customer.id);
    expect(told.at(-1)!.body).toContain('70 settled what you owed');
  });

  it('oldest debt first; a pack smaller than the debts goes to them entirely', async () => {
    const customer = await bench.customer();
    await recordDebt(bench, customer.id, { held: 0, debt: 70 });
    await recordDebt(bench, customer.id, { held: 0, debt: 50 });

    const topUp = async () => {
      const res = await bench.buy(customer.token, 'small');
      const started = (await res.json()) as CheckoutStarted;
      bench.stripe.pay(started.id);
      await bench.deliver(
        stripeEvent(
          'checkout.session.completed',
          sessionObject(bench.stripe.session(started.id), { payment_status: 'paid' }),
        ),
      );
      return bench.waitFor(customer.token, started.id, 'credited');
    };
    // 100 credits: 70 settle the first debt, 30 go to the second, none to the wallet.
    await topUp();
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
    expect(await debts(bench, customer.id)).toEqual([
      { credits: '70', settled_credits: '70', settled: true },
      { credits: '50', settled_credits: '30', settled: false },
    ]);
    // The next 100: 20 settle the rest, 80 are spendable.
    await topUp();
    expect(await bench.ledger.walletBalance(customer.id)).toBe(80);
    expect(await debts(bench, customer.id)).toEqual([
      { credits: '70', settled_credits: '70', settled: true },
      { credits: '50', settled_credits: '50', settled: true },
    ]);
  });
});

describe('a refund Stripe accepted and failed later', () => {
  it('puts the credits back once, marks the refund failed and alerts, however often Stripe reports it', async () => {
    const { customer, paymentId, intent } = await creditedTopup(bench);
    const res = await requestRefund(bench, customer.token, { paymentId });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const state = await settled(bench, customer.token, id);
    expect(state.status).toBe('refunded');
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);

    // The card cannot take the money back: Stripe fails the refund and says so.
    const [stripeRefund] = stripeRefundsOf(bench, intent);
    stripeRefund!.status = 'failed';
    const event = stripeEvent('charge.refund.updated', bench.stripe.refundObject(stripeRefund!));
    expect((await bench.deliver(event)).status).toBe(200);
    expect((await bench.deliver(event)).status).toBe(200);
    const again = stripeEvent('refund.failed', bench.stripe.refundObject(stripeRefund!));
    expect((await bench.deliver(again)).status).toBe(200);

    await eventually(
      async () =>
        (await readRefund(bench, customer.token, id)).status === 'failed' ? true : undefined,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(await bench.ledger.walletBalance(customer.id)).toBe(100);
    expect(await payment(bench, paymentId)).toEqual({
      status: 'credited',
      refundedCredits: 0,
      refundedAmount: 0,
    });
    expect((await entries(bench, paymentId)).map((e) => e.type)).toEqual([
      'refund_clawback',
      'refund_recredit',
    ]);
    expect((await readRefund(bench, customer.token, id)).error).toMatchObject({
      code: 'refund_failed_at_stripe',
    });
    const alerts = await bench.db.sql<{ kind: string }[]>`
      select kind from alerts where customer_id = ${customer.id}`;
    expect(alerts).toEqual([{ kind: 'refund_failed' }]);
  });
});
