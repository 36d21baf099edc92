// Balances beyond 2^53 reach API clients and live events exactly (decimal strings), and
// ordinary balances stay JSON numbers.
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { createLedger, type Ledger } from '../src/ledger/ledger.js';
import type { App } from '../src/api/app.js';
import {
  connectTestClient,
  createCustomer,
  customerToken,
  eventually,
  fund,
  seedBalance,
  testApp,
  testDatabase,
  uniqueId,
} from './helpers.js';

let db: Database;
let temporal: Client;
let app: App;
let ledger: Ledger;

beforeAll(async () => {
  db = testDatabase(4);
  ledger = createLedger(db.sql);
  temporal = await connectTestClient();
  app = testApp(db, temporal, uniqueId('balances'));
});

afterAll(async () => {
  await temporal.connection.close();
  await db.close();
});

const get = async (path: string, customerId: string) =>
  app.request(path, { headers: { authorization: `Bearer ${await customerToken(customerId)}` } });

const spend = (customerId: string, amount: number) =>
  ledger.postEntry({
    idempotencyKey: uniqueId('spend'),
    type: 'test_debit',
    description: 'spend',
    lines: [
      { account: { wallet: customerId }, amount: -amount },
      { account: { system: 'revenue' }, amount },
    ],
  });

describe('balances in the API', () => {
  it('answers a balance above 2^53 as its exact decimal string, in the wallet and its history', async () => {
    const customer = await createCustomer(db);
    await seedBalance(db, customer.id, 2n ** 53n + 3n);
    await spend(customer.id, 2);

    const wallet = await get('/v1/wallet', customer.id);
    expect(wallet.status).toBe(200);
    expect(await wallet.json()).toMatchObject({
      customerId: customer.id,
      balance: '9007199254740993',
      available: '9007199254740993',
      byCategory: { paid: '9007199254740993', promotional: 0 },
      grants: [expect.objectContaining({ remaining: '9007199254740993' })],
    });

    const history = await get('/v1/wallet/transactions', customer.id);
    const page = (await history.json()) as {
      items: Array<{ amount: unknown; balanceAfter: unknown }>;
    };
    expect(page.items.map((i) => [i.amount, i.balanceAfter])).toEqual([
      [-2, '9007199254740993'],
      ['9007199254740995', '9007199254740995'],
    ]);
  });

  it('keeps ordinary balances JSON numbers', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 120);
    await spend(customer.id, 20);
    expect(await (await get('/v1/wallet', customer.id)).json()).toMatchObject({
      customerId: customer.id,
      balance: 100,
      available: 100,
      byCategory: { paid: 100, promotional: 0 },
    });
    const page = (await (await get('/v1/wallet/transactions', customer.id)).json()) as {
      items: Array<{ balanceAfter: unknown }>;
    };
    expect(page.items.map((i) => i.balanceAfter)).toEqual([100, 120]);
  });

  it('announces a balance above 2^53 on wallet_events exactly, and small ones as numbers', async () => {
    const rich = await createCustomer(db);
    const plain = await createCustomer(db);
    await seedBalance(db, rich.id, 2n ** 53n + 3n);
    const seen = new Map<string, unknown>();
    // Wallet events are sent only for wallets an event hub registered as watched.
    const hubId = uniqueId('hub');
    await db.sql`insert into wallet_event_listeners (customer_id, hub_id)
                 values (${rich.id}, ${hubId}), (${plain.id}, ${hubId})`;
    const listener = await db.sql.listen('wallet_events', (payload) => {
      const event = JSON.parse(payload) as { customerId: string; balance: unknown };
      seen.set(event.customerId, event.balance);
    });
    try {
      await spend(rich.id, 2);
      await fund(ledger, plain.id, 10);
      await eventually(() =>
        Promise.resolve(seen.has(rich.id) && seen.has(plain.id) ? true : undefined),
      );
      expect(seen.get(rich.id)).toBe('9007199254740993');
      expect(seen.get(plain.id)).toBe(10);
    } finally {
      await listener.unlisten();
      await db.sql`delete from wallet_event_listeners where hub_id = ${hubId}`;
    }
  });
});
