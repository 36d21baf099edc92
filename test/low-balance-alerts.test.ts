// Low-balance alerts: PUT/GET /v1/wallet/alerts, and one `low_balance` notification per crossing
// below a threshold — decided inside the posting transaction, delivered through the outbox
// dispatcher — never one per debit while below, re-armed once the balance is back up.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import type { Database } from '../src/db/client.js';
import { createLedger, type Ledger, type PostEntryInput } from '../src/ledger/ledger.js';
import { createOutboxDispatcher, type OutboxDispatcher } from '../src/notifications/dispatcher.js';
import {
  adminToken,
  connectTestClient,
  createCustomer,
  customerToken,
  deliveredNotifications,
  expectLedgerConsistent,
  fund,
  jsonRequest,
  silentLogger,
  testApp,
  testDatabase,
  testOutboxSettings,
  uniqueId,
} from './helpers.js';

let db: Database;
let temporal: Client;
let ledger: Ledger;
let app: ReturnType<typeof testApp>;
let dispatcher: OutboxDispatcher;
let taskQueue: string;

beforeAll(async () => {
  db = testDatabase(25);
  ledger = createLedger(db.sql);
  temporal = await connectTestClient();
  taskQueue = uniqueId('low-balance');
  app = testApp(db, temporal, taskQueue);
  // What the worker on this task queue runs: the alerts' task queue is the API's.
  dispatcher = createOutboxDispatcher({
    sql: db.sql,
    taskQueue,
    logger: silentLogger,
    settings: testOutboxSettings,
  });
  dispatcher.start();
});

afterAll(async () => {
  await dispatcher?.stop();
  await expectLedgerConsistent(db);
  await temporal?.connection.close();
  await db?.close();
});

interface Alerts {
  customerId: string;
  thresholds: number[];
  armed: number[];
  available: number;
}

async function putAlerts(customerId: string, body: unknown, token?: string) {
  return app.request(
    '/v1/wallet/alerts',
    jsonRequest('PUT', body, token ?? (await customerToken(customerId))),
  );
}

async function setAlerts(customerId: string, thresholds: number[]): Promise<Alerts> {
  const res = await putAlerts(customerId, { thresholds });
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as Alerts;
}

