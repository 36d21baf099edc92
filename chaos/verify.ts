// The end of a scenario: wait (bounded) until every workflow the load started has closed, then
// check the outcome against exact expectations computed from what the driver did.
import type { Client } from '@temporalio/client';
import type postgres from 'postgres';
import { checkLedger } from '../src/ledger/check.js';
import { pool } from '../src/stack/load.js';
import type { LoadRecord } from './load.js';

export interface Outcome {
  /** Workflows the load started (known by id and found in Temporal). */
  started: number;
  finished: number;
  /** Still running at the deadline (the load's own, plus any other started during the scenario). */
  stuck: number;
  /** Paid top-ups credited exactly once. */
  credited: number;
  /** Refunds booked exactly once: timed-out and cancelled verifications, goodwill, top-ups. */
  refunded: number;
  /**
   * Verifications refunded because the provider step ran out of its time (`provider_failed`)
   * before the driver's code, cancel or timeout could decide them; each refunded once.
   */
  providerGaveUp: number;
  /** Extra deliveries of Stripe events (beyond one per event) that credited nothing more. */
  duplicatesPrevented: number;
  checkerOk: boolean;
  /** What did not match, naming the ids. */
  failures: string[];
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A list in a message: the first few ids and how many more. */
const some = (ids: string[]) =>
  ids.length <= 5 ? ids.join(', ') : `${ids.slice(0, 5).join(', ')} and ${ids.length - 5} more`;

/** Every workflow id the load started, with what kind of flow it belongs to. */
export function loadWorkflowIds(load: LoadRecord): string[] {
  return [
    ...load.topups.flatMap((t) => [t.workflowId, ...(t.refund ? [t.refund.workflowId] : [])]),
    ...load.verifications.flatMap((v) => [
      v.workflowId,
      ...(v.goodwill ? [v.goodwill.workflowId] : []),
    ]),
    ...load.items.flatMap((i) => i.orders.map((o) => o.workflowId)),
    ...(load.hot?.debits.map((d) => d.workflowId) ?? []),
  ];
}

/**
 * Waits until each workflow is closed or the deadline passes; describes them through Temporal
 * (a restarting server just makes a round fail). Returns the ids still running and those
 * Temporal never heard of.
 */
export async function waitForClosure(
  temporal: Client,
  ids: string[],
  timeoutMs: number,
): Promise<{ running: string[]; missing: string[] }> {
  const deadline = Date.now() + timeoutMs;
  let pending = [...ids];
  for (;;) {
    const still: string[] = [];
    const notFound: string[] = [];
    await pool(pending, 16, async (id) => {
      try {
        const description = await temporal.workflow.getHandle(id).describe();
        if (description.status.name === 'RUNNING') still.push(id);
      } catch (err) {
        if ((err as Error).name === 'WorkflowNotFoundError') notFound.push(id);
        else still.push(id);
      }
    });
    pending = [...still, ...notFound];
    if (pending.length === 0 || Date.now() > deadline) {
      return { running: still, missing: notFound };
    }
    await pause(1_000);
  }
}

/** Workflows started since `since` that are still running (any the load did not know of too). */
async function runningSince(temporal: Client, since: Date, known: Set<string>) {
  const stray: string[] = [];
  const query = `ExecutionStatus = "Running" AND StartTime >= "${since.toISOString()}"`;
  for await (const execution of temporal.workflow.list({ query })) {
    if (known.has(execution.workflowId)) continue;
    // The reconciliation schedules run on their own clock; they are not the load's.
    if (execution.workflowId.startsWith('reconciliation-')) continue;
    stray.push(execution.workflowId);
  }
  return stray;
}

const countBy = (rows: Array<{ key: string; n: number }>) => new Map(rows.map((r) => [r.key, r.n]));

/** Checks one scenario's outcome; `since` is when its load began. */
export async function verifyLoad(
  sql: postgres.Sql,
  temporal: Client,
  load: LoadRecord,
  options: { since: Date; closeTimeoutMs: number; stripeDeliveries: number },
): Promise<Outcome> {
  const failures: string[] = load.errors.map((e) => `load: ${e}`);
  const fail = (what: string, ids: string[]) => {
    if (ids.length > 0) failures.push(`${what} (${ids.length}): ${some(ids)}`);
  };

  // 1. Every started workflow finished.
  const ids = loadWorkflowIds(load);
  const { running, missing } = await waitForClosure(temporal, ids, options.closeTimeoutMs);
  fail('never started (no workflow in Temporal)', missing);
  fail('still running at the deadline', running);
  const stray = await runningSince(temporal, options.since, new Set(ids)).catch((err: unknown) => {
    failures.push(`listing running workflows: ${(err as Error).message}`);
    return [];
  });
  fail('other workflows still running', stray);
  const started = ids.length - missing.length;
  const finished = started - running.length;

  const expected = new Map(load.funded);
  const add = (customerId: string, credits: number) =>
    expected.set(customerId, (expected.get(customerId) ?? 0) + credits);

  // 2. Every paid top-up credited once; every refunded one refunded once.
  const paymentIds = load.topups.map((t) => t.paymentId);
  const payments = await sql<{ id: string; status: string; credits: string }[]>`
    select id, status, credits from payments where id = any(${paymentIds})`;
  const paymentById = new Map(payments.map((p) => [p.id, p]));
  const topupEntries = countBy(
    await sql<{ key: string; n: number }[]>`
      select workflow_id as key, count(*)::int as n from entries
      where type = 'topup' and workflow_id = any(${load.topups.map((t) => t.workflowId)})
      group by 1`,
  );
  const refundWorkflows = [
    ...load.topups.flatMap((t) => (t.refund ? [t.refund.workflowId] : [])),
    ...load.verifications.flatMap((v) => (v.goodwill ? [v.goodwill.workflowId] : [])),
  ];
  const refundEntries = countBy(
    await sql<{ key: string; n: number }[]>`
      select workflow_id as key, count(*)::int as n from entries
      where type in ('refund_clawback', 'goodwill_refund') and workflow_id = any(${refundWorkflows})
      group by 1`,
  );
  const refundRows = new Map(
    (
      await sql<{ workflow_id: string; status: string }[]>`
        select workflow_id, status from refunds where workflow_id = any(${refundWorkflows})`
    ).map((r) => [r.workflow_id, r.status]),
  );
  let credited = 0;
  let refunded = 0;
  const notCreditedOnce: string[] = [];
  const wrongPaymentStatus: string[] = [];
  const notRefundedOnce: string[] = [];
  /** A refund workflow booked exactly one entry and ended `refunded`. */
  const expectRefundedOnce = (workflowId: string) => {
    const n = refundEntries.get(workflowId) ?? 0;
    const status = refundRows.get(workflowId);
    if (n !== 1 || status !== 'refunded') {
      notRefundedOnce.push(`${workflowId} (${n} entries, ${status ?? 'no row'})`);
    } else refunded++;
  };
  for (const topup of load.topups) {
    const payment = paymentById.get(topup.paymentId);
    const entries = topupEntries.get(topup.workflowId) ?? 0;
    if (!payment || entries !== 1) {
      notCreditedOnce.push(`${topup.paymentId} (${entries} credits)`);
      continue;
    }
    credited++;
    const want = topup.refund ? 'refunded' : 'credited';
    if (payment.status !== want) wrongPaymentStatus.push(`${topup.paymentId} ${payment.status}`);
    if (topup.refund) {
      expectRefundedOnce(topup.refund.workflowId);
    } else {
      add(topup.customerId, Number(payment.credits));
    }
  }
  fail('paid top-ups not credited exactly once', notCreditedOnce);
  fail('top-ups in the wrong status', wrongPaymentStatus);

  // 3. Verifications: completed ones kept, timed-out and cancelled ones refunded once.
  const verificationIds = load.verifications.map((v) => v.id);
  const rows = new Map(
    (
      await sql<{ id: string; status: string; refund_reason: string | null }[]>`
        select id, status, refund_reason from verifications where id = any(${verificationIds})`
    ).map((r) => [r.id, r]),
  );
  const verificationRefunds = countBy(
    await sql<{ key: string; n: number }[]>`
      select workflow_id as key, count(*)::int as n from entries
      where type = 'verification_refund'
        and workflow_id = any(${load.verifications.map((v) => v.workflowId)})
      group by 1`,
  );
  const wrongVerification: string[] = [];
  let providerGaveUp = 0;
  for (const v of load.verifications) {
    const row = rows.get(v.id);
    const refunds = verificationRefunds.get(v.workflowId) ?? 0;
    // The provider step ran out of its time under the faults: refunded once, nothing charged, and
    // no goodwill refund was asked (the driver saw it refunded before it became active).
    if (
      row?.status === 'refunded' &&
      row.refund_reason === 'provider_failed' &&
      refunds === 1 &&
      !v.goodwill
    ) {
      providerGaveUp++;
      refunded++;
      continue;
    }
    const want =
      v.outcome === 'complete'
        ? { status: 'completed', reason: null, refunds: 0 }
        : {
            status: 'refunded',
            reason: v.outcome === 'timeout' ? 'timeout' : 'cancelled',
            refunds: 1,
          };
    if (
      !row ||
      row.status !== want.status ||
      row.refund_reason !== want.reason ||
      refunds !== want.refunds
    ) {
      wrongVerification.push(
        `${v.id} wanted ${v.outcome}: ${row?.status ?? 'no row'}/${row?.refund_reason ?? '-'}, ${refunds} refunds`,
      );
      continue;
    }
    if (want.refunds === 1) refunded++;
    if (v.goodwill) {
      expectRefundedOnce(v.goodwill.workflowId);
    } else if (v.outcome === 'complete') {
      add(v.customerId, -load.price);
    }
  }
  fail('verifications with the wrong outcome', wrongVerification);
  fail('refunds not booked exactly once', notRefundedOnce);

  // 4. Each contested item sold exactly once, to one of the buyers who wanted it.
  const itemIds = load.items.map((i) => i.itemId);
  const itemRows = new Map(
    (
      await sql<{ id: string; status: string; owner_id: string }[]>`
        select id, status, owner_id from items where id = any(${itemIds})`
    ).map((r) => [r.id, r]),
  );
  const sales = countBy(
    await sql<{ key: string; n: number }[]>`
      select metadata->>'itemId' as key, count(*)::int as n from entries
      where type = 'sale' and metadata->>'itemId' = any(${itemIds})
      group by 1`,
  );
  const orderRows = new Map(
    (
      await sql<
        { id: string; status: string; purchased: string[]; charged: string; refunded: string }[]
      >`
        select id, status, purchased, charged, refunded from orders
        where id = any(${load.items.flatMap((i) => i.orders.map((o) => o.orderId))})`
    ).map((r) => [r.id, r]),
  );
  const badItems: string[] = [];
  for (const item of load.items) {
    const row = itemRows.get(item.itemId);
    const winners = item.orders.filter((o) =>
      (orderRows.get(o.orderId)?.purchased ?? []).includes(item.itemId),
    );
    const soldTo = row?.owner_id;
    if (
      row?.status !== 'sold' ||
      (sales.get(item.itemId) ?? 0) !== 1 ||
      winners.length !== 1 ||
      winners[0]!.buyerId !== soldTo
    ) {
      badItems.push(
        `${item.itemId} ${row?.status ?? 'no row'}, ${sales.get(item.itemId) ?? 0} sales, ${winners.length} winning orders`,
      );
      continue;
    }
    add(soldTo, -item.price);
    add(item.sellerId, item.price);
    for (const order of item.orders) {
      const o = orderRows.get(order.orderId);
      if (!o) {
        badItems.push(`order ${order.orderId} recorded no outcome`);
        continue;
      }
      const net = Number(o.charged) - Number(o.refunded);
      const want = order.buyerId === soldTo ? item.price : 0;
      if (net !== want) badItems.push(`order ${order.orderId} kept ${net}, wanted ${want}`);
    }
  }
  fail('contested items not sold exactly once', badItems);

  // 5. The hot wallet: exactly the debits it covers succeeded.
  if (load.hot) {
    const hot = load.hot;
    const hotRows = await sql<{ status: string; error: string | null; n: number }[]>`
      select status, error, count(*)::int as n from verifications
      where id = any(${hot.debits.map((d) => d.id)}) group by 1, 2`;
    const completed = hotRows.find((r) => r.status === 'completed')?.n ?? 0;
    const refused =
      hotRows.find((r) => r.status === 'failed' && r.error === 'insufficient_credits')?.n ?? 0;
    const covered = hot.funded / load.price;
    if (completed !== covered || refused !== hot.debits.length - covered) {
      failures.push(
        `hot wallet ${hot.customerId}: ${completed} debits succeeded and ${refused} were refused ` +
          `(${JSON.stringify(hotRows)}); wanted ${covered} and ${hot.debits.length - covered}`,
      );
    }
    add(hot.customerId, -completed * load.price);
  }

  // 6. Every balance what the flows say it must be.
  const customers = [...expected.keys()];
  const balances = new Map(
    (
      await sql<{ customer_id: string; balance: string }[]>`
        select customer_id, balance from accounts
        where kind = 'wallet' and customer_id = any(${customers})`
    ).map((r) => [r.customer_id, Number(r.balance)]),
  );
  fail(
    'balances that differ from what the flows add up to',
    customers
      .filter((id) => balances.get(id) !== expected.get(id))
      .map((id) => `${id} has ${balances.get(id)} not ${expected.get(id)}`),
  );

  // 7. The ledger's own invariants, over the whole ledger.
  const report = await checkLedger(sql);
  if (!report.ok) {
    failures.push(
      `ledger checker: ${report.violations
        .slice(0, 5)
        .map((v) => JSON.stringify(v))
        .join('; ')}`,
    );
  }

  const duplicateFree = notCreditedOnce.length === 0;
  return {
    started,
    finished,
    stuck: running.length + stray.length,
    credited,
    refunded,
    providerGaveUp,
    duplicatesPrevented: duplicateFree ? options.stripeDeliveries - load.stripeEvents : 0,
    checkerOk: report.ok,
    failures,
  };
}
