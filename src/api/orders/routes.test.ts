// Orders end to end: HTTP API → Temporal → worker → ledger and items, with a real worker.
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminToken,
  connectTestClient,
  createCustomer,
  customerToken,
  eventually,
  expectLedgerConsistent,
  fund,
  jsonRequest,
  startTestWorker,
  testApp,
  testDatabase,
  uniqueId,
} from '../../../test/helpers.js';
import type { Database } from '../../db/client.js';
import { createLedger, type Ledger } from '../../ledger/ledger.js';
import { searchAttributes, workflowIds, type OrderState } from '../../shared.js';
import type { App } from '../app.js';
import { orderIdFor } from './routes.js';

let db: Database;
let temporal: Client;
let app: App;
let ledger: Ledger;
let worker: Awaited<ReturnType<typeof startTestWorker>>;

beforeAll(async () => {
  const taskQueue = uniqueId('orders');
  db = testDatabase();
  ledger = createLedger(db.sql);
  temporal = await connectTestClient();
  worker = await startTestWorker(db, taskQueue);
  app = testApp(db, temporal, taskQueue);
});

afterAll(async () => {
  await worker?.stop();
  await expectLedgerConsistent(db);
  await temporal?.connection.close();
  await db?.close();
});

interface Started {
  id: string;
  workflowId: string;
  status: string;
}

interface ErrorBody {
  error: { code: string; message: string };
}

const auth = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

/** A customer with a wallet holding `credits`, and their token. */
async function customerWith(credits: number) {
  const customer = await createCustomer(db);
  if (credits > 0) await fund(ledger, customer.id, credits);
  return { id: customer.id, token: await customerToken(customer.id) };
}

/** A fresh seller listing one item at `price`, through the API. */
async function itemFor(price: number, seller?: { id: string; token: string }) {
  const owner = seller ?? (await customerWith(0));
  const res = await app.request(
    '/v1/items',
    jsonRequest('POST', { title: `item ${price}`, price }, owner.token),
  );
  expect(res.status).toBe(201);
  const item = (await res.json()) as { id: string };
  return { id: item.id, price, seller: owner };
}

async function postOrder(token: string, body: unknown, key?: string) {
  return app.request(
    '/v1/orders',
    jsonRequest('POST', body, token, key === undefined ? {} : { 'idempotency-key': key }),
  );
}

async function outcome(id: string, token: string): Promise<OrderState> {
  return eventually(async () => {
    const res = await app.request(`/v1/orders/${id}`, auth(token));
    const state = (await res.json()) as OrderState;
    return state.status === 'processing' ? undefined : state;
  });
}

async function itemRow(id: string) {
  const [row] = await db.sql<{ status: string; owner_id: string; sold_in_order: string | null }[]>`
    select status, owner_id, sold_in_order from items where id = ${id}`;
  return row!;
}

async function entryTypes(workflowId: string) {
  const rows = await db.sql<{ type: string }[]>`
    select type from entries where workflow_id = ${workflowId} order by type`;
  return rows.map((r) => r.type);
}

/** What the order left in escrow: zero once every debit is matched by sales and a refund. */
async function escrowLeft(workflowId: string) {
  const [row] = await db.sql<{ total: string | null }[]>`
    select sum(p.amount) as total from postings p
    join accounts a on a.id = p.account_id
    join entries e on e.id = p.entry_id
    where e.workflow_id = ${workflowId} and a.code = 'order_escrow'`;
  return Number(row?.total ?? 0);
}

