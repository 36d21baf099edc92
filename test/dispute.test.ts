// Disputes end to end: charge.dispute.* → the dispute workflow holds the disputed credits, then
// releases them (won) or writes them off (lost), exactly once under duplicated and reordered
// events and a worker replaced mid-flow; the customer and the operator see it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Activities } from '../src/activities/index.js';
import { runLedgerChecks, type Violation } from '../src/ledger/check.js';
import { refundStateQuery, workflowIds } from '../src/shared.js';
import { creditedTopup, startCheckoutBench, type CheckoutBench } from './checkout-harness.js';
import {
  adminToken,
  deliveredNotifications,
  eventually,
  startTestWorker,
  uniqueId,
} from './helpers.js';
import { keepHistory } from './history-recorder.js';
import { stripeEvent, type RecordedDispute } from './stripe.js';

let bench: CheckoutBench;
/** No worker of its own: tests start and stop workers on its queue. */
let bare: CheckoutBench;
/** Its hold step fails once right after it committed, as if the worker died then. */
let crashing: CheckoutBench;
const crashed = new Set<string>();

beforeAll(async () => {
  [bench, bare, crashing] = await Promise.all([
    startCheckoutBench('dispute'),
    startCheckoutBench('dispute-swap', { worker: false }),
    startCheckoutBench('dispute-crash', {
      wrap: (real) => ({
        holdDisputedCredits: (async (input) => {
          const result = await real.holdDisputedCredits(input);
          if (!crashed.has(input.report.disputeId)) {
            crashed.add(input.report.disputeId);
            throw new Error('worker lost after the commit');
          }
          return result;
        }) satisfies Activities['holdDisputedCredits'],
      }),
    }),
  ]);
});

afterAll(async () => {
  await Promise.all([bench?.close(), bare?.close(), crashing?.close()]);
});

const disputeEvent = (on: CheckoutBench, type: string, dispute: RecordedDispute) =>
  stripeEvent(`charge.dispute.${type}`, on.stripe.disputeObject(dispute));

async function accepted(on: CheckoutBench, event: unknown) {
  const res = await on.deliver(event);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as { status: string; duplicate?: boolean };
}

async function disputeRow(on: CheckoutBench, id: string) {
  const [row] = await on.db.sql<
    { status: string; credits: string; held_credits: string; payment_id: string }[]
  >`select status, credits, held_credits, payment_id from disputes where id = ${id}`;
  return row
    ? {
        status: row.status,
        credits: Number(row.credits),
        held: Number(row.held_credits),
      }
    : undefined;
}

const disputeIs = (on: CheckoutBench, id: string, status: string) =>
  eventually(async () => {
    const row = await disputeRow(on, id);
    return row?.status === status ? row : undefined;
  });

/** The dispute's entries by type, with their credits. */
async function entries(on: CheckoutBench, disputeId: string) {
  const rows = await on.db.sql<{ type: string; key: string }[]>`
    select type, idempotency_key as key from entries
    where metadata->>'disputeId' = ${disputeId} order by id`;
  return rows.map((r) => `${r.type} ${r.key}`);
}

async function paymentStatus(on: CheckoutBench, paymentId: string) {
  const [row] = await on.db.sql<{ status: string; status_before_dispute: string | null }[]>`
    select status, status_before_dispute from payments where id = ${paymentId}`;
  return row;
}

