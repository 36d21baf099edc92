// Reconciliation against real Temporal and PostgreSQL, with a stateful Stripe double: every kind of
// finding injected once, two runs over the same window, each acted on exactly once.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toDate } from '../src/db/client.js';
import { CHUNKS_PER_RUN } from '../src/reconciliation/plan.js';
import { workflowIds } from '../src/shared.js';
import { eventually, expectLedgerConsistent, fund, uniqueId } from './helpers.js';
import { startReconciliationBench, type ReconciliationBench } from './reconciliation-harness.js';

let bench: ReconciliationBench;

beforeAll(async () => {
  bench = await startReconciliationBench('reconciliation');
});

afterAll(async () => {
  await bench?.close();
});

const since = () => new Date(Date.now() - 60_000).toISOString();

async function workflowStatus(workflowId: string): Promise<string | undefined> {
  try {
    return (await bench.temporal.workflow.getHandle(workflowId).describe()).status.name;
  } catch {
    return undefined;
  }
}

async function alertsFor(key: string) {
  return bench.db.sql<{ kind: string; occurrences: number }[]>`
    select kind, occurrences from alerts where key = ${key}`;
}

async function repairsFor(key: string) {
  return bench.db.sql<{ run_id: string; action: string }[]>`
    select run_id, action from reconciliation_repairs where key = ${key}`;
}

