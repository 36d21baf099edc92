// Alert rules: a large deduction and a burst of transactions each raise one alert (and nothing
// below the threshold), a compensation that keeps retrying raises one, a failing rule never fails
// the posting, and an operator lists and acknowledges alerts through the API.
import type { Client } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guardActivities } from '../src/activities/failures.js';
import { postingAlertHook, type PostingAlertRules } from '../src/alerts/rules.js';
import type { App } from '../src/api/app.js';
import type { Database } from '../src/db/client.js';
import { createLedger, type Ledger, type PostEntryInput } from '../src/ledger/ledger.js';
import { createMetrics } from '../src/metrics.js';
import {
  adminToken,
  connectTestClient,
  createCustomer,
  customerToken,
  eventually,
  expectLedgerConsistent,
  jsonRequest,
  startTestWorker,
  testApp,
  testDatabase,
  uniqueId,
} from './helpers.js';
import { RecordingLogger } from './recording-logger.js';

let db: Database;
let temporal: Client;
let app: App;
let admin: string;
let taskQueue: string;
let worker: Awaited<ReturnType<typeof startTestWorker>>;

/** Thresholds small enough to cross in a test; velocity: more than 3 in 5 minutes. */
const RULES = { largeDeduction: 100, velocityCount: 3, velocityMinutes: 5 };

/** A ledger with the posting rules hooked in, reporting to its own counter and log. */
function ledgerWithRules(rules: PostingAlertRules = RULES) {
  const metrics = createMetrics();
  const logged: Array<{ fields: Record<string, unknown>; message: string }> = [];
  const ledger = createLedger(db.sql, undefined, {
    afterCommit: postingAlertHook(
      db.sql,
      { ...rules, logger: { error: (fields, message) => logged.push({ fields, message }) } },
      metrics.alertsRaised,
    ),
  });
  return { ledger, metrics, logged };
}

const credit = (customerId: string, amount: number): PostEntryInput => ({
  idempotencyKey: uniqueId('alerts-credit'),
  type: 'adjustment',
  description: 'test credit',
  lines: [
    { account: { wallet: customerId }, amount },
    { account: { system: 'adjustments' }, amount: -amount },
  ],
});

const debit = (customerId: string, amount: number): PostEntryInput => ({
  idempotencyKey: uniqueId('alerts-debit'),
  type: 'verification_purchase',
  description: 'test debit',
  lines: [
    { account: { wallet: customerId }, amount: -amount },
    { account: { system: 'revenue' }, amount },
  ],
});

async function alertsOf(customerId: string, kind: string) {
  return db.sql<{ id: string; key: string; occurrences: number; severity: string }[]>`
    select id, key, occurrences, severity from alerts
    where customer_id = ${customerId} and kind = ${kind} order by id`;
}

/** Waits for the hooks started by earlier postings to finish: they run after the posting returns. */
async function settleHooks(ledger: Ledger, customerId: string) {
  // One more posting's hook runs after all earlier ones were started; give each a moment.
  await ledger.walletBalance(customerId);
  await new Promise((r) => setTimeout(r, 300));
}

beforeAll(async () => {
  db = testDatabase();
  temporal = await connectTestClient();
  taskQueue = uniqueId('alerts');
  worker = await startTestWorker(db, taskQueue, { alertRules: RULES });
  app = testApp(db, temporal, taskQueue);
  admin = await adminToken();
});

afterAll(async () => {
  await worker?.stop();
  await expectLedgerConsistent(db);
  await temporal?.connection.close();
  await db?.close();
});

