// Marketplace items through the HTTP API: listing, reading, browsing and withdrawing.
import type { Client } from '@temporalio/client';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminToken,
  connectTestClient,
  createCustomer,
  customerToken,
  expectLedgerConsistent,
  jsonRequest,
  testApp,
  testDatabase,
  uniqueId,
} from '../../../test/helpers.js';
import type { Database } from '../../db/client.js';
import type { App } from '../app.js';

let db: Database;
let temporal: Client;
let app: App;

beforeAll(async () => {
  db = testDatabase();
  temporal = await connectTestClient();
  app = testApp(db, temporal, uniqueId('items'));
});

afterAll(async () => {
  await expectLedgerConsistent(db);
  await temporal?.connection.close();
  await db?.close();
});

interface Item {
  id: string;
  title: string;
  price: number;
  sellerId: string;
  ownerId: string;
  status: string;
}

const auth = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

async function listItem(token: string, body: unknown) {
  return app.request('/v1/items', jsonRequest('POST', body, token));
}

describe('POST /v1/items', () => {
  it('lists an item for the caller, who is seller and owner, and reads it back', async () => {
    const seller = await createCustomer(db);
    const token = await customerToken(seller.id);
    const res = await listItem(token, { title: '  Vintage lamp ', price: 2000 });
    expect(res.status).toBe(201);
    const item = (await res.json()) as Item;
    expect(item).toMatchObject({
      title: 'Vintage lamp',
      price: 2000,
      sellerId: seller.id,
      ownerId: seller.id,
      status: 'available',
    });

    const read = await app.request(`/v1/items/${item.id}`, auth(await adminToken()));
    expect(read.status).toBe(200);
    expect(await read.json()).toEqual(item);
  });

  it.each([
    ['a missing title', { price: 10 }],
    ['an empty title', { title: '   ', price: 10 }],
    ['a title of 201 characters', { title: 'x'.repeat(201), price: 10 }],
    ['a zero price', { title: 'thing', price: 0 }],
    ['a negative price', { title: 'thing', price: -5 }],
    ['a fractional price', { title: 'thing', price: 1.5 }],
    ['a price as a string', { title: 'thing', price: '10' }],
    ['a price beyond the bound', { title: 'thing', price: 1e12 }],
    ['an unknown field', { title: 'thing', price: 10, sellerId: randomUUID() }],
    ['malformed JSON', '{"title": "x",'],
  ])('answers 400 for %s and lists nothing', async (_label, body) => {
    const seller = await createCustomer(db);
    const res = await listItem(await customerToken(seller.id), body);
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: { code: string; message: string } };
    expect(json.error.code).toMatch(/^(invalid_request|malformed_json)$/);
    expect(await db.sql`select id from items where seller_id = ${seller.id}`).toHaveLength(0);
  });

  it('answers 403 for an admin token and 401 without a token', async () => {
    const asAdmin = await listItem(await adminToken(), { title: 'thing', price: 10 });
    expect(asAdmin.status).toBe(403);
    const anonymous = await app.request('/v1/items', jsonRequest('POST', { title: 't', price: 1 }));
    expect(anonymous.status).toBe(401);
  });
});

describe('GET /v1/items', () => {
  it('filters by status and seller, newest first', async () => {
    const seller = await createCustomer(db);
    const token = await customerToken(seller.id);
    const first = (await (await listItem(token, { title: 'one', price: 1 })).json()) as Item;
    const second = (await (await listItem(token, { title: 'two', price: 2 })).json()) as Item;
    expect(
      (await app.request(`/v1/items/${first.id}/withdraw`, jsonRequest('POST', {}, token))).status,
    ).toBe(200);

    const available = await app.request(
      `/v1/items?status=available&sellerId=${seller.id}`,
      auth(token),
    );
    expect(((await available.json()) as { items: Item[] }).items.map((i) => i.id)).toEqual([
      second.id,
    ]);
    const all = await app.request(`/v1/items?sellerId=${seller.id}`, auth(token));
    expect(((await all.json()) as { items: Item[] }).items.map((i) => i.id)).toEqual([
      second.id,
      first.id,
    ]);
    const bad = await app.request('/v1/items?status=lost', auth(token));
    expect(bad.status).toBe(400);
  });

  it('answers 404 for an unknown item and 400 for a malformed id', async () => {
    const token = await adminToken();
    const unknown = await app.request(`/v1/items/${randomUUID()}`, auth(token));
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: 'item_not_found' } });
    expect((await app.request('/v1/items/not-a-uuid', auth(token))).status).toBe(400);
  });
});

describe('POST /v1/items/:id/withdraw', () => {
  it('lets only the seller withdraw, and only while it is available', async () => {
    const seller = await createCustomer(db);
    const other = await createCustomer(db);
    const token = await customerToken(seller.id);
    const item = (await (await listItem(token, { title: 'chair', price: 30 })).json()) as Item;

    const byOther = await app.request(
      `/v1/items/${item.id}/withdraw`,
      jsonRequest('POST', {}, await customerToken(other.id)),
    );
    expect(byOther.status).toBe(403);

    const withdrawn = await app.request(
      `/v1/items/${item.id}/withdraw`,
      jsonRequest('POST', {}, token),
    );
    expect(withdrawn.status).toBe(200);
    expect(await withdrawn.json()).toMatchObject({ id: item.id, status: 'withdrawn' });

    const again = await app.request(
      `/v1/items/${item.id}/withdraw`,
      jsonRequest('POST', {}, token),
    );
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({ error: { code: 'item_not_available' } });

    const unknown = await app.request(
      `/v1/items/${randomUUID()}/withdraw`,
      jsonRequest('POST', {}, token),
    );
    expect(unknown.status).toBe(404);
  });
});

describe("a sold item's buyer", () => {
  it('is shown to the buyer and admins only, never to other customers or the seller', async () => {
    const seller = await createCustomer(db);
    const buyer = await createCustomer(db);
    const stranger = await createCustomer(db);
    const sellerToken = await customerToken(seller.id);
    const item = (await (
      await listItem(sellerToken, { title: 'clock', price: 40 })
    ).json()) as Item;
    // Sold, as the order workflow leaves it.
    await db.sql`update items set status = 'sold', owner_id = ${buyer.id} where id = ${item.id}`;

    const seen = async (token: string) => {
      const one = (await (await app.request(`/v1/items/${item.id}`, auth(token))).json()) as Item;
      const list = (await (
        await app.request(`/v1/items?sellerId=${seller.id}&status=sold`, auth(token))
      ).json()) as { items: Item[] };
      expect(list.items.map((i) => i.ownerId)).toEqual([one.ownerId]);
      const raw = JSON.stringify([one, list]);
      return { ownerId: one.ownerId, leaksBuyer: raw.includes(buyer.id) };
    };
    expect(await seen(await customerToken(stranger.id))).toEqual({
      ownerId: null,
      leaksBuyer: false,
    });
    expect(await seen(sellerToken)).toEqual({ ownerId: null, leaksBuyer: false });
    expect(await seen(await customerToken(buyer.id))).toEqual({
      ownerId: buyer.id,
      leaksBuyer: true,
    });
    expect(await seen(await adminToken())).toEqual({ ownerId: buyer.id, leaksBuyer: true });
  });
});