describe('reconciliation findings', () => {
  it('acts on each kind of finding once across two runs over the same window', async () => {
    const from = since();
    const { db, ledger, stripe } = bench;

    // paid at Stripe, never reported to us (the webhook was lost)
    const lost = await bench.customer();
    const lostPayment = await bench.buy(lost.token);
    stripe.pay(lostPayment);

    // refunded in the Stripe Dashboard, not taken back
    const refunded = await bench.customer();
    const refundedPayment = await bench.buy(refunded.token);
    await bench.payAndCredit(refunded.token, refundedPayment);
    stripe.refundAtStripe(refundedPayment, 200);

    // disputed at Stripe, not followed
    const disputed = await bench.customer();
    const disputedPayment = await bench.buy(disputed.token);
    await bench.payAndCredit(disputed.token, disputedPayment);
    const dispute = stripe.openDispute(disputedPayment);

    // credited here, but Stripe no longer shows it paid
    const phantom = await bench.customer();
    const phantomPayment = await bench.buy(phantom.token);
    await bench.payAndCredit(phantom.token, phantomPayment);
    Object.assign(stripe.session(phantomPayment), { status: 'expired', paymentStatus: 'unpaid' });

    // Stripe took another amount than recorded (not credited: nobody decides that automatically)
    const mismatch = await bench.customer();
    const mismatchPayment = await bench.buy(mismatch.token);
    stripe.pay(mismatchPayment);
    stripe.session(mismatchPayment).request.amount = 999;

    // paid twice at Stripe for one payment
    const twice = await bench.customer();
    const twicePayment = await bench.buy(twice.token);
    await bench.payAndCredit(twice.token, twicePayment);
    const second = stripe.addPaidSession(twicePayment);

    // a verification debited, its workflow gone, long past its timeout
    const stuck = await bench.customer();
    await fund(ledger, stuck.id, 50);
    const verificationId = uniqueId('ver-stuck');
    const debit = await ledger.postEntry({
      idempotencyKey: `${workflowIds.verification(verificationId)}:debit`,
      type: 'verification_purchase',
      description: 'stuck verification',
      workflowId: workflowIds.verification(verificationId),
      metadata: { verificationId },
      lines: [
        { account: { wallet: stuck.id }, amount: -10 },
        { account: { system: 'revenue' }, amount: 10 },
      ],
    });
    await db.sql`
      insert into verifications (id, workflow_id, customer_id, service, country, price,
                                 timeout_seconds, status, debit_entry_id, created_at)
      values (${verificationId}, ${workflowIds.verification(verificationId)}, ${stuck.id},
              'whatsapp', 'US', 10, 5, 'pending', ${debit.entryId}, now() - interval '30 seconds')`;

    // an order that ended with credits still in escrow
    const buyer = await bench.customer();
    await fund(ledger, buyer.id, 50);
    const orderId = uniqueId('ord');
    await db.sql`
      insert into orders (id, workflow_id, buyer_id, item_ids, status, charged)
      values (${orderId}, ${workflowIds.order(orderId)}, ${buyer.id}, '{}', 'failed', 7)`;
    await ledger.postEntry({
      idempotencyKey: `${workflowIds.order(orderId)}:debit`,
      type: 'order_purchase',
      description: 'order left in escrow',
      workflowId: workflowIds.order(orderId),
      lines: [
        { account: { wallet: buyer.id }, amount: -7 },
        { account: { system: 'order_escrow' }, amount: 7 },
      ],
    });

    // a payment still init long after it expired, its workflow gone
    const abandoned = await bench.customer();
    const abandonedPayment = `pay_${randomBytes(16).toString('hex')}`;
    await db.sql`
      insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status,
                            expires_at, created_at)
      values (${abandonedPayment}, ${workflowIds.checkout(abandonedPayment)}, ${abandoned.id},
              'small', 100, 500, 'eur', 'init', now() - interval '1 minute', now() - interval '2 minutes')`;

    // an invariant the ledger checker reports (injected into its report, not into the ledger)
    const violationDetail = `test violation ${uniqueId('v')}`;
    bench.injectedViolations.push({
      invariant: 'cached_balance_mismatch',
      detail: violationDetail,
    });

    const scope = [lost, refunded, disputed, phantom, mismatch, twice, stuck, buyer, abandoned].map(
      (c) => c.id,
    );
    const to = new Date(Date.now() + 2 * 60_000).toISOString();
    const first = await bench.run({ trigger: 'manual', from, to, customerIds: scope });
    const firstFindings = await bench.findings(first.runId);

    // Let the repairs land before the second look, as the next scheduled run would.
    await eventually(async () => {
      const [p] = await db.sql<{ status: string }[]>`
        select status from payments where id = ${lostPayment}`;
      return p?.status === 'credited' ? true : undefined;
    });
    await eventually(async () => {
      const [p] = await db.sql<{ status: string }[]>`
        select status from payments where id = ${abandonedPayment}`;
      return p?.status === 'expired' ? true : undefined;
    });
    const secondRun = await bench.run({ trigger: 'manual', from, to, customerIds: scope });
    const secondFindings = await bench.findings(secondRun.runId);
    bench.injectedViolations.length = 0;

    const actionsOf = (key: string) =>
      [...firstFindings, ...secondFindings].filter((f) => f.key === key).map((f) => f.action);
    const byKind = (kind: string) => firstFindings.filter((f) => f.kind === kind);

    // paid, not credited: repaired once through the checkout workflow; credited exactly once
    const lostKey = `paid_not_credited:${lostPayment}`;
    expect(actionsOf(lostKey)).toEqual(['repaired']);
    expect(await repairsFor(lostKey)).toEqual([{ run_id: first.runId, action: 'repaired' }]);
    expect(await ledger.walletBalance(lost.id)).toBe(100);
    const [topups] = await db.sql<{ n: string }[]>`
      select count(*) as n from entries where type = 'topup' and metadata->>'paymentId' = ${lostPayment}`;
    expect(Number(topups!.n)).toBe(1);

    // refunded at Stripe: the refund workflow was started, once
    const refundKey = `refund_not_taken_back:${refundedPayment}:200`;
    expect(byKind('refund_not_taken_back').map((f) => [f.key, f.action, f.amount])).toEqual([
      [refundKey, 'repaired', '200'],
    ]);
    expect(await workflowStatus(workflowIds.stripeRefund(refundedPayment))).toBeDefined();
    expect(await repairsFor(refundKey)).toHaveLength(1);

    // disputed: the dispute workflow was started, once
    const disputeKey = `dispute_not_followed:${dispute.id}:open`;
    expect(byKind('dispute_not_followed').map((f) => [f.key, f.action])).toEqual([
      [disputeKey, 'repaired'],
    ]);
    expect(await workflowStatus(workflowIds.dispute(dispute.id))).toBeDefined();
    expect(await repairsFor(disputeKey)).toHaveLength(1);

    // flagged kinds: one alert each, raised once though both runs found them
    const flagged = [
      `credited_without_stripe_payment:${phantomPayment}`,
      `amount_mismatch:${mismatchPayment}:${stripe.session(mismatchPayment).paymentIntentId}`,
      `duplicate_payment:${twicePayment}:${second.paymentIntentId}`,
      `order_escrow_left:${workflowIds.order(orderId)}`,
    ];
    for (const key of flagged) {
      expect(actionsOf(key), key).toEqual(['flagged', 'none']);
      expect(await alertsFor(`reconciliation:${key}`)).toEqual([
        { kind: 'reconciliation_finding', occurrences: 1 },
      ]);
    }
    const ledgerFinding = byKind('ledger_violation').find((f) => f.outcome.includes('alert'));
    expect(ledgerFinding?.action).toBe('flagged');
    expect(secondFindings.filter((f) => f.key === ledgerFinding?.key).map((f) => f.action)).toEqual(
      ['none'],
    );
    // the mismatched payment was not credited by anyone
    expect(await ledger.walletBalance(mismatch.id)).toBe(0);

    // the stuck verification: refunded as its own workflow would have, once, and settled, so
    // the second run no longer finds it
    const stuckKey = `verification_unsettled:${verificationId}`;
    expect(actionsOf(stuckKey)).toEqual(['repaired']);
    expect(await repairsFor(stuckKey)).toHaveLength(1);
    const stuckRefunds = await db.sql<{ type: string }[]>`
      select type from entries
      where idempotency_key = ${`${workflowIds.verification(verificationId)}:refund`}`;
    expect(stuckRefunds).toEqual([{ type: 'verification_refund' }]);
    const [stuckRow] = await db.sql<{ status: string }[]>`
      select status from verifications where id = ${verificationId}`;
    expect(stuckRow?.status).toBe('refunded');

    // the abandoned payment: its workflow was told it expired, once
    const abandonedKey = `payment_init_expired:${abandonedPayment}`;
    expect(actionsOf(abandonedKey)).toEqual(['repaired']);
    expect(await repairsFor(abandonedKey)).toHaveLength(1);

    // the report: counts per category and what matched
    expect(first.summary.categories.paid_not_credited).toMatchObject({ count: 1, repaired: 1 });
    expect(first.summary.categories.amount_mismatch).toMatchObject({
      count: 1,
      flagged: 1,
      sums: { eur: 999 },
    });
    expect(first.summary.matched).toBeGreaterThanOrEqual(3);
    expect(first.summary.cutoffs.stripe).toBe(to);
    expect(first.summary.ledger.ok).toBe(false);
    expect(secondRun.summary.categories.paid_not_credited).toBeUndefined();

    // Leave the ledger as the checker expects of everyone else's data.
    await ledger.postEntry({
      idempotencyKey: `${workflowIds.order(orderId)}:test-release`,
      type: 'order_refund',
      description: 'test clean-up',
      workflowId: workflowIds.order(orderId),
      lines: [
        { account: { system: 'order_escrow' }, amount: -7 },
        { account: { wallet: buyer.id }, amount: 7 },
      ],
    });
    await db.sql`update verifications set status = 'failed' where id = ${verificationId}`;
    await expectLedgerConsistent(db);
  });
});