describe('large deduction', () => {
  it('raises one alert for a wallet posting above the threshold, none at or below it', async () => {
    const { ledger, metrics, logged } = ledgerWithRules();
    const customer = await createCustomer(db);
    await ledger.postEntry(credit(customer.id, 1000));
    await ledger.postEntry(debit(customer.id, 100)); // exactly the threshold: fine
    const big = await ledger.postEntry(debit(customer.id, 101));
    const alerts = await eventually(async () => {
      const rows = await alertsOf(customer.id, 'large_deduction');
      return rows.length > 0 ? rows : undefined;
    });
    await settleHooks(ledger, customer.id);
    expect(await alertsOf(customer.id, 'large_deduction')).toHaveLength(1);
    expect(alerts[0]).toMatchObject({
      key: `large_deduction:${big.entryId}:${customer.id}`,
      occurrences: 1,
      severity: 'warning',
    });
    const counted = await metrics.alertsRaised.get();
    expect(counted.values).toEqual([
      expect.objectContaining({
        labels: { kind: 'large_deduction', severity: 'warning' },
        value: 1,
      }),
    ]);
    expect(logged).toHaveLength(1);
    expect(JSON.stringify(logged)).not.toContain(customer.email);
  });

  it('a replayed posting raises nothing again', async () => {
    const { ledger } = ledgerWithRules();
    const customer = await createCustomer(db);
    await ledger.postEntry(credit(customer.id, 1000));
    const input = debit(customer.id, 500);
    await ledger.postEntry(input);
    await eventually(async () =>
      (await alertsOf(customer.id, 'large_deduction')).length === 1 ? true : undefined,
    );
    const replay = await ledger.postEntry(input);
    expect(replay.replayed).toBe(true);
    await settleHooks(ledger, customer.id);
    const [alert] = await alertsOf(customer.id, 'large_deduction');
    expect(alert?.occurrences).toBe(1);
  });

  it('is raised through the worker: an admin debit above the threshold', async () => {
    const customer = await createCustomer(db);
    const post = (amount: number) =>
      app.request(
        '/v1/admin/adjustments',
        jsonRequest('POST', { customerId: customer.id, amount, reason: 'alert test' }, admin, {
          'idempotency-key': uniqueId('alerts-adj'),
        }),
      );
    expect((await post(500)).status).toBe(202);
    await eventually(async () => {
      const [row] = await db.sql`
        select 1 from adjustments where customer_id = ${customer.id} and status = 'completed'`;
      return row ? true : undefined;
    });
    expect((await post(-250)).status).toBe(202);
    const [alert] = await eventually(async () => {
      const rows = await alertsOf(customer.id, 'large_deduction');
      return rows.length > 0 ? rows : undefined;
    });
    expect(alert).toMatchObject({ occurrences: 1 });
    const [entry] = await db.sql<{ type: string }[]>`
      select e.type from entries e where e.id = (
        select (details->>'entryId')::bigint from alerts where id = ${alert!.id})`;
    expect(entry).toEqual({ type: 'adjustment' });
  });
});

describe('customer velocity', () => {
  it('stays quiet at the threshold and raises once per burst above it', async () => {
    const { ledger, logged } = ledgerWithRules();
    const customer = await createCustomer(db);
    // Three transactions in the window: exactly the threshold.
    await ledger.postEntry(credit(customer.id, 50));
    await ledger.postEntry(credit(customer.id, 50));
    await ledger.postEntry(credit(customer.id, 50));
    await settleHooks(ledger, customer.id);
    expect(await alertsOf(customer.id, 'customer_velocity')).toHaveLength(0);

    // The fourth crosses it; eight more in the same burst raise nothing new.
    await ledger.postEntry(credit(customer.id, 50));
    await eventually(async () =>
      (await alertsOf(customer.id, 'customer_velocity')).length > 0 ? true : undefined,
    );
    for (let i = 0; i < 8; i++) await ledger.postEntry(debit(customer.id, 10));
    await settleHooks(ledger, customer.id);
    const alerts = await alertsOf(customer.id, 'customer_velocity');
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.key).toMatch(new RegExp(`^customer_velocity:${customer.id}:\\d+$`));
    expect(alerts[0]!.occurrences).toBe(1);
    expect(logged.filter((l) => l.fields.alert === 'customer_velocity')).toHaveLength(1);
  });

  it('counts one customer’s transactions only', async () => {
    const { ledger } = ledgerWithRules();
    const busy = await createCustomer(db);
    const quiet = await createCustomer(db);
    for (let i = 0; i < 5; i++) await ledger.postEntry(credit(busy.id, 5));
    await ledger.postEntry(credit(quiet.id, 5));
    await eventually(async () =>
      (await alertsOf(busy.id, 'customer_velocity')).length > 0 ? true : undefined,
    );
    await settleHooks(ledger, quiet.id);
    expect(await alertsOf(quiet.id, 'customer_velocity')).toHaveLength(0);
  });
});

