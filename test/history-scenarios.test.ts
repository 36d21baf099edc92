// Workflow branches whose histories the replay tests keep, run end to end: orders that refund
// items they could not sell, operator cancels, a rent answer that never arrived, a session Stripe
// refused. Each run is checked, and its history is kept under test/histories when histories are
// being recorded (`npm run histories:record`). test/checkout.test.ts keeps the other checkout
// branches.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TransferItemInput } from '../src/activities/marketplace.js';
import type { App } from '../src/api/app.js';
import type { CheckoutState, OrderState } from '../src/shared.js';
import {
  startCheckoutBench,
  type CheckoutBench,
  type CheckoutStarted,
} from './checkout-harness.js';
import {
  createCustomer,
  customerToken,
  eventually,
  expectLedgerConsistent,
  fund,
  jsonRequest,
  startTestWorker,
  testApp,
  uniqueId,
} from './helpers.js';
import { keepHistory } from './history-recorder.js';
import { verificationHarness, type VerificationHarness } from './verification-harness.js';

let h: VerificationHarness;
let orderApp: App;
let stopOrderWorker: () => Promise<void>;
let checkouts: CheckoutBench;
/** Items the seller withdraws just before the order's transfer reaches them. */
const withdrawOnTransfer = new Map<string, string>();
/** Transfers held until the test lets them go. */
const heldTransfers = new Map<string, Promise<void>>();

beforeAll(async () => {
  h = await verificationHarness('history');
  const taskQueue = uniqueId('history-order');
  const worker = await startTestWorker(h.db, taskQueue, {
    marketplaceHooks: {
      beforeTransfer: async (input: TransferItemInput) => {
        await heldTransfers.get(input.item.itemId);
        const sellerToken = withdrawOnTransfer.get(input.item.itemId);
        if (!sellerToken) return;
        const res = await orderApp.request(
          `/v1/items/${input.item.itemId}/withdraw`,
          jsonRequest('POST', {}, sellerToken),
        );
        if (res.status !== 200) throw new Error(`withdraw answered ${res.status}`);
      },
    },
  });
  stopOrderWorker = worker.stop;
  orderApp = testApp(h.db, h.temporal, taskQueue);
  checkouts = await startCheckoutBench('history-checkout');
});

afterAll(async () => {
  await checkouts?.close();
  await stopOrderWorker?.();
  await expectLedgerConsistent(h.db);
  await h.close();
});

async function funded(credits: number) {
  const customer = await createCustomer(h.db);
  if (credits > 0) await fund(h.ledger, customer.id, credits);
  return { ...customer, token: await customerToken(customer.id) };
}

async function listItem(price: number) {
  const seller = await funded(0);
  const res = await orderApp.request(
    '/v1/items',
    jsonRequest('POST', { title: `history item ${price}`, price }, seller.token),
  );
  expect(res.status).toBe(201);
  return { id: ((await res.json()) as { id: string }).id, seller };
}

async function placeOrder(token: string, itemIds: string[]) {
  const res = await orderApp.request('/v1/orders', jsonRequest('POST', { itemIds }, token));
  expect(res.status).toBe(202);
  return (await res.json()) as { id: string; workflowId: string };
}

