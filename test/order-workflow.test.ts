// The order workflow when the world changes under it: items withdrawn or sellers gone between
// the debit and the sale, and many buyers racing for the same few items.
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TransferItemInput } from '../src/activities/marketplace.js';
import type { App } from '../src/api/app.js';
import { orderIdFor } from '../src/api/orders/routes.js';
import type { Database } from '../src/db/client.js';
import { createLedger, type Ledger } from '../src/ledger/ledger.js';
import { workflowIds, type OrderState } from '../src/shared.js';
import {
  connectTestClient,
  createCustomer,
  customerToken,
  deliveredNotifications,
  eventually,
  expectLedgerConsistent,
  fund,
  jsonRequest,
  startTestWorker,
  testApp,
  testDatabase,
  uniqueId,
} from './helpers.js';

let db: Database;
let temporal: Client;
let app: App;
let ledger: Ledger;
let stopWorker: () => Promise<void>;

/** Transfers held until the test releases them (bounded, so a broken test cannot hang a run). */
const gates = new Map<string, Promise<void>>();
const GATE_LIMIT_MS = 15_000;

function hold(itemId: string): () => void {
  let release = () => {};
  gates.set(
    itemId,
    new Promise<void>((resolve) => {
      release = resolve;
      setTimeout(resolve, GATE_LIMIT_MS);
    }),
  );
  return () => release();
}

async function beforeTransfer(input: TransferItemInput): Promise<void> {
  await gates.get(input.item.itemId);
}

beforeAll(async () => {
  const taskQueue = uniqueId('order-workflow');
  db = testDatabase(30);
  ledger = createLedger(db.sql);
  temporal = await connectTestClient();
  const worker = await startTestWorker(db, taskQueue, { marketplaceHooks: { beforeTransfer } });
  stopWorker = worker.stop;
  app = testApp(db, temporal, taskQueue);
});

afterAll(async () => {
  await stopWorker?.();
  await expectLedgerConsistent(db);
  await temporal?.connection.close();
  await db?.close();
});

const auth = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

async function customerWith(credits: number) {
  const customer = await createCustomer(db);
  if (credits > 0) await fund(ledger, customer.id, credits);
  return { id: customer.id, token: await customerToken(customer.id) };
}

async function itemFor(price: number) {
  const seller = await customerWith(0);
  const res = await app.request(
    '/v1/items',
    jsonRequest('POST', { title: `item ${price}`, price }, seller.token),
  );
  expect(res.status).toBe(201);
  return { id: ((await res.json()) as { id: string }).id, price, seller };
}

async function outcome(id: string, token: string): Promise<OrderState> {
  return eventually(
    async () => {
      const res = await app.request(`/v1/orders/${id}`, auth(token));
      if (res.status !== 200) return undefined;
      const state = (await res.json()) as OrderState;
      return state.status === 'processing' ? undefined : state;
    },
    { timeoutMs: 40_000 },
  );
}

async function entriesOf(workflowId: string) {
  return db.sql<{ type: string; metadata: { itemId?: string } }[]>`
    select type, metadata from entries where workflow_id = ${workflowId} order by type, id`;
}

async function escrowLeft(workflowIdList: string[]) {
  const [row] = await db.sql<{ total: string | null }[]>`
    select sum(p.amount) as total from postings p
    join accounts a on a.id = p.account_id
    join entries e on e.id = p.entry_id
    where e.workflow_id = any(${workflowIdList}) and a.code = 'order_escrow'`;
  return Number(row?.total ?? 0);
}

async function debited(workflowId: string) {
  return eventually(async () => {
    const [row] = await db.sql`
      select id from entries where workflow_id = ${workflowId} and type = 'order_purchase'`;
    return row;
  });
}