describe('the posting hook is off the money path', () => {
  it('a rule that throws is logged; the posting commits and returns', async () => {
    const failures: unknown[] = [];
    const ledger = createLedger(db.sql, undefined, {
      afterCommit: () => {
        throw new Error('rule exploded');
      },
      onAfterCommitError: (err) => failures.push(err),
    });
    const rejecting = createLedger(db.sql, undefined, {
      afterCommit: () => Promise.reject(new Error('rule rejected')),
      onAfterCommitError: (err) => failures.push(err),
    });
    const customer = await createCustomer(db);
    const first = await ledger.postEntry(credit(customer.id, 40));
    const second = await rejecting.postEntry(credit(customer.id, 2));
    expect(first.replayed).toBe(false);
    expect(second.lines[0]!.balanceAfter).toBe(42);
    expect(await ledger.walletBalance(customer.id)).toBe(42);
    await eventually(() => Promise.resolve(failures.length === 2 ? true : undefined));
  });

  it('a posting does not wait for a slow rule', async () => {
    let release: () => void = () => undefined;
    const slow = new Promise<void>((r) => (release = r));
    const ledger = createLedger(db.sql, undefined, { afterCommit: () => slow });
    const customer = await createCustomer(db);
    const posted = await Promise.race([
      ledger.postEntry(credit(customer.id, 7)),
      new Promise((_, reject) => setTimeout(() => reject(new Error('posting waited')), 5000)),
    ]);
    expect(posted).toMatchObject({ replayed: false });
    release();
  });

  it('a rule whose database query fails is logged and the next rule still runs', async () => {
    const logged: Array<Record<string, unknown>> = [];
    const hook = postingAlertHook(db.sql, {
      ...RULES,
      // A negative count makes the velocity query invalid (OFFSET must not be negative).
      velocityCount: -1,
      logger: { error: (fields) => logged.push(fields) },
    });
    const customer = await createCustomer(db);
    const ledger = createLedger(db.sql, undefined, { afterCommit: hook });
    await ledger.postEntry(credit(customer.id, 500));
    await ledger.postEntry(debit(customer.id, 300));
    await eventually(async () =>
      (await alertsOf(customer.id, 'large_deduction')).length === 1 ? true : undefined,
    );
    await eventually(() =>
      Promise.resolve(
        logged.filter((l) => l.rule === 'customer_velocity').length === 2 ? true : undefined,
      ),
    );
  });
});

describe('compensation retrying', () => {
  it('raises one critical alert per workflow and compensation past the threshold', async () => {
    const metrics = createMetrics();
    const guarded = guardActivities(
      { refundVerification: () => Promise.reject(new Error('provider down')) },
      {
        metrics,
        alertAfterAttempts: 3,
        keepRetrying: new Set(['refundVerification']),
        alertSql: db.sql,
      },
    );
    const workflowId = uniqueId('verification');
    const logger = new RecordingLogger();
    for (const attempt of [1, 2, 3, 4, 5]) {
      const env = new MockActivityEnvironment(
        { attempt, workflowExecution: { workflowId, runId: 'run' } },
        { logger },
      );
      await expect(env.run(guarded.refundVerification)).rejects.toThrow('provider down');
    }
    const key = `compensation_retrying:${workflowId}:refundVerification`;
    const alert = await eventually(async () => {
      const [row] = await db.sql<{ occurrences: number; severity: string; kind: string }[]>`
        select occurrences, severity, kind from alerts where key = ${key}`;
      return row && row.occurrences === 3 ? row : undefined;
    });
    expect(alert).toEqual({ occurrences: 3, severity: 'critical', kind: 'compensation_retrying' });
    const counted = await metrics.alertsRaised.get();
    expect(counted.values).toEqual([
      expect.objectContaining({
        labels: { kind: 'compensation_retrying', severity: 'critical' },
        value: 3,
      }),
    ]);
  });

  it('a forward step that keeps retrying raises no compensation alert', async () => {
    const guarded = guardActivities(
      { debitVerification: () => Promise.reject(new Error('database away')) },
      { alertAfterAttempts: 1, keepRetrying: new Set(['refundVerification']), alertSql: db.sql },
    );
    const workflowId = uniqueId('verification');
    const env = new MockActivityEnvironment(
      { attempt: 4, workflowExecution: { workflowId, runId: 'run' } },
      { logger: new RecordingLogger() },
    );
    await expect(env.run(guarded.debitVerification)).rejects.toThrow('database away');
    await new Promise((r) => setTimeout(r, 300));
    const rows = await db.sql`select 1 from alerts where key like ${`%${workflowId}%`}`;
    expect(rows).toHaveLength(0);
  });
});