describe('a payment left init past its expiry', () => {
  it('is expired at Stripe first, and credited when Stripe shows it was paid after all', async () => {
    const customer = await bench.customer();
    const paymentId = await bench.buy(customer.token);
    const workflowId = workflowIds.checkout(paymentId);
    // Its workflow is gone (terminated by hand), and the payment, paid at Stripe, never reported.
    await bench.temporal.workflow.getHandle(workflowId).terminate('test: workflow lost');
    bench.stripe.pay(paymentId);
    await bench.db.sql`
      update payments set expires_at = now() - interval '1 minute' where id = ${paymentId}`;
    // A window after the session was created: only the check for flows in limbo finds it.
    await new Promise((r) => setTimeout(r, 1100));
    const from = new Date().toISOString();
    const to = new Date(Date.now() + 60_000).toISOString();
    const run = await bench.run({ trigger: 'manual', from, to, customerIds: [customer.id] });
    const findings = await bench.findings(run.runId);
    expect(findings.map((f) => [f.kind, f.action])).toEqual([['payment_init_expired', 'repaired']]);
    expect(findings[0]!.outcome).toMatch(/paid after all/);
    await eventually(async () => {
      const [p] = await bench.db.sql<{ status: string }[]>`
        select status from payments where id = ${paymentId}`;
      return p?.status === 'credited' ? true : undefined;
    });
    expect(await bench.ledger.walletBalance(customer.id)).toBe(100);
    expect(bench.stripe.session(paymentId).expireCalls).toBe(1);
  });
});