describe('a dispute opened by the customer’s bank', () => {
  it('holds the credits while open and gives them back when the dispute is won', async () => {
    const { customer, paymentId } = await creditedTopup(bench);
    const dispute = bench.stripe.openDispute(paymentId);
    expect(await accepted(bench, disputeEvent(bench, 'created', dispute))).toMatchObject({
      status: 'completed',
    });
    await eventually(async () =>
      (await disputeRow(bench, dispute.id))?.held === 100 ? true : undefined,
    );
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
    expect(await paymentStatus(bench, paymentId)).toEqual({
      status: 'disputed',
      status_before_dispute: 'credited',
    });
    expect((await bench.read(customer.token, paymentId)).status).toBe('disputed');
    const [alert] = await bench.db.sql`
      select kind, status from alerts where key = ${`dispute_opened:${dispute.id}`}`;
    expect(alert).toEqual({ kind: 'dispute_opened', status: 'open' });

    // The customer and the operator see it.
    const mine = await bench.app.request('/v1/disputes', {
      headers: { authorization: `Bearer ${customer.token}` },
    });
    expect(mine.status).toBe(200);
    expect(await mine.json()).toMatchObject({
      items: [
        {
          id: dispute.id,
          paymentId,
          status: 'open',
          credits: 100,
          heldCredits: 100,
          amount: 500,
          currency: 'eur',
          reason: 'fraudulent',
          workflowId: workflowIds.dispute(dispute.id),
        },
      ],
    });
    const admin = await adminToken();
    const forOperator = await bench.app.request(
      `/v1/disputes?customerId=${customer.id}&status=open`,
      { headers: { authorization: `Bearer ${admin}` } },
    );
    expect(((await forOperator.json()) as { items: unknown[] }).items).toHaveLength(1);

    bench.stripe.closeDispute(dispute.id, 'won');
    await accepted(bench, disputeEvent(bench, 'closed', dispute));
    await disputeIs(bench, dispute.id, 'won');
    expect(await bench.ledger.walletBalance(customer.id)).toBe(100);
    expect(await paymentStatus(bench, paymentId)).toEqual({
      status: 'credited',
      status_before_dispute: null,
    });
    expect((await bench.read(customer.token, paymentId)).status).toBe('credited');
    expect(await entries(bench, dispute.id)).toEqual([
      `dispute_hold dispute:${dispute.id}:hold`,
      `dispute_release dispute:${dispute.id}:close`,
    ]);
    const one = await bench.app.request(`/v1/disputes/${dispute.id}`, {
      headers: { authorization: `Bearer ${customer.token}` },
    });
    expect(await one.json()).toMatchObject({ status: 'won', closedAt: expect.any(String) });
    const result = await bench.temporal.workflow
      .getHandle(workflowIds.dispute(dispute.id))
      .result();
    expect(result).toMatchObject({ kind: 'dispute', status: 'rejected', credits: 100 });
    await keepHistory(bench.temporal, 'dispute-won', workflowIds.dispute(dispute.id));
    const told = await deliveredNotifications(bench.db, customer.id);
    expect(told.map((n) => n.title)).toEqual(
      expect.arrayContaining(['Credits held for a dispute', 'Dispute closed: credits released']),
    );
  });

  it('writes the held credits off to chargebacks when the dispute is lost', async () => {
    const { customer, paymentId } = await creditedTopup(bench);
    const dispute = bench.stripe.openDispute(paymentId);
    await accepted(bench, disputeEvent(bench, 'created', dispute));
    await eventually(async () =>
      (await disputeRow(bench, dispute.id))?.held === 100 ? true : undefined,
    );
    bench.stripe.closeDispute(dispute.id, 'lost');
    await accepted(bench, disputeEvent(bench, 'closed', dispute));
    await disputeIs(bench, dispute.id, 'lost');
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
    expect((await paymentStatus(bench, paymentId))?.status).toBe('chargeback');
    expect((await bench.read(customer.token, paymentId)).status).toBe('chargeback');
    const lines = await bench.db.sql<{ code: string; amount: string }[]>`
      select a.code, p.amount from postings p
      join entries e on e.id = p.entry_id join accounts a on a.id = p.account_id
      where e.idempotency_key = ${`dispute:${dispute.id}:close`} order by a.code`;
    expect(lines).toEqual([
      { code: 'chargebacks', amount: '100' },
      { code: 'disputes_held', amount: '-100' },
    ]);
    const result = await bench.temporal.workflow
      .getHandle(workflowIds.dispute(dispute.id))
      .result();
    expect(result).toMatchObject({ status: 'refunded', credits: 100 });
    await keepHistory(bench.temporal, 'dispute-lost', workflowIds.dispute(dispute.id));
  });

  it('holds only what the wallet still has, and releases exactly that', async () => {
    const { customer, paymentId } = await creditedTopup(bench);
    await bench.ledger.postEntry({
      idempotencyKey: uniqueId('spend'),
      type: 'test_debit',
      description: 'spent before the dispute',
      lines: [
        { account: { wallet: customer.id }, amount: -60 },
        { account: { system: 'revenue' }, amount: 60 },
      ],
    });
    const dispute = bench.stripe.openDispute(paymentId);
    await accepted(bench, disputeEvent(bench, 'created', dispute));
    await eventually(async () =>
      (await disputeRow(bench, dispute.id))?.held === 40 ? true : undefined,
    );
    expect(await disputeRow(bench, dispute.id)).toEqual({ status: 'open', credits: 100, held: 40 });
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
    bench.stripe.closeDispute(dispute.id, 'won');
    await accepted(bench, disputeEvent(bench, 'closed', dispute));
    await disputeIs(bench, dispute.id, 'won');
    expect(await bench.ledger.walletBalance(customer.id)).toBe(40);
  });

  it('handles a close that arrives before the opening: hold and resolve once, the late opening changes nothing', async () => {
    const { customer, paymentId } = await creditedTopup(bench);
    const dispute = bench.stripe.openDispute(paymentId);
    const created = disputeEvent(bench, 'created', dispute);
    bench.stripe.closeDispute(dispute.id, 'lost');
    await accepted(bench, disputeEvent(bench, 'closed', dispute));
    await disputeIs(bench, dispute.id, 'lost');
    const handle = bench.temporal.workflow.getHandle(workflowIds.dispute(dispute.id));
    const { runId } = await handle.describe();
    await handle.result();
    await keepHistory(bench.temporal, 'dispute-closed-first', handle.workflowId, runId);
    await accepted(bench, created);
    // The late opening runs a new workflow run, which finds the dispute closed and ends.
    await eventually(async () => {
      const handle = bench.temporal.workflow.getHandle(workflowIds.dispute(dispute.id));
      const description = await handle.describe();
      return description.status.name === 'COMPLETED' &&
        (
          await bench.db
            .sql`select 1 from stripe_events where id = ${created.id} and status = 'completed'`
        ).length === 1
        ? true
        : undefined;
    });
    await bench.temporal.workflow.getHandle(workflowIds.dispute(dispute.id)).result();
    await keepHistory(bench.temporal, 'dispute-already-closed', handle.workflowId);
    expect(await entries(bench, dispute.id)).toEqual([
      `dispute_hold dispute:${dispute.id}:hold`,
      `dispute_chargeback dispute:${dispute.id}:close`,
    ]);
    expect(await disputeRow(bench, dispute.id)).toEqual({
      status: 'lost',
      credits: 100,
      held: 100,
    });
    expect(await bench.ledger.walletBalance(customer.id)).toBe(0);
    expect((await paymentStatus(bench, paymentId))?.status).toBe('chargeback');
  });

  it('counts duplicated and repeated events once', async () => {
    const { customer, paymentId } = await creditedTopup(bench);
    const dispute = bench.stripe.openDispute(paymentId);
    const created = disputeEvent(bench, 'created', dispute);
    await accepted(bench, created);
    expect(await accepted(bench, created)).toMatchObject({ duplicate: true });
    await accepted(
      bench,
      stripeEvent(
        'charge.dispute.updated',
        bench.stripe.disputeObject(dispute, { status: 'under_review' }),
      ),
    );
    bench.stripe.closeDispute(dispute.id, 'won');
    const closed = disputeEvent(bench, 'closed', dispute);
    await Promise.all([accepted(bench, closed), accepted(bench, closed)]);
    // Stripe may also send the close under a second event id.
    await accepted(bench, disputeEvent(bench, 'closed', dispute));
    await disputeIs(bench, dispute.id, 'won');
    await eventually(async () => {
      const rows = await bench.db.sql`
        select 1 from stripe_events
        where payment_id = ${paymentId} and type like 'charge.dispute.%' and status = 'completed'`;
      return rows.length === 4 ? true : undefined;
    });
    await bench.temporal.workflow.getHandle(workflowIds.dispute(dispute.id)).result();
    expect(await entries(bench, dispute.id)).toEqual([
      `dispute_hold dispute:${dispute.id}:hold`,
      `dispute_release dispute:${dispute.id}:close`,
    ]);
    expect(await bench.ledger.walletBalance(customer.id)).toBe(100);
  });
});

