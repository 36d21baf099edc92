// A forward attempt that outlives its timeout must never post after the workflow settled without
// it: the compensation (or final refusal) closes the step's fence, and the late attempt refuses.
import { ApplicationFailure } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import postgres from 'postgres';
import { randomUUID } from 'node:crypto';
import type { Activities } from '../src/activities/index.js';
import { workflowIds } from '../src/shared.js';
import { expectLedgerConsistent } from './helpers.js';
import { attempt, gate, signal, workflowBench, type WorkflowBench } from './workflow-bench.js';

/** A first attempt held back until the test lets it go, and what it finally answered. */
interface Stall {
  started: ReturnType<typeof signal<void>>;
  release: ReturnType<typeof gate>;
  finished: ReturnType<typeof signal<{ ok: boolean; error?: unknown }>>;
}
const stalls = new Map<string, Stall>();
/** Workflows whose first sale attempt finishes its work but never reports it (a worker crash). */
const answerLost = new Set<string>();

function stallFirstAttempt(workflowId: string): Stall {
  const stall = { started: signal(), release: gate(), finished: signal<{ ok: boolean }>() };
  stalls.set(workflowId, stall);
  return stall;
}

/** Runs `work`, holding its first attempt for a stalled workflow as a paused process would. */
async function stalled<T>(workflowId: string, work: () => Promise<T>): Promise<T> {
  const stall = stalls.get(workflowId);
  if (!stall || attempt() !== 1) return work();
  stall.started.fire();
  await stall.release.opened;
  try {
    const result = await work();
    stall.finished.fire({ ok: true });
    return result;
  } catch (error) {
    stall.finished.fire({ ok: false, error });
    throw error;
  }
}

let b: WorkflowBench;

beforeAll(async () => {
  b = await workflowBench('fences', {
    wrap: (real: Activities) => ({
      debitVerification: (input) =>
        stalled(input.workflowId, async () => {
          if (attempt() === 1 && answerLost.has(input.workflowId)) {
            await real.debitVerification(input).catch(() => undefined);
            throw new Error('the worker died before it reported the outcome');
          }
          return real.debitVerification(input);
        }),
      debitOrder: (input) => stalled(input.workflowId, () => real.debitOrder(input)),
      transferItem: (input) =>
        stalled(`${input.workflowId}:sale`, async () => {
          const outcome = await real.transferItem(input);
          if (attempt() === 1 && answerLost.has(input.workflowId)) {
            throw new Error('the worker died before it reported the outcome');
          }
          return outcome;
        }),
    }),
  });
});

afterAll(async () => {
  await expectLedgerConsistent(b.db);
  await b.close();
});

function expectStepClosed(outcome: { ok: boolean; error?: unknown }) {
  expect(outcome.ok).toBe(false);
  expect(outcome.error).toBeInstanceOf(ApplicationFailure);
  expect((outcome.error as ApplicationFailure).type).toBe('step_closed');
  expect((outcome.error as ApplicationFailure).nonRetryable).toBe(true);
}

async function fenceOf(key: string) {
  const [row] = await b.db.sql<{ closed_at: Date | null; closed_by: string | null }[]>`
    select closed_at, closed_by from step_fences where key = ${key}`;
  return row;
}