describe('recorded branches', () => {
  it('order-refund: an item withdrawn before its transfer is refunded, the rest is sold', async () => {
    const buyer = await funded(1000);
    const items = [await listItem(300), await listItem(200)];
    withdrawOnTransfer.set(items[1]!.id, items[1]!.seller.token);
    const { workflowId } = await placeOrder(
      buyer.token,
      items.map((i) => i.id),
    );
    const state = (await h.temporal.workflow.getHandle(workflowId).result()) as OrderState;
    expect(state).toMatchObject({
      status: 'partially_completed',
      purchased: [items[0]!.id],
      failed: [{ itemId: items[1]!.id, reason: 'item_withdrawn' }],
      charged: 500,
      refunded: 200,
    });
    expect(await h.ledger.walletBalance(buyer.id)).toBe(700);
    await keepHistory(h.temporal, 'order-refund', workflowId);
  });

  it('verification-operator-cancel: cancelled from Temporal while waiting for the code, refunded', async () => {
    const customer = await funded(100);
    const res = await h.buy(customer.id, { timeoutSeconds: 120 });
    expect(res.status).toBe(202);
    const { id, workflowId } = (await res.json()) as { id: string; workflowId: string };
    await h.waitFor(customer.id, id, ['active']);

    const handle = h.temporal.workflow.getHandle(workflowId);
    await handle.cancel();
    await expect(handle.result()).rejects.toThrow();
    expect((await handle.describe()).status.name).toBe('CANCELLED');
    const final = await h.waitFor(customer.id, id, ['refunded']);
    expect(final.refundReason).toBe('cancelled');
    expect(await h.entryTypes(id)).toEqual(['verification_purchase', 'verification_refund']);
    expect(await h.ledger.walletBalance(customer.id)).toBe(100);
    await keepHistory(h.temporal, 'verification-operator-cancel', workflowId);
  });

  it('verification-rent-answer-lost: refunded, and the number released by reference', async () => {
    const customer = await funded(100);
    const res = await h.buy(customer.id, { service: h.lostService });
    expect(res.status).toBe(202);
    const { id, workflowId } = (await res.json()) as { id: string; workflowId: string };
    await h.temporal.workflow.getHandle(workflowId).result();
    const final = await h.waitFor(customer.id, id, ['refunded']);
    expect(final.refundReason).toBe('provider_failed');
    expect(await h.ledger.walletBalance(customer.id)).toBe(100);
    expect(h.sms.released.has(`sim_${id}`)).toBe(true);
    await keepHistory(h.temporal, 'verification-rent-answer-lost', workflowId);
  });

  it('order-nothing-sold-after-debit: the only item is gone at its transfer, refunded, failed', async () => {
    const buyer = await funded(1000);
    const item = await listItem(400);
    withdrawOnTransfer.set(item.id, item.seller.token);
    const { workflowId } = await placeOrder(buyer.token, [item.id]);
    const handle = h.temporal.workflow.getHandle(workflowId);
    await expect(handle.result()).rejects.toMatchObject({
      cause: { type: 'items_unavailable' },
    });
    expect(await h.ledger.walletBalance(buyer.id)).toBe(1000);
    const types = await h.db.sql<{ type: string }[]>`
      select type from entries where workflow_id = ${workflowId} order by id`;
    expect(types.map((t) => t.type)).toEqual(['order_purchase', 'order_refund']);
    await keepHistory(h.temporal, 'order-nothing-sold-after-debit', workflowId);
  });

  it('order-operator-cancel: cancelled from Temporal after the debit, the sale still completes', async () => {
    const buyer = await funded(1000);
    const item = await listItem(300);
    let release = () => {};
    heldTransfers.set(item.id, new Promise<void>((resolve) => (release = resolve)));
    const { workflowId } = await placeOrder(buyer.token, [item.id]);
    await eventually(async () => {
      const [row] = await h.db.sql`
        select id from entries where workflow_id = ${workflowId} and type = 'order_purchase'`;
      return row;
    });
    const handle = h.temporal.workflow.getHandle(workflowId);
    await handle.cancel();
    release();
    const state = (await handle.result()) as OrderState;
    expect(state).toMatchObject({ status: 'completed', purchased: [item.id], charged: 300 });
    expect(await h.ledger.walletBalance(buyer.id)).toBe(700);
    expect(await h.ledger.walletBalance(item.seller.id)).toBe(300);
    await keepHistory(h.temporal, 'order-operator-cancel', workflowId);
  });

  it('checkout-session-refused: Stripe refuses the session, the payment fails, nothing credited', async () => {
    const customer = await checkouts.customer();
    checkouts.stripe.failNext = {
      path: /^\/v1\/checkout\/sessions$/,
      times: 1,
      status: 400,
      type: 'invalid_request_error',
    };
    const res = await checkouts.buy(customer.token, 'small');
    checkouts.stripe.failNext = undefined;
    const [payment] = await checkouts.db.sql<{ id: string; workflow_id: string }[]>`
      select id, workflow_id from payments where customer_id = ${customer.id}`;
    expect(res.status, await res.text()).toBeLessThan(500);
    const state = (await checkouts.temporal.workflow
      .getHandle(payment!.workflow_id)
      .result()) as CheckoutState;
    expect(state).toMatchObject({ status: 'failed', error: { code: 'stripe_request_refused' } });
    expect(await checkouts.ledger.walletBalance(customer.id)).toBe(0);
    await keepHistory(checkouts.temporal, 'checkout-session-refused', payment!.workflow_id);
  });

  it('checkout-operator-cancel: cancelled from Temporal while waiting for Stripe, nothing credited', async () => {
    const customer = await checkouts.customer();
    const res = await checkouts.buy(customer.token, 'small');
    expect(res.status).toBe(202);
    const started = (await res.json()) as CheckoutStarted;
    const handle = checkouts.temporal.workflow.getHandle(started.workflowId);
    await handle.cancel();
    await handle.result().catch(() => undefined);
    expect((await handle.describe()).status.name).not.toBe('RUNNING');
    expect(await checkouts.ledger.walletBalance(customer.id)).toBe(0);
    await keepHistory(checkouts.temporal, 'checkout-operator-cancel', started.workflowId);
  });
});