describe('a worker that dies in the middle of a dispute', () => {
  it('a new worker picks the dispute up and it still holds and releases exactly once', async () => {
    let worker = await startTestWorker(bare.db, bare.taskQueue, { stripe: bare.stripe.gateway });
    const { customer, paymentId } = await creditedTopup(bare);
    const dispute = bare.stripe.openDispute(paymentId);
    await accepted(bare, disputeEvent(bare, 'created', dispute));
    await eventually(async () =>
      (await disputeRow(bare, dispute.id))?.held === 100 ? true : undefined,
    );
    await worker.stop();

    // The close arrives while no worker runs; a new one takes the workflow over.
    bare.stripe.closeDispute(dispute.id, 'won');
    await accepted(bare, disputeEvent(bare, 'closed', dispute));
    worker = await startTestWorker(bare.db, bare.taskQueue, { stripe: bare.stripe.gateway });
    try {
      await disputeIs(bare, dispute.id, 'won');
      const state = await bare.temporal.workflow
        .getHandle(workflowIds.dispute(dispute.id))
        .query(refundStateQuery)
        .catch(() => undefined);
      if (state) expect(state.kind).toBe('dispute');
      expect(await bare.ledger.walletBalance(customer.id)).toBe(100);
      expect(await entries(bare, dispute.id)).toEqual([
        `dispute_hold dispute:${dispute.id}:hold`,
        `dispute_release dispute:${dispute.id}:close`,
      ]);
    } finally {
      await worker.stop();
    }
  });

  it('a hold that committed before the worker died is not made twice', async () => {
    const { customer, paymentId } = await creditedTopup(crashing);
    const dispute = crashing.stripe.openDispute(paymentId, 250); // half: 50 credits
    await accepted(crashing, disputeEvent(crashing, 'created', dispute));
    crashing.stripe.closeDispute(dispute.id, 'lost');
    await accepted(crashing, disputeEvent(crashing, 'closed', dispute));
    await disputeIs(crashing, dispute.id, 'lost');
    expect(crashed.has(dispute.id)).toBe(true);
    expect(await disputeRow(crashing, dispute.id)).toEqual({
      status: 'lost',
      credits: 50,
      held: 50,
    });
    expect(await entries(crashing, dispute.id)).toEqual([
      `dispute_hold dispute:${dispute.id}:hold`,
      `dispute_chargeback dispute:${dispute.id}:close`,
    ]);
    expect(await crashing.ledger.walletBalance(customer.id)).toBe(50);
  });
});

describe('the ledger checker', () => {
  it('reports disputes_held that the open disputes do not account for', async () => {
    const { customer, paymentId } = await creditedTopup(bench);
    const rollback = new Error('rollback');
    let found: Violation[] = [];
    await expect(
      bench.db.sql.begin(async (tx) => {
        // An open dispute claiming credits that disputes_held never received.
        await tx`
          insert into disputes (id, workflow_id, payment_id, customer_id, amount, currency,
                                credits, held_credits, status)
          values (${`dp_corrupt_${uniqueId('x').replace(/-/g, '')}`}, 'refund-dispute-x',
                  ${paymentId}, ${customer.id}, 500, 'eur', 100, 7, 'open')`;
        found = (await runLedgerChecks(tx)).violations;
        throw rollback;
      }),
    ).rejects.toBe(rollback);
    expect(found.map((v) => v.invariant)).toContain('disputes_held_mismatch');
    expect(found.find((v) => v.invariant === 'disputes_held_mismatch')!.detail).toMatch(
      /open disputes hold \d+/,
    );
  });
});
