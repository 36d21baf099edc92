// Goodwill purchase refunds (admins): a completed verification or a bought order item credited
// back, up to what was paid and never twice. Real Temporal and PostgreSQL, real purchase flows.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refundIdFor } from '../src/api/refunds/routes.js';
import type { RefundState } from '../src/shared.js';
import {
  adminToken,
  createCustomer,
  customerToken,
  deliveredNotifications,
  eventually,
  expectLedgerConsistent,
  fund,
  jsonRequest,
  uniqueId,
} from './helpers.js';
import { keepHistory } from './history-recorder.js';
import { verificationHarness, type VerificationHarness } from './verification-harness.js';

let h: VerificationHarness;
let admin: string;

beforeAll(async () => {
  h = await verificationHarness('refund-purchase', { price: 30 });
  admin = await adminToken();
});

afterAll(async () => {
  if (h) await expectLedgerConsistent(h.db);
  await h?.close();
});

function requestRefund(body: Record<string, unknown>, token = admin, key = uniqueId('refund')) {
  return h.app.request(
    '/v1/refunds',
    jsonRequest('POST', { reason: 'goodwill, ticket 7', ...body }, token, {
      'idempotency-key': key,
    }),
  );
}

async function outcome(res: Response): Promise<RefundState> {
  expect(res.status, await res.clone().text()).toBe(202);
  const { id } = (await res.json()) as { id: string };
  return eventually(
    async () => {
      const r = await h.app.request(`/v1/refunds/${id}`, {
        headers: { authorization: `Bearer ${admin}` },
      });
      const state = (await r.json()) as RefundState;
      return ['refunded', 'rejected', 'failed'].includes(state.status) ? state : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 100 },
  );
}

const errorCode = async (res: Response) =>
  ((await res.json()) as { error: { code: string } }).error.code;

/** A verification bought with credits that received its code. */
async function completedVerification() {
  const customer = await createCustomer(h.db);
  await fund(h.ledger, customer.id, 100);
  const res = await h.buy(customer.id);
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  await h.waitFor(customer.id, id, ['active']);
  expect((await h.deliverCode(id, '123456')).status).toBe(200);
  await h.waitFor(customer.id, id, ['completed']);
  expect(await h.ledger.walletBalance(customer.id)).toBe(70);
  return { customer, verificationId: id };
}

/** An order of two items (12 and 20 credits) that both changed hands. */
async function completedOrder() {
  const seller = await createCustomer(h.db);
  const buyer = await createCustomer(h.db);
  await fund(h.ledger, buyer.id, 100);
  const sellerToken = await customerToken(seller.id);
  const itemIds: string[] = [];
  for (const price of [12, 20]) {
    const res = await h.app.request(
      '/v1/items',
      jsonRequest('POST', { title: `thing for ${price}`, price }, sellerToken),
    );
    expect(res.status).toBe(201);
    itemIds.push(((await res.json()) as { id: string }).id);
  }
  const buyerToken = await customerToken(buyer.id);
  const res = await h.app.request('/v1/orders', jsonRequest('POST', { itemIds }, buyerToken));
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  const done = (await h.temporal.workflow.getHandle(`order-${id}`).result()) as { status: string };
  expect(done.status).toBe('completed');
  expect(await h.ledger.walletBalance(buyer.id)).toBe(68);
  return { buyer, seller, orderId: id, itemIds };
}