describe('order workflow', () => {
  it('skips an item withdrawn while the order is processing and charges only for the rest', async () => {
    const buyer = await customerWith(5000);
    const first = await itemFor(1000);
    const second = await itemFor(1500);
    const release = hold(second.id);

    const res = await app.request(
      '/v1/orders',
      jsonRequest('POST', { itemIds: [first.id, second.id] }, buyer.token),
    );
    expect(res.status).toBe(202);
    const { id, workflowId } = (await res.json()) as { id: string; workflowId: string };

    // The whole cart has been paid for; now the seller takes the second item off sale.
    await debited(workflowId);
    const withdrawn = await app.request(
      `/v1/items/${second.id}/withdraw`,
      jsonRequest('POST', {}, second.seller.token),
    );
    expect(withdrawn.status).toBe(200);
    release();

    const state = await outcome(id, buyer.token);
    expect(state).toMatchObject({
      status: 'partially_completed',
      purchased: [first.id],
      failed: [{ itemId: second.id, reason: 'item_withdrawn' }],
      charged: 2500,
      refunded: 1500,
    });
    expect(await ledger.walletBalance(buyer.id)).toBe(4000);
    expect(await ledger.walletBalance(first.seller.id)).toBe(1000);
    expect(await ledger.walletBalance(second.seller.id)).toBe(0);
    const [secondRow] = await db.sql`select status, owner_id from items where id = ${second.id}`;
    expect(secondRow).toEqual({ status: 'withdrawn', owner_id: second.seller.id });
    expect((await entriesOf(workflowId)).map((e) => e.type)).toEqual([
      'order_purchase',
      'order_refund',
      'sale',
    ]);
    expect(await escrowLeft([workflowId])).toBe(0);
    // Everyone whose credits moved is told, once.
    const kinds = async (customerId: string) =>
      (await deliveredNotifications(db, customerId)).map((n) => `${n.kind}:${n.amount}`);
    expect(await kinds(buyer.id)).toEqual(['credits_deducted:2500', 'credits_refunded:1500']);
    expect(await kinds(first.seller.id)).toEqual(['credits_added:1000']);
    expect(await kinds(second.seller.id)).toEqual([]);
  });

  it('finishes the money phase when an operator cancels the workflow mid-order', async () => {
    const buyer = await customerWith(1000);
    const item = await itemFor(300);
    const release = hold(item.id);
    const res = await app.request(
      '/v1/orders',
      jsonRequest('POST', { itemIds: [item.id] }, buyer.token),
    );
    const { id, workflowId } = (await res.json()) as { id: string; workflowId: string };
    await debited(workflowId);
    // Cancelled from Temporal while the sale is held: the debit must not stay in escrow.
    await temporal.workflow.getHandle(workflowId).cancel();
    release();

    const state = await outcome(id, buyer.token);
    expect(state).toMatchObject({ status: 'completed', purchased: [item.id], charged: 300 });
    expect(await ledger.walletBalance(buyer.id)).toBe(700);
    expect(await ledger.walletBalance(item.seller.id)).toBe(300);
    expect(await escrowLeft([workflowId])).toBe(0);
  });

  it('skips an item whose seller is gone by the time it is sold', async () => {
    const buyer = await customerWith(500);
    const item = await itemFor(200);
    const release = hold(item.id);
    const res = await app.request(
      '/v1/orders',
      jsonRequest('POST', { itemIds: [item.id] }, buyer.token),
    );
    const { id, workflowId } = (await res.json()) as { id: string; workflowId: string };
    await debited(workflowId);
    await db.sql`update customers set anonymised_at = now() where id = ${item.seller.id}`;
    release();

    const state = await outcome(id, buyer.token);
    expect(state).toMatchObject({
      status: 'failed',
      purchased: [],
      failed: [{ itemId: item.id, reason: 'seller_unavailable' }],
      charged: 200,
      refunded: 200,
      error: { code: 'items_unavailable' },
    });
    expect(await ledger.walletBalance(buyer.id)).toBe(500);
    expect(await ledger.walletBalance(item.seller.id)).toBe(0);
    expect(await escrowLeft([workflowId])).toBe(0);
  });

  it('20 buyers racing for 5 items: each item sold once, every loser whole again', async () => {
    const START = 10_000;
    const items = await Promise.all([100, 200, 300, 400, 500].map((price) => itemFor(price)));
    const buyers = await Promise.all(Array.from({ length: 20 }, () => customerWith(START)));
    // Every buyer wants two items; every item is in eight carts.
    const carts = buyers.map((buyer, i) => ({
      buyer,
      key: uniqueId('race'),
      items: [items[i % 5]!, items[(i + 2) % 5]!],
    }));
    // Every cart is validated and paid for while the sales are held, so all eight buyers of an
    // item contend for it at the same moment, after their credits moved.
    const releases = items.map((item) => hold(item.id));

    const responses = await Promise.all(
      carts.map(async (cart) =>
        app.request(
          '/v1/orders',
          jsonRequest('POST', { itemIds: cart.items.map((item) => item.id) }, cart.buyer.token, {
            'idempotency-key': cart.key,
          }),
        ),
      ),
    );
    for (const res of responses) expect(res.status).toBe(202);
    await Promise.all(
      carts.map((cart) => debited(workflowIds.order(orderIdFor(cart.buyer.id, cart.key)))),
    );
    for (const release of releases) release();

    const states = await Promise.all(
      carts.map((cart) => outcome(orderIdFor(cart.buyer.id, cart.key), cart.buyer.token)),
    );

    // Each item changed hands exactly once, to a buyer whose order says so.
    const purchasedBy = new Map<string, string[]>();
    states.forEach((state, i) => {
      for (const itemId of state.purchased) {
        purchasedBy.set(itemId, [...(purchasedBy.get(itemId) ?? []), carts[i]!.buyer.id]);
      }
    });
    for (const item of items) {
      expect(purchasedBy.get(item.id)).toHaveLength(1);
      const [row] = await db.sql<{ status: string; owner_id: string }[]>`
        select status, owner_id from items where id = ${item.id}`;
      expect(row).toEqual({ status: 'sold', owner_id: purchasedBy.get(item.id)![0] });
      const [sales] = await db.sql<{ count: string }[]>`
        select count(*) from entries where type = 'sale' and metadata->>'itemId' = ${item.id}`;
      expect(Number(sales!.count)).toBe(1);
      expect(await ledger.walletBalance(item.seller.id)).toBe(item.price);
    }

    // Every buyer paid exactly for what they got; losers are whole again.
    const price = new Map(items.map((item) => [item.id, item.price]));
    for (const [i, state] of states.entries()) {
      const paid = state.purchased.reduce((sum, itemId) => sum + price.get(itemId)!, 0);
      expect(state.charged - state.refunded).toBe(paid);
      expect(await ledger.walletBalance(carts[i]!.buyer.id)).toBe(START - paid);
      expect(state.purchased.length + state.failed.length).toBe(2);
      expect(state.status).toBe(
        state.purchased.length === 2
          ? 'completed'
          : state.purchased.length === 1
            ? 'partially_completed'
            : 'failed',
      );
    }
    // Both sides of every item's race happened: one buyer got it, seven were charged and refunded.
    const losses = states.flatMap((state) => state.failed);
    expect(losses).toHaveLength(20 * 2 - items.length);
    expect(new Set(losses.map((loss) => loss.reason))).toEqual(new Set(['item_sold']));
    expect(states.reduce((total, state) => total + state.refunded, 0)).toBe(
      7 * items.reduce((total, item) => total + item.price, 0),
    );
    const workflowIdList = carts.map((cart) =>
      workflowIds.order(orderIdFor(cart.buyer.id, cart.key)),
    );
    expect(await escrowLeft(workflowIdList)).toBe(0);
  });
});
