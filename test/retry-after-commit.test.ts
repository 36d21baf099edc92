// Each compensation (and the checkout credit) commits, then its attempt is lost before it can
// answer, as when a worker dies between the commit and the completion. The retry must find the
// first commit by its key: exactly one entry, and the balance it implies.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Activities } from '../src/activities/index.js';
import { workflowIds, type CheckoutState, type OrderState } from '../src/shared.js';
import {
  startCheckoutBench,
  type CheckoutBench,
  type CheckoutStarted,
} from './checkout-harness.js';
import { eventually, expectLedgerConsistent } from './helpers.js';
import { sessionObject, stripeEvent } from './stripe.js';
import {
  attempt,
  expectEveryActivityHeartbeats,
  workflowBench,
  type WorkflowBench,
} from './workflow-bench.js';

/** Workflows whose named step loses its first attempt right after the commit. */
const lostAfterCommit = new Map<string, Set<string>>();
/** Items withdrawn just before their transfer, so the order refunds them. */
const withdrawBeforeTransfer = new Set<string>();
/** How many attempts each (workflow, step) took. */
const attempts = new Map<string, number>();

function loseFirstAttempt(workflowId: string, step: keyof Activities) {
  const steps = lostAfterCommit.get(workflowId) ?? new Set<string>();
  steps.add(step);
  lostAfterCommit.set(workflowId, steps);
}

/** Commits through the real activity; on a marked first attempt, then fails as a lost worker would. */
async function commitThenLose<T>(workflowId: string, step: string, work: () => Promise<T>) {
  const counted = `${workflowId}/${step}`;
  attempts.set(counted, (attempts.get(counted) ?? 0) + 1);
  const result = await work();
  if (attempt() === 1 && lostAfterCommit.get(workflowId)?.has(step)) {
    throw new Error(`worker lost after ${step} committed`);
  }
  return result;
}

let b: WorkflowBench;
let checkout: CheckoutBench;

beforeAll(async () => {
  [b, checkout] = await Promise.all([
    workflowBench('after-commit', {
      wrap: (real: Activities) => ({
        refundVerification: (input) =>
          commitThenLose(input.workflowId, 'refundVerification', () =>
            real.refundVerification(input),
          ),
        refundOrder: (input) =>
          commitThenLose(input.workflowId, 'refundOrder', () => real.refundOrder(input)),
        transferItem: async (input) => {
          if (withdrawBeforeTransfer.has(input.item.itemId)) {
            await b.db.sql`update items set status = 'withdrawn' where id = ${input.item.itemId}`;
          }
          return real.transferItem(input);
        },
      }),
    }),
    startCheckoutBench('after-commit-checkout', {
      wrap: (real: Activities) => ({
        creditTopup: (input) =>
          commitThenLose(input.workflowId, 'creditTopup', () => real.creditTopup(input)),
      }),
    }),
  ]);
});

afterAll(async () => {
  await expectLedgerConsistent(b.db);
  await Promise.all([b.close(), checkout.close()]);
});

describe('a compensation whose attempt is lost after its commit', () => {
  it('verification refund: one refund entry, the price back once', async () => {
    const customer = await b.customerWith(100);
    const verificationId = randomUUID();
    const workflowId = workflowIds.verification(verificationId);
    loseFirstAttempt(workflowId, 'refundVerification');
    const handle = await b.startVerification(customer.id, { verificationId, timeoutSeconds: 1 });
    const run = await b.settled(handle);
    expect(run.ok).toBe(true);

    expect(attempts.get(`${workflowId}/refundVerification`)).toBe(2);
    expect(await b.entryTypes(workflowId)).toEqual([
      'verification_purchase',
      'verification_refund',
    ]);
    expect(await b.ledger.walletBalance(customer.id)).toBe(100);
    expect((await b.verification(verificationId))?.status).toBe('refunded');
    await expectEveryActivityHeartbeats(handle);
  });

  it('order refund of the items that could not be sold: one refund entry, escrow empty', async () => {
    const buyer = await b.customerWith(1000);
    const sold = await b.item(300);
    const withdrawn = await b.item(200);
    withdrawBeforeTransfer.add(withdrawn.id);
    const orderId = randomUUID();
    const workflowId = workflowIds.order(orderId);
    loseFirstAttempt(workflowId, 'refundOrder');
    const handle = await b.startOrder(buyer.id, [sold.id, withdrawn.id], orderId);
    const run = await b.settled(handle);
    expect(run.ok).toBe(true);
    expect((run.ok ? (run.value as OrderState) : undefined)?.status).toBe('partially_completed');

    expect(attempts.get(`${workflowId}/refundOrder`)).toBe(2);
    expect((await b.entryTypes(workflowId)).sort()).toEqual([
      'order_purchase',
      'order_refund',
      'sale',
    ]);
    expect(await b.ledger.walletBalance(buyer.id)).toBe(700);
    expect(await b.ledger.walletBalance(sold.sellerId)).toBe(300);
    const [escrow] = await b.db.sql<{ total: string | null }[]>`
      select sum(p.amount) as total from postings p
      join accounts a on a.id = p.account_id join entries e on e.id = p.entry_id
      where e.workflow_id = ${workflowId} and a.code = 'order_escrow'`;
    expect(Number(escrow?.total ?? 0)).toBe(0);
    await expectEveryActivityHeartbeats(handle);
  });

  it('checkout credit: one top-up entry, the pack credited once', async () => {
    const customer = await checkout.customer();
    const res = await checkout.buy(customer.token, 'small');
    expect(res.status).toBe(202);
    const started = (await res.json()) as CheckoutStarted;
    loseFirstAttempt(started.workflowId, 'creditTopup');
    const session = checkout.stripe.session(started.id);
    const delivered = await checkout.deliver(
      stripeEvent('checkout.session.completed', sessionObject(session, { payment_status: 'paid' })),
    );
    expect(delivered.status).toBe(200);
    const state = (await checkout.temporal.workflow
      .getHandle(started.workflowId)
      .result()) as CheckoutState;
    expect(state.status).toBe('credited');

    expect(attempts.get(`${started.workflowId}/creditTopup`)).toBe(2);
    const topups = await eventually(async () => {
      const rows = await checkout.db.sql`
        select id from entries where type = 'topup' and metadata->>'paymentId' = ${started.id}`;
      return rows.length > 0 ? rows : undefined;
    });
    expect(topups).toHaveLength(1);
    expect(await checkout.ledger.walletBalance(customer.id)).toBe(state.credits);
    await expectEveryActivityHeartbeats(checkout.temporal.workflow.getHandle(started.workflowId));
  });
});