async function getAlerts(customerId: string): Promise<Alerts> {
  const res = await app.request('/v1/wallet/alerts', {
    headers: { authorization: `Bearer ${await customerToken(customerId)}` },
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Alerts;
}

const debit = (customerId: string, amount: number): PostEntryInput => ({
  idempotencyKey: uniqueId('spend'),
  type: 'test_debit',
  description: 'Test spend',
  lines: [
    { account: { wallet: customerId }, amount: -amount },
    { account: { system: 'revenue' }, amount },
  ],
});

const spend = (customerId: string, amount: number) => ledger.postEntry(debit(customerId, amount));

async function customerWith(credits: number) {
  const customer = await createCustomer(db);
  if (credits > 0) await fund(ledger, customer.id, credits);
  return customer;
}

/** The low-balance notifications the customer received, once the outbox has delivered them. */
async function lowBalanceAlerts(customerId: string) {
  const all = await deliveredNotifications(db, customerId);
  return all.filter((n) => n.kind === 'low_balance');
}

async function outboxRows(customerId: string) {
  return db.sql<{ idempotency_key: string; entry_id: string | null }[]>`
    select idempotency_key, entry_id from notification_outbox
    where customer_id = ${customerId} and kind = 'low_balance' order by id`;
}

describe('PUT and GET /v1/wallet/alerts', () => {
  it('saves the thresholds deduplicated, highest first, armed where the balance is at or above them', async () => {
    const customer = await customerWith(50);
    expect(await getAlerts(customer.id)).toEqual({
      customerId: customer.id,
      thresholds: [],
      armed: [],
      available: 50,
    });
    const saved = await setAlerts(customer.id, [20, 100, 20, 50]);
    expect(saved).toEqual({
      customerId: customer.id,
      thresholds: [100, 50, 20],
      armed: [50, 20],
      available: 50,
    });
    expect(await getAlerts(customer.id)).toEqual(saved);
    // An admin acts for a customer by naming them.
    const admin = await adminToken();
    const res = await putAlerts(customer.id, { thresholds: [10] }, admin);
    expect(res.status).toBe(400); // an admin must name the customer
    const named = await app.request(
      `/v1/wallet/alerts?customerId=${customer.id}`,
      jsonRequest('PUT', { thresholds: [10] }, admin),
    );
    expect(named.status).toBe(200);
    expect(await getAlerts(customer.id)).toMatchObject({ thresholds: [10], armed: [10] });
  });

  it('refuses bad thresholds with 400 and writes nothing', async () => {
    const customer = await customerWith(100);
    await setAlerts(customer.id, [30]);
    const bad: unknown[] = [
      {},
      { thresholds: 20 },
      { thresholds: null },
      { thresholds: [0] },
      { thresholds: [-5] },
      { thresholds: [2.5] },
      { thresholds: ['20'] },
      { thresholds: [null] },
      { thresholds: [2 ** 53] },
      { thresholds: [1_000_000_000_001] },
      { thresholds: Array.from({ length: 11 }, (_, i) => i + 1) },
      { thresholds: [20], customerId: customer.id },
      'not json',
    ];
    for (const body of bad) {
      const res = await putAlerts(customer.id, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      const error = (await res.json()) as { error: { code: string; message: string } };
      expect(error.error.code).toMatch(/^(invalid_request|malformed_json)$/);
    }
    expect(await getAlerts(customer.id)).toMatchObject({ thresholds: [30], armed: [30] });
  });

  it('answers 404 for a customer without a wallet, 401 without a token', async () => {
    const admin = await adminToken();
    const nobody = '00000000-0000-4000-8000-00000000abcd';
    const res = await app.request(
      `/v1/wallet/alerts?customerId=${nobody}`,
      jsonRequest('PUT', { thresholds: [10] }, admin),
    );
    expect(res.status).toBe(404);
    const [row] = await db.sql`select 1 from low_balance_alerts where customer_id = ${nobody}`;
    expect(row).toBeUndefined();
    expect((await app.request('/v1/wallet/alerts')).status).toBe(401);
  });
});

describe('crossings', () => {
  it('sends one notification when 20 concurrent debits cross a threshold together', async () => {
    const customer = await customerWith(250);
    await setAlerts(customer.id, [100]);
    const results = await Promise.all(Array.from({ length: 20 }, () => spend(customer.id, 10)));
    expect(results).toHaveLength(20);
    expect(await ledger.walletBalance(customer.id)).toBe(50);
    // Both sides of the race happened: debits above the threshold, the crossing, debits below it.
    const after = results.map((r) => r.lines[0]!.balanceAfter);
    expect(after.filter((b) => b >= 100).length).toBeGreaterThan(1);
    expect(after.filter((b) => b < 100).length).toBeGreaterThan(1);
    const crossing = results.find((r) => r.lines[0]!.balanceAfter === 90)!;

    const alerts = await lowBalanceAlerts(customer.id);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({
      kind: 'low_balance',
      title: 'Low balance',
      body: 'You have 90 credits left to spend, below your alert at 100 credits.',
      amount: null,
      data: { threshold: 100, thresholds: [100], available: 90, crossing: 1 },
    });
    expect(await outboxRows(customer.id)).toEqual([
      { idempotency_key: `low-balance:${customer.id}:1`, entry_id: String(crossing.entryId) },
    ]);
    expect(await getAlerts(customer.id)).toMatchObject({ armed: [], available: 50 });
  });

  it('stays quiet while below, re-arms on a credit back above, and notifies on the next crossing', async () => {
    const customer = await customerWith(120);
    await setAlerts(customer.id, [100]);
    await spend(customer.id, 30); // 90: crossing 1
    await spend(customer.id, 10); // 80
    await spend(customer.id, 50); // 30
    expect(await lowBalanceAlerts(customer.id)).toHaveLength(1);

    await fund(ledger, customer.id, 60); // 90: still below, not re-armed
    expect((await getAlerts(customer.id)).armed).toEqual([]);
    await spend(customer.id, 5); // 85
    await fund(ledger, customer.id, 15); // exactly 100: re-armed (at or above)
    expect((await getAlerts(customer.id)).armed).toEqual([100]);
    await spend(customer.id, 1); // 99: crossing 2

    const alerts = await lowBalanceAlerts(customer.id);
    expect(alerts.map((a) => a.data)).toEqual([
      { threshold: 100, thresholds: [100], available: 90, crossing: 1 },
      { threshold: 100, thresholds: [100], available: 99, crossing: 2 },
    ]);
  });

  it('handles several thresholds: one message per posting, naming the lowest crossed', async () => {
    const customer = await customerWith(120);
    await setAlerts(customer.id, [100, 50, 20]);
    await spend(customer.id, 30); // 90: crosses 100
    await spend(customer.id, 50); // 40: crosses 50
    await spend(customer.id, 30); // 10: crosses 20
    await fund(ledger, customer.id, 50); // 60: re-arms 50 and 20, not 100
    expect((await getAlerts(customer.id)).armed).toEqual([50, 20]);
    await spend(customer.id, 45); // 15: crosses 50 and 20 at once

    const alerts = await lowBalanceAlerts(customer.id);
    expect(alerts.map((a) => a.data)).toEqual([
      { threshold: 100, thresholds: [100], available: 90, crossing: 1 },
      { threshold: 50, thresholds: [50], available: 40, crossing: 2 },
      { threshold: 20, thresholds: [20], available: 10, crossing: 3 },
      { threshold: 20, thresholds: [50, 20], available: 15, crossing: 4 },
    ]);
    expect(alerts[3]!.body).toBe(
      'You have 15 credits left to spend, below your alert at 20 credits.',
    );
  });

  it('does not alert for a balance already below a threshold when it is set', async () => {
    const customer = await customerWith(10);
    expect(await setAlerts(customer.id, [20])).toMatchObject({ armed: [], available: 10 });
    await spend(customer.id, 5);
    expect(await lowBalanceAlerts(customer.id)).toEqual([]);
    await fund(ledger, customer.id, 25); // 30: armed
    await spend(customer.id, 15); // 15: crossing
    expect((await lowBalanceAlerts(customer.id)).map((a) => a.data)).toEqual([
      { threshold: 20, thresholds: [20], available: 15, crossing: 1 },
    ]);
  });

  it('keeps counting crossings across a change of thresholds, and [] turns alerts off', async () => {
    const customer = await customerWith(100);
    await setAlerts(customer.id, [80]);
    await spend(customer.id, 30); // 70: crossing 1
    await setAlerts(customer.id, [50]); // armed at 70
    await spend(customer.id, 30); // 40: crossing 2, a key of its own
    await setAlerts(customer.id, []);
    await fund(ledger, customer.id, 100);
    await spend(customer.id, 130); // 10: nothing watched
    const alerts = await lowBalanceAlerts(customer.id);
    expect(alerts.map((a) => a.data)).toEqual([
      { threshold: 80, thresholds: [80], available: 70, crossing: 1 },
      { threshold: 50, thresholds: [50], available: 40, crossing: 2 },
    ]);
    expect(await getAlerts(customer.id)).toMatchObject({ thresholds: [], armed: [] });
  });

  it('counts what is spendable: a voided grant crosses, a future-dated grant does not re-arm', async () => {
    const customer = await customerWith(30);
    const promo = await ledger.postEntry({
      idempotencyKey: uniqueId('promo'),
      type: 'adjustment',
      description: 'Promotion',
      lines: [
        {
          account: { wallet: customer.id },
          amount: 100,
          credit: { grant: { category: 'promotional', source: 'promotion' } },
        },
        { account: { system: 'adjustments' }, amount: -100 },
      ],
    });
    await setAlerts(customer.id, [50]);
    const closed = await ledger.closeGrant({ grantId: promo.grants[0]!.grantId, kind: 'void' });
    expect(closed).toMatchObject({ closedNow: true, credits: 100 });
    await ledger.postEntry({
      idempotencyKey: uniqueId('later'),
      type: 'adjustment',
      description: 'Credits from next month',
      lines: [
        {
          account: { wallet: customer.id },
          amount: 500,
          credit: {
            grant: {
              category: 'paid',
              source: 'adjustment',
              effectiveAt: new Date(Date.now() + 86_400_000),
            },
          },
        },
        { account: { system: 'adjustments' }, amount: -500 },
      ],
    });
    expect(await getAlerts(customer.id)).toMatchObject({ armed: [], available: 30 });
    const alerts = await lowBalanceAlerts(customer.id);
    expect(alerts.map((a) => a.data)).toEqual([
      { threshold: 50, thresholds: [50], available: 30, crossing: 1 },
    ]);
    const [row] = await outboxRows(customer.id);
    expect(row!.entry_id).toBe(String(closed.entry!.entryId));
  });

  it('alerts on a fall from credits that became spendable without a posting', async () => {
    const customer = await customerWith(10);
    await setAlerts(customer.id, [20]); // below already: disarmed
    const later = await ledger.postEntry({
      idempotencyKey: uniqueId('later'),
      type: 'adjustment',
      description: 'Credits from tomorrow',
      lines: [
        {
          account: { wallet: customer.id },
          amount: 100,
          credit: {
            grant: {
              category: 'paid',
              source: 'adjustment',
              effectiveAt: new Date(Date.now() + 86_400_000),
            },
          },
        },
        { account: { system: 'adjustments' }, amount: -100 },
      ],
    });
    expect(await getAlerts(customer.id)).toMatchObject({ armed: [], available: 10 });
    // Tomorrow comes: the grant is spendable, and no posting told the alerts.
    await db.sql`
      update grants set effective_at = now() - interval '1 second'
      where id = ${later.grants[0]!.grantId}`;
    expect(await getAlerts(customer.id)).toMatchObject({ armed: [], available: 110 });
    await spend(customer.id, 95); // 110 -> 15
    await spend(customer.id, 5); // still below
    expect((await lowBalanceAlerts(customer.id)).map((a) => a.data)).toEqual([
      { threshold: 20, thresholds: [20], available: 15, crossing: 1 },
    ]);
  });

  it('re-arms when a refund gives a purchase’s credits back to its grants', async () => {
    const customer = await customerWith(100);
    await setAlerts(customer.id, [50]);
    const purchase = await spend(customer.id, 60); // 40: crossing 1
    await ledger.postEntry({
      idempotencyKey: uniqueId('give-back'),
      type: 'test_refund',
      description: 'Purchase refunded',
      lines: [
        {
          account: { wallet: customer.id },
          amount: 60,
          credit: { returnTo: purchase.idempotencyKey },
        },
        { account: { system: 'revenue' }, amount: -60 },
      ],
    });
    expect(await getAlerts(customer.id)).toMatchObject({ armed: [50], available: 100 });
    await spend(customer.id, 60); // crossing 2
    expect((await lowBalanceAlerts(customer.id)).map((a) => a.data['crossing'])).toEqual([1, 2]);
  });
});