describe('goodwill refunds of purchases', () => {
  it('a completed verification: its price back, once; the cap holds in the database', async () => {
    const { customer, verificationId } = await completedVerification();
    const state = await outcome(await requestRefund({ verificationId }));
    expect(state).toMatchObject({
      kind: 'verification',
      status: 'refunded',
      credits: 30,
      amount: 0,
      verificationId,
    });
    expect(await h.ledger.walletBalance(customer.id)).toBe(100);
    await h.temporal.workflow.getHandle(state.workflowId).result();
    await keepHistory(h.temporal, 'refund-purchase-refunded', state.workflowId);
    const [v] = await h.db
      .sql`select goodwill_refunded from verifications where id = ${verificationId}`;
    expect(v).toEqual({ goodwill_refunded: '30' });
    const told = await deliveredNotifications(h.db, customer.id);
    expect(told.at(-1)).toMatchObject({ kind: 'credits_refunded', amount: '30' });

    // Never twice: another request (another key) is rejected, nothing moves.
    const again = await requestRefund({ verificationId, credits: 5 });
    expect(again.status).toBe(422);
    expect(await errorCode(again)).toBe('already_refunded');
    expect(await h.ledger.walletBalance(customer.id)).toBe(100);
    const entries = await h.db.sql`
      select id from entries where type = 'goodwill_refund' and metadata->>'verificationId' = ${verificationId}`;
    expect(entries).toHaveLength(1);
    await expect(
      h.db
        .sql`update verifications set goodwill_refunded = goodwill_refunded + 1 where id = ${verificationId}`,
    ).rejects.toThrow(/verifications_goodwill_refunded_check/);
  });

  it('a verification refunded automatically is rejected already_refunded', async () => {
    const customer = await createCustomer(h.db);
    await fund(h.ledger, customer.id, 100);
    const res = await h.buy(customer.id);
    const { id } = (await res.json()) as { id: string };
    await h.waitFor(customer.id, id, ['active']);
    expect((await h.cancel(customer.id, id)).status).toBe(200);
    const refused = await requestRefund({ verificationId: id });
    expect(refused.status).toBe(422);
    expect(await errorCode(refused)).toBe('already_refunded');
    // Refused before anything started: no refund recorded.
    expect(await h.db.sql`select id from refunds where verification_id = ${id}`).toEqual([]);

    // The workflow checks again on its own (a request that passed the API a moment earlier).
    const refundId = refundIdFor('admin-tests', uniqueId('direct'));
    const handle = await h.temporal.workflow.start('refund', {
      taskQueue: h.taskQueue,
      workflowId: `refund-${refundId}`,
      args: [
        {
          refundId,
          kind: 'verification',
          customerId: customer.id,
          verificationId: id,
          reason: 'goodwill',
          requestedBy: 'admin:admin-tests',
          startedBy: 'api',
        },
      ],
    });
    expect(await handle.result()).toMatchObject({
      status: 'rejected',
      error: { code: 'already_refunded' },
    });
    await keepHistory(h.temporal, 'refund-purchase-rejected', handle.workflowId);
    expect(await h.ledger.walletBalance(customer.id)).toBe(100);
  });

  it('one item of an order: its sale price back, never twice, never more than the order kept', async () => {
    const { buyer, seller, orderId, itemIds } = await completedOrder();
    const [cheap, dear] = itemIds as [string, string];
    const more = await requestRefund({ orderId, itemId: cheap, credits: 13 });
    expect(more.status).toBe(422);
    expect(await errorCode(more)).toBe('refund_exceeds_purchase');

    const state = await outcome(await requestRefund({ orderId, itemId: cheap }));
    expect(state).toMatchObject({
      kind: 'order',
      status: 'refunded',
      credits: 12,
      orderId,
      itemId: cheap,
    });
    expect(await h.ledger.walletBalance(buyer.id)).toBe(80);
    // The seller keeps what they were paid: goodwill comes from the refunds account.
    expect(await h.ledger.walletBalance(seller.id)).toBe(32);

    const twice = await requestRefund({ orderId, itemId: cheap, credits: 1 });
    expect(twice.status).toBe(422);
    expect(await errorCode(twice)).toBe('already_refunded');

    // The other item, in part; then the order as a whole can give back only what is left.
    const part = await outcome(await requestRefund({ orderId, itemId: dear, credits: 15 }));
    expect(part).toMatchObject({ status: 'refunded', credits: 15 });
    const tooMuch = await requestRefund({ orderId, credits: 6 });
    expect(tooMuch.status).toBe(422);
    expect(await errorCode(tooMuch)).toBe('refund_exceeds_purchase');
    const rest = await outcome(await requestRefund({ orderId }));
    expect(rest).toMatchObject({ status: 'refunded', credits: 5 });
    const [o] = await h.db.sql`select goodwill_refunded from orders where id = ${orderId}`;
    expect(o).toEqual({ goodwill_refunded: '32' });
    expect(await h.ledger.walletBalance(buyer.id)).toBe(100);
    await expect(
      h.db.sql`update orders set goodwill_refunded = goodwill_refunded + 1 where id = ${orderId}`,
    ).rejects.toThrow(/orders_goodwill_refunded_check/);
  });

  it('two refunds of one item racing: exactly one credits it', async () => {
    const { buyer, orderId, itemIds } = await completedOrder();
    const [one, two] = await Promise.all([
      requestRefund({ orderId, itemId: itemIds[1] }),
      requestRefund({ orderId, itemId: itemIds[1] }),
    ]);
    const statuses = [one.status, two.status].sort();
    const outcomes: string[] = [];
    for (const res of [one, two]) {
      if (res.status === 202) {
        const state = await outcome(res);
        outcomes.push(state.error?.code ?? state.status);
      } else outcomes.push(await errorCode(res));
    }
    expect(outcomes.sort()).toEqual(['already_refunded', 'refunded']);
    expect(statuses.length).toBe(2);
    expect(await h.ledger.walletBalance(buyer.id)).toBe(88);
  });

  it('customers cannot ask for purchase refunds; unknown targets are 404', async () => {
    const { customer, verificationId } = await completedVerification();
    const own = await requestRefund({ verificationId }, await customerToken(customer.id));
    expect(own.status).toBe(403);
    expect(await errorCode(own)).toBe('refund_not_allowed');
    const unknown = await requestRefund({ verificationId: `ver_${'a'.repeat(32)}` });
    expect(unknown.status).toBe(404);
    const both = await requestRefund({ verificationId, orderId: 'ord_x' });
    expect(both.status).toBe(400);
    const noReason = await h.app.request(
      '/v1/refunds',
      jsonRequest('POST', { verificationId }, admin, { 'idempotency-key': uniqueId('k') }),
    );
    expect(noReason.status).toBe(400);
    expect(await h.ledger.walletBalance(customer.id)).toBe(70);
  });
});