describe('a repair that did not take', () => {
  it('is flagged for a person by a later run that still finds it', async () => {
    const impatient = await startReconciliationBench('reconciliation-unresolved', {
      repairGraceMs: 0,
    });
    try {
      const customer = await impatient.customer();
      const paymentId = `pay_${randomBytes(16).toString('hex')}`;
      // A payment init past its expiry, its workflow gone.
      await impatient.db.sql`
        insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status,
                              expires_at, created_at)
        values (${paymentId}, ${workflowIds.checkout(paymentId)}, ${customer.id}, 'small', 100,
                500, 'eur', 'init', now() - interval '1 minute', now() - interval '2 minutes')`;
      const window = {
        trigger: 'manual' as const,
        from: since(),
        to: new Date(Date.now() + 60_000).toISOString(),
        customerIds: [customer.id],
      };
      const first = await impatient.run(window);
      await eventually(async () => {
        const [p] = await impatient.db.sql<{ status: string }[]>`
          select status from payments where id = ${paymentId}`;
        return p?.status === 'expired' ? true : undefined;
      });
      // The first run repaired it; put it back, as if the repair had not taken.
      await impatient.db.sql`update payments set status = 'init' where id = ${paymentId}`;
      const second = await impatient.run(window);
      const key = `payment_init_expired:${paymentId}`;
      expect((await impatient.findings(first.runId)).map((f) => f.action)).toEqual(['repaired']);
      const again = await impatient.findings(second.runId);
      expect(again.map((f) => [f.key, f.action])).toEqual([[key, 'flagged']]);
      expect(await alertsFor(`reconciliation:${key}:unresolved`)).toEqual([
        { kind: 'reconciliation_finding', occurrences: 1 },
      ]);
      await impatient.db.sql`update payments set status = 'expired' where id = ${paymentId}`;
    } finally {
      await impatient.close();
    }
  });
});

describe('reconciliation over many pages and a long window', () => {
  it('lists page by page and a retried page resumes from its heartbeat cursor', async () => {
    const paged = await startReconciliationBench('reconciliation-pages', { pageSize: 2 });
    try {
      const from = since();
      const customer = await paged.customer();
      const payments: string[] = [];
      for (let i = 0; i < 5; i++) {
        const id = await paged.buy(customer.token);
        await paged.payAndCredit(customer.token, id);
        payments.push(id);
      }
      // The third page fails twice (stripe-node retries once), so the activity attempt fails.
      const cursors: Array<string | null> = [];
      const original = paged.stripe.gateway.listCheckoutSessions.bind(paged.stripe.gateway);
      paged.stripe.gateway.listCheckoutSessions = async (params) => {
        cursors.push(params.startingAfter ?? null);
        if (cursors.length === 3) {
          paged.stripe.failNext = { path: /^\/v1\/checkout\/sessions$/, times: 2 };
        }
        return original(params);
      };
      const run = await paged.run({
        trigger: 'manual',
        from,
        to: new Date(Date.now() + 60_000).toISOString(),
        customerIds: [customer.id],
      });
      const failed = paged.stripe.requests.filter(
        (r) => r.path === '/v1/checkout/sessions' && r.status === 500,
      );
      // The page failed and a new attempt took over...
      expect(failed).toHaveLength(2);
      expect(cursors.length).toBeGreaterThanOrEqual(4);
      // ...resuming from a heartbeat cursor: the first page (no cursor) was asked for once.
      expect(cursors.filter((c) => c === null)).toHaveLength(1);
      expect(cursors[3]).not.toBeNull();
      expect(run.summary.listed.sessions).toBe(5);
      // 5 sessions + 5 intents + 5 credited payments agree with Stripe
      expect(run.summary.matched).toBe(15);
      expect(await paged.findings(run.runId)).toEqual([]);
    } finally {
      await paged.close();
    }
  });

  it('continues as new over a long window and still writes one report', async () => {
    const customer = await bench.customer();
    const runId = uniqueId('rec-long');
    const to = new Date();
    const from = new Date(to.getTime() - 3 * 24 * 60 * 60 * 1000);
    const run = await bench.run({
      runId,
      trigger: 'manual',
      from: from.toISOString(),
      to: to.toISOString(),
      customerIds: [customer.id],
    });
    expect(run.summary.chunks.total).toBeGreaterThan(CHUNKS_PER_RUN);
    expect(run.summary.continuedAsNew).toBe(1);
    const rows = await bench.db.sql<{ id: string; window_from: Date | string }[]>`
      select id, window_from from reconciliation_runs where id = ${runId}`;
    expect(rows).toHaveLength(1);
    expect(toDate(rows[0]!.window_from).toISOString()).toBe(from.toISOString());
    // The workflow id has two runs: the first continued as new.
    const handle = bench.temporal.workflow.getHandle(workflowIds.reconciliation(runId));
    const description = await handle.describe();
    expect(description.runId).not.toBe(description.raw.workflowExecutionInfo?.firstRunId);
  });
});
