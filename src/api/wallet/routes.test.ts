// Wallet API: balance, transaction history (filters, cursor paging, limits) and authentication.
import type { Client } from '@temporalio/client';
import { sign } from 'hono/jwt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  JWT_SECRET,
  adminToken,
  connectTestClient,
  createCustomer,
  customerToken,
  expectLedgerConsistent,
  fund,
  testApp,
  testDatabase,
  uniqueId,
} from '../../../test/helpers.js';
import type { Database } from '../../db/client.js';
import { createLedger, type Ledger } from '../../ledger/ledger.js';
import type { App } from '../app.js';

let db: Database;
let temporal: Client;
let app: App;
let ledger: Ledger;

beforeAll(async () => {
  db = testDatabase();
  ledger = createLedger(db.sql);
  temporal = await connectTestClient();
  app = testApp(db, temporal, uniqueId('wallet'));
});

afterAll(async () => {
  await expectLedgerConsistent(db);
  await temporal.connection.close();
  await db.close();
});

const get = async (path: string, token?: string) =>
  app.request(path, token ? { headers: { authorization: `Bearer ${token}` } } : {});

interface Page {
  items: Array<{
    id: number;
    type: string;
    amount: number;
    balanceAfter: number;
    description: string;
    createdAt: string;
  }>;
  nextCursor: string | null;
}

describe('authentication', () => {
  it('answers 401 without a token, with a bad token, a wrong secret or an expired token', async () => {
    const customer = await createCustomer(db);
    const now = Math.floor(Date.now() / 1000);
    const wrongSecret = await sign(
      { sub: customer.id, role: 'customer', exp: now + 60 },
      'another-secret-that-is-32-characters-long',
      'HS256',
    );
    const expired = await sign(
      { sub: customer.id, role: 'customer', exp: now - 10 },
      JWT_SECRET,
      'HS256',
    );
    const noRole = await sign({ sub: customer.id, exp: now + 60 }, JWT_SECRET, 'HS256');
    for (const headers of [
      {} as Record<string, string>,
      { authorization: 'Bearer not-a-jwt' },
      { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` },
      { authorization: `Bearer ${wrongSecret}` },
      { authorization: `Bearer ${expired}` },
      { authorization: `Bearer ${noRole}` },
    ]) {
      const res = await app.request('/v1/wallet', { headers });
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ error: { code: 'unauthorized' } });
    }
  });

  it("refuses a customer reading another customer's wallet with 403", async () => {
    const alice = await createCustomer(db);
    const bob = await createCustomer(db);
    const token = await customerToken(alice.id);
    expect((await get(`/v1/wallet?customerId=${bob.id}`, token)).status).toBe(403);
    expect((await get(`/v1/wallet/transactions?customerId=${bob.id}`, token)).status).toBe(403);
  });
});

describe('GET /v1/wallet', () => {
  it("answers the caller's own balance", async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 1234);
    const res = await get('/v1/wallet', await customerToken(customer.id));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      customerId: customer.id,
      balance: 1234,
      available: 1234,
      byCategory: { paid: 1234, promotional: 0 },
      grants: [
        expect.objectContaining({
          category: 'paid',
          source: 'adjustment',
          remaining: 1234,
          expiresAt: null,
          spendable: true,
        }),
      ],
    });
  });

  it('asks admins to name the customer', async () => {
    const res = await get('/v1/wallet', await adminToken());
    expect(res.status).toBe(400);
  });
});

describe('GET /v1/wallet/transactions', () => {
  it('pages newest first with the balance after each, across cursors', async () => {
    const customer = await createCustomer(db);
    for (let i = 1; i <= 5; i++) await fund(ledger, customer.id, i * 10);
    const token = await customerToken(customer.id);

    const firstRes = await get('/v1/wallet/transactions?limit=2', token);
    const first = (await firstRes.json()) as Page;
    expect(firstRes.status, JSON.stringify(first)).toBe(200);
    expect(first.items.map((t) => t.amount)).toEqual([50, 40]);
    expect(first.items.map((t) => t.balanceAfter)).toEqual([150, 100]);
    expect(first.nextCursor).toBeTruthy();

    const second = (await (
      await get(`/v1/wallet/transactions?limit=2&cursor=${first.nextCursor}`, token)
    ).json()) as Page;
    expect(second.items.map((t) => t.amount)).toEqual([30, 20]);
    const third = (await (
      await get(`/v1/wallet/transactions?limit=2&cursor=${second.nextCursor}`, token)
    ).json()) as Page;
    expect(third.items.map((t) => t.balanceAfter)).toEqual([10]);
    expect(third.nextCursor).toBeNull();
    expect(third.items[0]).toMatchObject({ type: 'adjustment', description: 'Test funding' });
  });

  it('filters by type and time', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 100);
    await ledger.postEntry({
      idempotencyKey: uniqueId('spend'),
      type: 'test_spend',
      description: 'Spent',
      lines: [
        { account: { wallet: customer.id }, amount: -40 },
        { account: { system: 'revenue' }, amount: 40 },
      ],
    });
    const token = await customerToken(customer.id);
    const spends = (await (
      await get('/v1/wallet/transactions?type=test_spend', token)
    ).json()) as Page;
    expect(spends.items).toHaveLength(1);
    expect(spends.items[0]).toMatchObject({ amount: -40, balanceAfter: 60 });

    const future = new Date(Date.now() + 60_000).toISOString();
    const none = (await (
      await get(`/v1/wallet/transactions?from=${encodeURIComponent(future)}`, token)
    ).json()) as Page;
    expect(none.items).toEqual([]);
    const past = new Date(Date.now() - 60_000).toISOString();
    const all = (await (
      await get(
        `/v1/wallet/transactions?from=${encodeURIComponent(past)}&to=${encodeURIComponent(future)}`,
        token,
      )
    ).json()) as Page;
    expect(all.items).toHaveLength(2);
  });

  it.each([
    ['limit above 200', 'limit=201'],
    ['limit zero', 'limit=0'],
    ['a bad date', 'from=yesterday'],
    ['from after to', `from=2026-02-01&to=2026-01-01`],
    ['a forged cursor', 'cursor=bm9wZQ'],
  ])('answers 400 for %s', async (_label, query) => {
    const customer = await createCustomer(db);
    const res = await get(`/v1/wallet/transactions?${query}`, await customerToken(customer.id));
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string } };
    expect(['invalid_request', 'invalid_cursor']).toContain(body.error.code);
  });
});