describe('GET /v1/admin/alerts and POST /v1/admin/alerts/:id/ack', () => {
  const get = (url: string, token = admin) =>
    app.request(url, { headers: { authorization: `Bearer ${token}` } });

  async function raiseTestAlert(kind = 'refund_failed') {
    const customer = await createCustomer(db);
    const [row] = await db.sql<{ id: string }[]>`
      insert into alerts (key, kind, severity, message, customer_id)
      values (${uniqueId('test-alert')}, ${kind}, 'critical', 'a test alert', ${customer.id})
      returning id`;
    return { id: Number(row!.id), customer };
  }

  it('lists open alerts newest first, pages, filters by kind', async () => {
    const a = await raiseTestAlert('canary_late');
    const b = await raiseTestAlert('canary_late');
    const c = await raiseTestAlert('canary_late');
    const first = await get('/v1/admin/alerts?status=open&kind=canary_late&limit=2');
    expect(first.status).toBe(200);
    const page1 = (await first.json()) as {
      items: Array<{ id: number; kind: string; status: string }>;
      nextCursor: string | null;
    };
    expect(page1.items.map((i) => i.id)).toEqual([c.id, b.id]);
    expect(page1.items.every((i) => i.kind === 'canary_late' && i.status === 'open')).toBe(true);
    expect(page1.nextCursor).not.toBeNull();
    const page2 = (await (
      await get(`/v1/admin/alerts?status=open&kind=canary_late&limit=2&cursor=${page1.nextCursor}`)
    ).json()) as { items: Array<{ id: number }> };
    expect(page2.items[0]!.id).toBe(a.id);
    expect((await get('/v1/admin/alerts?status=closed')).status).toBe(400);
    expect((await get('/v1/admin/alerts?kind=nonsense')).status).toBe(400);
    expect((await get('/v1/admin/alerts?cursor=bm9wZQ')).status).toBe(400);
  });

  it('acknowledges once, records who and when in the alert and the audit log', async () => {
    const { id } = await raiseTestAlert();
    const ack = () =>
      app.request(`/v1/admin/alerts/${id}/ack`, jsonRequest('POST', undefined, admin));
    const res = await ack();
    expect(res.status).toBe(200);
    const acked = (await res.json()) as { status: string; ackedBy: string; ackedAt: string };
    expect(acked).toMatchObject({ status: 'acked', ackedBy: 'admin-tests' });
    expect(Number.isNaN(Date.parse(acked.ackedAt))).toBe(false);

    const again = await ack();
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ status: 'acked', ackedAt: acked.ackedAt });

    const audit = await db.sql`
      select actor, action from audit_log where target_type = 'alert' and target_id = ${String(id)}`;
    expect(audit).toEqual([{ actor: 'admin-tests', action: 'alert_ack' }]);

    const open = (await (await get('/v1/admin/alerts?status=open&limit=200')).json()) as {
      items: Array<{ id: number }>;
    };
    expect(open.items.map((i) => i.id)).not.toContain(id);
    const ackedList = (await (await get('/v1/admin/alerts?status=acked&limit=200')).json()) as {
      items: Array<{ id: number }>;
    };
    expect(ackedList.items.map((i) => i.id)).toContain(id);
  });

  it('a repeat of an acknowledged alert stays acknowledged and counts the occurrence', async () => {
    const { id } = await raiseTestAlert();
    await app.request(`/v1/admin/alerts/${id}/ack`, jsonRequest('POST', undefined, admin));
    const [row] = await db.sql<{ key: string }[]>`select key from alerts where id = ${id}`;
    const { raiseAlert } = await import('../src/alerts/alerts.js');
    await raiseAlert(db.sql, {
      key: row!.key,
      kind: 'refund_failed',
      severity: 'critical',
      message: 'again',
    });
    const [after] = await db.sql`select status, occurrences from alerts where id = ${id}`;
    expect(after).toEqual({ status: 'acked', occurrences: 2 });
  });

  it('404 for an unknown alert, 400 for a bad id, 403 for a customer', async () => {
    const missing = await app.request(
      '/v1/admin/alerts/999999999999/ack',
      jsonRequest('POST', undefined, admin),
    );
    expect(missing.status).toBe(404);
    const bad = await app.request(
      '/v1/admin/alerts/abc/ack',
      jsonRequest('POST', undefined, admin),
    );
    expect(bad.status).toBe(400);
    const customer = await createCustomer(db);
    const token = await customerToken(customer.id);
    expect((await get('/v1/admin/alerts', token)).status).toBe(403);
    const { id } = await raiseTestAlert();
    const refused = await app.request(
      `/v1/admin/alerts/${id}/ack`,
      jsonRequest('POST', undefined, token),
    );
    expect(refused.status).toBe(403);
    const [row] = await db.sql`select status from alerts where id = ${id}`;
    expect(row).toEqual({ status: 'open' });
  });
});
