// The worker is SIGKILLed in the middle of an order, with one sale half-done in the database;
// a new worker finishes the order: every item transferred once, the buyer charged once.
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/api/app.js';
import type { Database } from '../src/db/client.js';
import { createLedger, type Ledger } from '../src/ledger/ledger.js';
import type { OrderState } from '../src/shared.js';
import {
  connectTestClient,
  createCustomer,
  customerToken,
  eventually,
  expectLedgerConsistent,
  fund,
  jsonRequest,
  spawnWorkerProcess,
  testApp,
  testDatabase,
  uniqueId,
} from './helpers.js';

let db: Database;
let temporal: Client;
let ledger: Ledger;

beforeAll(async () => {
  db = testDatabase();
  ledger = createLedger(db.sql);
  temporal = await connectTestClient();
});

afterAll(async () => {
  await expectLedgerConsistent(db);
  await temporal?.connection.close();
  await db?.close();
});

async function customerWith(credits: number) {
  const customer = await createCustomer(db);
  if (credits > 0) await fund(ledger, customer.id, credits);
  return { id: customer.id, token: await customerToken(customer.id) };
}

describe('order under a worker crash', () => {
  it('finishes after a SIGKILL mid-order: each item sold once, the buyer charged once', async () => {
    const taskQueue = uniqueId('chaos-order');
    const app: App = testApp(db, temporal, taskQueue);
    const buyer = await customerWith(10_000);
    const prices = [100, 200, 300, 400, 500];
    const items = await Promise.all(
      prices.map(async (price) => {
        const seller = await customerWith(0);
        const res = await app.request(
          '/v1/items',
          jsonRequest('POST', { title: `chaos ${price}`, price }, seller.token),
        );
        return { id: ((await res.json()) as { id: string }).id, price, seller };
      }),
    );
    const stuck = items[2]!;

    // Hold the row of one item, so its sale is caught mid-transaction when the worker dies.
    const lock = await db.sql.reserve();
    let first: Awaited<ReturnType<typeof spawnWorkerProcess>> | undefined;
    let second: Awaited<ReturnType<typeof spawnWorkerProcess>> | undefined;
    try {
      await lock.unsafe('begin');
      await lock`select id from items where id = ${stuck.id} for update`;

      first = await spawnWorkerProcess(taskQueue);
      const res = await app.request(
        '/v1/orders',
        jsonRequest('POST', { itemIds: items.map((i) => i.id) }, buyer.token),
      );
      expect(res.status).toBe(202);
      const { id, workflowId } = (await res.json()) as { id: string; workflowId: string };

      // Debited, and the held item's sale waiting on the row lock (other sales may be done,
      // or queued behind it on a shared escrow shard): kill now.
      await eventually(
        async () => {
          const [debit] = await db.sql`
            select id from entries where workflow_id = ${workflowId} and type = 'order_purchase'`;
          const waiting = await db.sql`
            select pid from pg_stat_activity
            where application_name = 'creditflow-worker' and wait_event_type = 'Lock'
              and query like '%update items%'`;
          return debit && waiting.length > 0 ? true : undefined;
        },
        { timeoutMs: 30_000 },
      );
      await first.kill();
      await lock.unsafe('rollback');
      lock.release();

      // The killed worker's half-done sale never committed.
      await eventually(async () => {
        const [row] = await db.sql<{ status: string }[]>`
          select status from items where id = ${stuck.id}`;
        const [sale] = await db.sql`
          select id from entries where idempotency_key = ${`${workflowId}:sale:${stuck.id}`}`;
        return row!.status === 'available' && !sale ? true : undefined;
      });

      second = await spawnWorkerProcess(taskQueue);
      const state = await eventually(
        async () => {
          const read = await app.request(`/v1/orders/${id}`, {
            headers: { authorization: `Bearer ${buyer.token}` },
          });
          const body = (await read.json()) as OrderState;
          return body.status === 'processing' ? undefined : body;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );

      const total = prices.reduce((a, b) => a + b, 0);
      expect(state).toMatchObject({
        status: 'completed',
        purchased: items.map((i) => i.id),
        failed: [],
        charged: total,
        refunded: 0,
      });
      const entries = await db.sql<{ type: string; item_id: string | null }[]>`
        select type, metadata->>'itemId' as item_id from entries where workflow_id = ${workflowId}`;
      expect(entries.filter((e) => e.type === 'order_purchase')).toHaveLength(1);
      expect(entries.filter((e) => e.type === 'order_refund')).toHaveLength(0);
      expect(
        entries
          .filter((e) => e.type === 'sale')
          .map((e) => e.item_id)
          .sort(),
      ).toEqual(items.map((i) => i.id).sort());
      expect(await ledger.walletBalance(buyer.id)).toBe(10_000 - total);
      for (const item of items) {
        expect(await ledger.walletBalance(item.seller.id)).toBe(item.price);
        const [row] = await db.sql`select status, owner_id from items where id = ${item.id}`;
        expect(row).toEqual({ status: 'sold', owner_id: buyer.id });
      }
    } finally {
      await first?.kill();
      await second?.stop();
      await lock.unsafe('rollback').catch(() => undefined);
    }
  }, 150_000);
});