describe('POST /v1/orders', () => {
  it('buys one item: 5000 − 2000 leaves 3000, the item is the buyer’s, the seller got 2000', async () => {
    const buyer = await customerWith(5000);
    const item = await itemFor(2000);
    const res = await postOrder(buyer.token, { itemIds: [item.id] });
    expect(res.status).toBe(202);
    const started = (await res.json()) as Started;
    expect(started.workflowId).toBe(`order-${started.id}`);

    const state = await outcome(started.id, buyer.token);
    expect(state).toMatchObject({
      id: started.id,
      buyerId: buyer.id,
      status: 'completed',
      purchased: [item.id],
      failed: [],
      charged: 2000,
      refunded: 0,
      error: null,
    });
    expect(typeof state.createdAt).toBe('string');
    expect(await ledger.walletBalance(buyer.id)).toBe(3000);
    expect(await ledger.walletBalance(item.seller.id)).toBe(2000);
    expect(await itemRow(item.id)).toEqual({
      status: 'sold',
      owner_id: buyer.id,
      sold_in_order: started.id,
    });
    expect(await entryTypes(started.workflowId)).toEqual(['order_purchase', 'sale']);
    expect(await escrowLeft(started.workflowId)).toBe(0);

    // The query can answer `completed` a moment before the workflow records it and closes.
    await temporal.workflow.getHandle(started.workflowId).result();
    const description = await temporal.workflow.getHandle(started.workflowId).describe();
    expect(description.typedSearchAttributes.get(searchAttributes.customerId)).toBe(buyer.id);
    expect(description.typedSearchAttributes.get(searchAttributes.flowStatus)).toBe('completed');

    const itemRes = await app.request(`/v1/items/${item.id}`, auth(buyer.token));
    expect(await itemRes.json()).toMatchObject({ status: 'sold', ownerId: buyer.id });
  });

  it('buys two items of 2000 with 5000: 1000 left, both items the buyer’s', async () => {
    const buyer = await customerWith(5000);
    const a = await itemFor(2000);
    const b = await itemFor(2000);
    const res = await postOrder(buyer.token, { itemIds: [a.id, b.id] });
    expect(res.status).toBe(202);
    const started = (await res.json()) as Started;
    const state = await outcome(started.id, buyer.token);
    expect(state).toMatchObject({
      status: 'completed',
      purchased: [a.id, b.id],
      charged: 4000,
      refunded: 0,
    });
    expect(await ledger.walletBalance(buyer.id)).toBe(1000);
    expect((await itemRow(a.id)).owner_id).toBe(buyer.id);
    expect((await itemRow(b.id)).owner_id).toBe(buyer.id);
    expect(await ledger.walletBalance(a.seller.id)).toBe(2000);
    expect(await ledger.walletBalance(b.seller.id)).toBe(2000);
    expect(await entryTypes(started.workflowId)).toEqual(['order_purchase', 'sale', 'sale']);
  });

  it('refuses an item of 3000 with 2000 credits: 422 insufficient_credits, no money moves, the failed order is kept as the record', async () => {
    const buyer = await customerWith(2000);
    const item = await itemFor(3000);
    const key = uniqueId('short');
    const res = await postOrder(buyer.token, { itemIds: [item.id] }, key);
    expect(res.status).toBe(422);
    const body = (await res.json()) as ErrorBody;
    expect(body.error.code).toBe('insufficient_credits');
    expect(body.error.message).toMatch(/short by 1000/);

    expect(await ledger.walletBalance(buyer.id)).toBe(2000);
    expect(await itemRow(item.id)).toMatchObject({ status: 'available', owner_id: item.seller.id });
    const id = orderIdFor(buyer.id, key);
    expect(await entryTypes(workflowIds.order(id))).toEqual([]);

    const state = (await (
      await app.request(`/v1/orders/${id}`, auth(buyer.token))
    ).json()) as OrderState;
    expect(state).toMatchObject({
      status: 'failed',
      purchased: [],
      charged: 0,
      refunded: 0,
      error: { code: 'insufficient_credits' },
    });
    expect(state.error?.message).toMatch(
      /costs 3000 credits, the wallet holds 2000 \(short by 1000\)/,
    );
    const description = await eventually(async () => {
      const d = await temporal.workflow.getHandle(workflowIds.order(id)).describe();
      return d.status.name === 'RUNNING' ? undefined : d;
    });
    expect(description.status.name).toBe('FAILED');
    expect(description.typedSearchAttributes.get(searchAttributes.flowStatus)).toBe('failed');

    // A retry with the same key gives the same answer and still writes nothing.
    const again = await postOrder(buyer.token, { itemIds: [item.id] }, key);
    expect(again.status).toBe(422);
    expect(await ledger.walletBalance(buyer.id)).toBe(2000);
  });

  it('reports unknown, own and withdrawn items and buys the rest', async () => {
    const buyer = await customerWith(1000);
    const good = await itemFor(300);
    const own = await itemFor(50, buyer);
    const withdrawn = await itemFor(70);
    await app.request(
      `/v1/items/${withdrawn.id}/withdraw`,
      jsonRequest('POST', {}, withdrawn.seller.token),
    );
    const unknown = randomUUID();
    const res = await postOrder(buyer.token, {
      itemIds: [unknown, good.id, own.id, withdrawn.id],
    });
    expect(res.status).toBe(202);
    const started = (await res.json()) as Started;
    const state = await outcome(started.id, buyer.token);
    expect(state).toMatchObject({
      status: 'partially_completed',
      purchased: [good.id],
      failed: [
        { itemId: unknown, reason: 'item_not_found' },
        { itemId: own.id, reason: 'own_item' },
        { itemId: withdrawn.id, reason: 'item_withdrawn' },
      ],
      charged: 300,
      refunded: 0,
    });
    expect(await ledger.walletBalance(buyer.id)).toBe(700);
    expect((await itemRow(own.id)).status).toBe('available');
  });

  it('answers 422 items_unavailable when nothing in the cart can be bought', async () => {
    const buyer = await customerWith(1000);
    const res = await postOrder(buyer.token, { itemIds: [randomUUID(), randomUUID()] });
    expect(res.status).toBe(422);
    const body = (await res.json()) as ErrorBody;
    expect(body.error.code).toBe('items_unavailable');
    expect(body.error.message).toMatch(/item_not_found/);
    expect(await ledger.walletBalance(buyer.id)).toBe(1000);
  });

  it('returns the same order for a retried Idempotency-Key and charges once', async () => {
    const buyer = await customerWith(1000);
    const item = await itemFor(400);
    const key = uniqueId('retry');
    const responses = await Promise.all(
      Array.from({ length: 4 }, () => postOrder(buyer.token, { itemIds: [item.id] }, key)),
    );
    const ids = new Set<string>();
    for (const res of responses) {
      expect(res.status).toBe(202);
      ids.add(((await res.json()) as Started).id);
    }
    expect([...ids]).toEqual([orderIdFor(buyer.id, key)]);
    const [id] = [...ids];
    expect((await outcome(id!, buyer.token)).status).toBe('completed');

    const late = await postOrder(buyer.token, { itemIds: [item.id] }, key);
    expect(late.status).toBe(202);
    expect(await late.json()).toMatchObject({ id, status: 'completed' });
    expect(await entryTypes(workflowIds.order(id!))).toEqual(['order_purchase', 'sale']);
    expect(await ledger.walletBalance(buyer.id)).toBe(600);

    const other = await itemFor(10);
    const conflict = await postOrder(buyer.token, { itemIds: [other.id] }, key);
    expect(conflict.status).toBe(409);
    expect(await conflict.json()).toMatchObject({ error: { code: 'idempotency_conflict' } });
  });

  it('starts a new order for every POST without an Idempotency-Key', async () => {
    const buyer = await customerWith(100);
    const a = await itemFor(10);
    const b = await itemFor(20);
    const first = (await (await postOrder(buyer.token, { itemIds: [a.id] })).json()) as Started;
    const second = (await (await postOrder(buyer.token, { itemIds: [b.id] })).json()) as Started;
    expect(first.id).not.toBe(second.id);
    expect((await outcome(first.id, buyer.token)).status).toBe('completed');
    expect((await outcome(second.id, buyer.token)).status).toBe('completed');
    expect(await ledger.walletBalance(buyer.id)).toBe(70);
  });

  const id = () => randomUUID();
  const sameId = id();
  it.each([
    ['malformed JSON', '{"itemIds": ['],
    ['a missing itemIds', {}],
    ['an empty cart', { itemIds: [] }],
    ['51 items', { itemIds: Array.from({ length: 51 }, id) }],
    ['the same item twice', { itemIds: [sameId, sameId.toUpperCase()] }],
    ['an id that is not a UUID', { itemIds: ['item-1'] }],
    ['itemIds as a string', { itemIds: sameId }],
    ['an unknown field', { itemIds: [sameId], total: 5 }],
  ])('answers 400 for %s and starts nothing', async (_label, body) => {
    const buyer = await customerWith(0);
    const key = uniqueId('bad');
    const res = await postOrder(buyer.token, body, key);
    expect(res.status).toBe(400);
    const json = (await res.json()) as ErrorBody;
    expect(json.error.code).toMatch(/^(invalid_request|malformed_json)$/);
    await expect(
      temporal.workflow.getHandle(workflowIds.order(orderIdFor(buyer.id, key))).describe(),
    ).rejects.toBeInstanceOf(WorkflowNotFoundError);
  });

  it('answers 403 for an admin token', async () => {
    const res = await postOrder(await adminToken(), { itemIds: [randomUUID()] });
    expect(res.status).toBe(403);
  });
});

describe('GET /v1/orders/:id', () => {
  it('shows an order to its buyer and admins, not to other customers', async () => {
    const buyer = await customerWith(100);
    const item = await itemFor(25);
    const started = (await (
      await postOrder(buyer.token, { itemIds: [item.id] })
    ).json()) as Started;
    await outcome(started.id, buyer.token);

    const other = await customerWith(0);
    const asOther = await app.request(`/v1/orders/${started.id}`, auth(other.token));
    expect(asOther.status).toBe(403);
    const asAdmin = await app.request(`/v1/orders/${started.id}`, auth(await adminToken()));
    expect(asAdmin.status).toBe(200);
    expect(await asAdmin.json()).toMatchObject({ id: started.id, status: 'completed' });
  });

  it('answers 404 for an unknown order and 400 for a malformed id', async () => {
    const token = await adminToken();
    const unknown = await app.request('/v1/orders/ord_unknown', auth(token));
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: 'order_not_found' } });
    expect((await app.request('/v1/orders/bad%20id', auth(token))).status).toBe(400);
  });
});
