// Workflow branches whose histories the replay tests keep, run end to end: an order that refunds
// an item it could not sell, an operator cancel, a rent answer that never arrived. Each run is
// checked, and its history is kept under test/histories when histories are being recorded
// (`npm run histories:record`). The checkout branches are kept by test/checkout.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TransferItemInput } from '../src/activities/marketplace.js';
import type { App } from '../src/api/app.js';
import type { OrderState } from '../src/shared.js';
import {
  createCustomer,
  customerToken,
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
/** Items the seller withdraws just before the order's transfer reaches them. */
const withdrawOnTransfer = new Map<string, string>();

beforeAll(async () => {
  h = await verificationHarness('history');
  const taskQueue = uniqueId('history-order');
  const worker = await startTestWorker(h.db, taskQueue, {
    marketplaceHooks: {
      beforeTransfer: async (input: TransferItemInput) => {
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
});

afterAll(async () => {
  await stopOrderWorker?.();
  await expectLedgerConsistent(h.db);
  await h.close();
});

async function funded(credits: number) {
  const customer = await createCustomer(h.db);
  if (credits > 0) await fund(h.ledger, customer.id, credits);
  return { ...customer, token: await customerToken(customer.id) };
}

describe('recorded branches', () => {
  it('order-refund: an item withdrawn before its transfer is refunded, the rest is sold', async () => {
    const buyer = await funded(1000);
    const items = [];
    for (const price of [300, 200]) {
      const seller = await funded(0);
      const res = await orderApp.request(
        '/v1/items',
        jsonRequest('POST', { title: `history item ${price}`, price }, seller.token),
      );
      expect(res.status).toBe(201);
      items.push({ id: ((await res.json()) as { id: string }).id, seller });
    }
    withdrawOnTransfer.set(items[1]!.id, items[1]!.seller.token);

    const res = await orderApp.request(
      '/v1/orders',
      jsonRequest('POST', { itemIds: items.map((i) => i.id) }, buyer.token),
    );
    expect(res.status).toBe(202);
    const { workflowId } = (await res.json()) as { workflowId: string };
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
});