describe('a debit attempt that outlived its timeout', () => {
  it('verification: cancelled while the first debit attempt stalls; the late attempt cannot charge', async () => {
    const customer = await b.customerWith(100);
    const verificationId = randomUUID();
    const workflowId = workflowIds.verification(verificationId);
    const stall = stallFirstAttempt(workflowId);

    const handle = await b.startVerification(customer.id, { verificationId });
    await stall.started.fired;
    await handle.cancel();
    const run = await b.settled(handle);
    expect(run.ok).toBe(false);
    // The refund found no debit and closed the step.
    expect(await b.entryTypes(workflowId)).toEqual([]);
    expect((await fenceOf(`${workflowId}:debit`))?.closed_at).not.toBeNull();

    // Now the old attempt wakes up and tries to post the debit.
    stall.release.open();
    expectStepClosed(await stall.finished.fired);
    expect(await b.entryTypes(workflowId)).toEqual([]);
    expect(await b.ledger.walletBalance(customer.id)).toBe(100);
  });

  it('order: refused on retry while the first debit attempt stalls; the late attempt cannot charge', async () => {
    const buyer = await b.customerWith(1000);
    const item = await b.item(300);
    const orderId = randomUUID();
    const stall = stallFirstAttempt(workflowIds.order(orderId));
    const handle = await b.startOrder(buyer.id, [item.id], orderId);
    await stall.started.fired;
    // The buyer spends the credits meanwhile, so the retried debit is refused.
    await b.adjust(buyer.id, -1000);
    const run = await b.settled(handle);
    expect(run.ok).toBe(false);
    const failure = run.ok ? undefined : (run.error as Error).cause;
    expect((failure as ApplicationFailure).type).toBe('insufficient_credits');
    expect((await fenceOf(`${handle.workflowId}:debit`))?.closed_by).toBe(
      'refusal:insufficient_credits',
    );

    // The buyer tops up again; then the old attempt wakes up with enough credits to post: the
    // closed fence answers the refusal already given, and nothing is posted.
    await b.adjust(buyer.id, 1000);
    stall.release.open();
    const late = await stall.finished.fired;
    expect(late.ok).toBe(false);
    expect((late.error as ApplicationFailure).type).toBe('insufficient_credits');
    expect((late.error as ApplicationFailure).nonRetryable).toBe(true);
    expect(await b.entryTypes(handle.workflowId)).toEqual([]);
    expect(await b.ledger.walletBalance(buyer.id)).toBe(1000);
    const [row] = await b.db.sql<
      { status: string }[]
    >`select status from items where id = ${item.id}`;
    expect(row?.status).toBe('available');
  });

  it('verification: a debit refused by an attempt whose answer was lost is refused again with its reason', async () => {
    const customer = await b.customerWith(0);
    const verificationId = randomUUID();
    const workflowId = workflowIds.verification(verificationId);
    answerLost.add(workflowId);
    const handle = await b.startVerification(customer.id, { verificationId });
    const run = await b.settled(handle);
    // The first attempt was refused (no credits) and closed the step, then its answer was lost;
    // the retry meets the closed fence and answers the same refusal, not "step closed".
    expect(run.ok).toBe(false);
    const failure = run.ok ? undefined : (run.error as Error).cause;
    expect((failure as ApplicationFailure).type).toBe('insufficient_credits');
    expect((await fenceOf(`${workflowId}:debit`))?.closed_by).toBe('refusal:insufficient_credits');
    expect(await b.entryTypes(workflowId)).toEqual([]);
    const [row] = await b.db.sql<{ status: string; error: string }[]>`
      select status, error from verifications where id = ${verificationId}`;
    expect(row).toEqual({ status: 'failed', error: 'insufficient_credits' });
    expect(await b.ledger.walletBalance(customer.id)).toBe(0);
  });

  it('order: a sale attempt that outlived its timeout cannot pay the seller after the refund', async () => {
    const buyer = await b.customerWith(1000);
    const item = await b.item(300);
    const orderId = randomUUID();
    const workflowId = workflowIds.order(orderId);
    const stall = stallFirstAttempt(`${workflowId}:sale`);
    const handle = await b.startOrder(buyer.id, [item.id], orderId);
    await stall.started.fired;
    // The seller withdraws the item while the first attempt stalls: the retry skips it and the
    // order refunds its price from escrow.
    await b.db.sql`update items set status = 'withdrawn' where id = ${item.id}`;
    const run = await b.settled(handle);
    expect(run.ok).toBe(false);
    expect(await b.entryTypes(workflowId)).toEqual(['order_purchase', 'order_refund']);
    expect((await fenceOf(`${workflowId}:sale:${item.id}`))?.closed_by).toBe(
      'refusal:item_withdrawn',
    );

    // The seller lists it again; then the old attempt wakes up and tries to sell it: the closed
    // fence answers the refusal already given, and nothing is posted.
    await b.db.sql`update items set status = 'available' where id = ${item.id}`;
    stall.release.open();
    expect(await stall.finished.fired).toEqual({ ok: true });
    expect(await b.entryTypes(workflowId)).toEqual(['order_purchase', 'order_refund']);
    expect(await b.ledger.walletBalance(buyer.id)).toBe(1000);
    expect(await b.ledger.walletBalance(item.sellerId)).toBe(0);
    const [row] = await b.db.sql<{ status: string; owner_id: string }[]>`
      select status, owner_id from items where id = ${item.id}`;
    expect(row).toEqual({ status: 'available', owner_id: item.sellerId });
  });
  it('order: a sale refused by an attempt whose answer was lost is refused again, and refunded', async () => {
    const buyer = await b.customerWith(1000);
    const item = await b.item(300);
    const orderId = randomUUID();
    const workflowId = workflowIds.order(orderId);
    const stall = stallFirstAttempt(`${workflowId}:sale`);
    answerLost.add(workflowId);
    const handle = await b.startOrder(buyer.id, [item.id], orderId);
    await stall.started.fired;
    // Withdrawn while the first sale attempt runs: it is refused and closes the sale's fence,
    // then its worker dies before telling the workflow; the retry meets the closed fence.
    await b.db.sql`update items set status = 'withdrawn' where id = ${item.id}`;
    stall.release.open();
    expect((await stall.finished.fired).ok).toBe(false);
    expect((await fenceOf(`${workflowId}:sale:${item.id}`))?.closed_by).toBe(
      'refusal:item_withdrawn',
    );
    const run = await b.settled(handle);
    expect(run.ok).toBe(false);
    // The order ends as a refused item, refunded from escrow, not as a failed workflow.
    expect(await b.entryTypes(workflowId)).toEqual(['order_purchase', 'order_refund']);
    expect(await b.ledger.walletBalance(buyer.id)).toBe(1000);
    const [order] = await b.db.sql<{ status: string; failed: unknown }[]>`
      select status, failed from orders where id = ${orderId}`;
    expect(order).toEqual({
      status: 'failed',
      failed: [{ itemId: item.id, reason: 'item_withdrawn' }],
    });
  });

  it('order: a sale the database refuses outright is refunded, not left in escrow', async () => {
    const buyer = await b.customerWith(1000);
    const kept = await b.item(200);
    const refused = await b.item(300);
    // A constraint the sale's data breaks on every try (as an operator's new check would):
    // a permanent database error inside the sale's transaction, for this one item.
    const fn = `refuse_sale_${refused.id.replace(/-/g, '')}`;
    const owner = postgres(inject('ownerDatabaseUrl'), { max: 1, onnotice: () => {} });
    await owner.unsafe(`
      create function ${fn}() returns trigger language plpgsql as $$
      begin
        raise exception 'sale refused for this test' using errcode = '23514';
      end $$;
      create trigger ${fn} before update on items for each row
        when (new.id = '${refused.id}' and new.status = 'sold') execute function ${fn}();`);
    try {
      const orderId = randomUUID();
      const workflowId = workflowIds.order(orderId);
      const handle = await b.startOrder(buyer.id, [kept.id, refused.id], orderId);
      const run = await b.settled(handle);
      expect(run.ok).toBe(true);
      expect(await b.entryTypes(workflowId)).toEqual(['order_purchase', 'sale', 'order_refund']);
      expect(await b.ledger.walletBalance(buyer.id)).toBe(800);
      expect(await b.ledger.walletBalance(kept.sellerId)).toBe(200);
      expect(await b.ledger.walletBalance(refused.sellerId)).toBe(0);
      expect((await fenceOf(`${workflowId}:sale:${refused.id}`))?.closed_by).toBe(
        'refusal:transfer_failed',
      );
      const [order] = await b.db.sql<{ status: string; failed: unknown; refunded: number }[]>`
        select status, failed, refunded::int as refunded from orders where id = ${orderId}`;
      expect(order).toEqual({
        status: 'partially_completed',
        failed: [{ itemId: refused.id, reason: 'transfer_failed' }],
        refunded: 300,
      });
      const [item] = await b.db.sql<{ status: string }[]>`
        select status from items where id = ${refused.id}`;
      expect(item?.status).toBe('available');
    } finally {
      await owner.unsafe(`drop trigger ${fn} on items; drop function ${fn}();`);
      await owner.end();
    }
  });
});
