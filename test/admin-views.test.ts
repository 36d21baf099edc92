// The operator's views. Health and consistency are checked exactly on a database of this file's
// own (read models written with chosen times, a customer corrupted on purpose, the monitor's
// figures); a real workflow run is checked on the shared database by this file's own customers.
import type { Client } from '@temporalio/client';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/api/app.js';
import type { Database } from '../src/db/client.js';
import { createLedger, type Ledger } from '../src/ledger/ledger.js';
import { workflowIds } from '../src/shared.js';
import {
  adminToken,
  connectTestClient,
  createCustomer,
  customerToken,
  eventually,
  expectLedgerConsistent,
  fund,
  jsonRequest,
  scratchDatabase,
  startTestWorker,
  testApp,
  testDatabase,
  uniqueId,
  type TestCustomer,
} from './helpers.js';

let shared: Database;
let sharedLedger: Ledger;
let sharedApp: App;
let own: Database;
let ownLedger: Ledger;
let ownApp: App;
let dropOwn: () => Promise<void>;
let temporal: Client;
let admin: string;
let worker: Awaited<ReturnType<typeof startTestWorker>>;

const hex = () => randomBytes(8).toString('hex');

beforeAll(async () => {
  const scratch = await scratchDatabase('admin', { max: 4 });
  own = scratch.db;
  dropOwn = scratch.drop;
  ownLedger = createLedger(own.sql);

  shared = testDatabase();
  sharedLedger = createLedger(shared.sql);
  temporal = await connectTestClient();
  const taskQueue = uniqueId('admin-views');
  worker = await startTestWorker(shared, taskQueue);
  sharedApp = testApp(shared, temporal, taskQueue);
  ownApp = testApp(own, temporal, uniqueId('admin-views-own'));
  admin = await adminToken();
});

afterAll(async () => {
  await worker?.stop();
  if (shared) await expectLedgerConsistent(shared);
  await temporal?.connection.close();
  await shared?.close();
  await dropOwn?.();
});

interface WindowStats {
  started: number;
  completed: number;
  failed: number;
  refunded: number | null;
  running: number;
  avgDurationSeconds: number | null;
  p95DurationSeconds: number | null;
}

/** The parts of the admin views' bodies this file reads. */
interface Body {
  error: { code: string };
  workflows: Record<
    'adjustment' | 'verificationPurchase' | 'order' | 'checkout' | 'refund' | 'reconciliation',
    { hour: WindowStats; day: WindowStats }
  >;
  alerts: { open: Record<string, number>; newest: Array<{ kind: string }> };
  lastReconciliation: { finishedAt: string | null } | null;
  window: { minutes: number };
  byType: Array<{ type: string; count: number }>;
  recent: Array<{
    id: number;
    type: string;
    customerId: string;
    amount: number;
    workflowId: string | null;
  }>;
  uniqueCustomers: number;
  consistent: boolean;
  problems: Array<{ code: string }>;
  wallet: { byType: unknown[] };
  debts: unknown;
  [figure: string]: unknown;
}

const get = async (app: App, url: string, token = admin) => {
  const res = await app.request(url, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Body };
};

/** Seconds ago, as SQL. */
const ago = (seconds: number) => own.sql`now() - make_interval(secs => ${seconds})`;

describe('GET /v1/admin/health', () => {
  it('counts each workflow type for the hour and the day, with average and p95 durations', async () => {
    const c = await createCustomer(own);
    const verification = async (status: string, startedAgo: number, took: number) => {
      const id = `ver_${hex()}`;
      await own.sql`
        insert into verifications (id, workflow_id, customer_id, service, country, price,
                                   timeout_seconds, status, created_at, updated_at)
        values (${id}, ${workflowIds.verification(id)}, ${c.id}, 'whatsapp', 'US', 10, 60,
                ${status}, ${ago(startedAgo)}, ${ago(startedAgo - took)})`;
    };
    // In the last hour: completed in 10, 20, 30 s; refunded after 40 s; one still running.
    await verification('completed', 600, 10);
    await verification('completed', 600, 20);
    await verification('completed', 600, 30);
    await verification('refunded', 600, 40);
    await verification('active', 60, 0);
    // Earlier today: one failed in 100 s. Two days ago: outside both windows.
    await verification('failed', 3 * 3600, 100);
    await verification('completed', 2 * 86400, 5);

    const orderId = `ord_${hex()}`;
    await own.sql`
      insert into orders (id, workflow_id, buyer_id, item_ids, status, charged, refunded,
                          created_at, updated_at)
      values (${orderId}, ${workflowIds.order(orderId)}, ${c.id}, ${[]}::uuid[],
              'partially_completed', 30, 10, ${ago(120)}, ${ago(118)})`;

    // A checkout credited 4 s after it started (the top-up entry's time), one that expired.
    const credited = `pay_${hex()}`;
    await own.sql`
      insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status,
                            created_at, updated_at)
      values (${credited}, ${workflowIds.checkout(credited)}, ${c.id}, 'small', 100, 500, 'eur',
              'init', now() - interval '4 seconds', now())`;
    const topup = await ownLedger.postEntry({
      idempotencyKey: `${credited}:credit`,
      type: 'topup',
      description: 'top-up',
      metadata: { paymentId: credited },
      lines: [
        { account: { system: 'stripe_clearing' }, amount: -100 },
        { account: { wallet: c.id }, amount: 100 },
      ],
    });
    await own.sql`
      update payments set status = 'credited', topup_entry_id = ${topup.entryId},
             refunded_credits = 40, status_before_dispute = null
      where id = ${credited}`;
    const expired = `pay_${hex()}`;
    await own.sql`
      insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status,
                            created_at, updated_at)
      values (${expired}, ${workflowIds.checkout(expired)}, ${c.id}, 'small', 100, 500, 'eur',
              'expired', ${ago(7200)}, ${ago(5400)})`;

    await own.sql`
      insert into adjustments (id, workflow_id, customer_id, amount, reason, requested_by, status)
      values (${`adj_${hex()}`}, ${uniqueId('adjustment')}, ${c.id}, 5, 'x', 'admin', 'completed'),
             (${`adj_${hex()}`}, ${uniqueId('adjustment')}, ${c.id}, -5, 'x', 'admin', 'rejected')`;

    await own.sql`
      insert into refunds (id, workflow_id, kind, customer_id, payment_id, credits, reason,
                           requested_by, status, created_at, updated_at)
      values (${`ref_${hex()}`}, ${uniqueId('refund')}, 'topup', ${c.id}, ${credited}, 40,
              'asked', 'admin', 'refunded', ${ago(30)}, ${ago(25)}),
             (${`ref_${hex()}`}, ${uniqueId('refund')}, 'topup', ${c.id}, ${credited}, 10,
              'asked', 'admin', 'processing', ${ago(5)}, ${ago(5)})`;

    const run = `rec_${hex()}`;
    await own.sql`
      insert into reconciliation_runs (id, workflow_id, trigger, window_from, window_to, status,
                                       matched, findings_count, started_at, finished_at)
      values (${`rec_old_${hex()}`}, ${uniqueId('reconciliation')}, 'schedule', ${ago(90000)},
              ${ago(86400)}, 'completed', 3, 0, ${ago(89000)}, ${ago(88990)}),
             (${run}, ${uniqueId('reconciliation')}, 'sweep', ${ago(1000)}, ${ago(100)},
              'completed', 12, 2, ${ago(90)}, ${ago(60)})`;

    await own.sql`
      insert into alerts (key, kind, severity, message, status)
      values (${uniqueId('a')}, 'canary_late', 'critical', 'late', 'open'),
             (${uniqueId('a')}, 'large_deduction', 'warning', 'big', 'open'),
             (${uniqueId('a')}, 'customer_velocity', 'warning', 'fast', 'open'),
             (${uniqueId('a')}, 'refund_failed', 'critical', 'acked one', 'acked')`;

    const { status, body } = await get(ownApp, '/v1/admin/health');
    expect(status).toBe(200);
    const w = body.workflows;
    expect(w.verificationPurchase.hour).toEqual({
      started: 5,
      completed: 3,
      failed: 1,
      refunded: 1,
      running: 1,
      avgDurationSeconds: 25,
      // percentile_cont(0.95) over 10, 20, 30, 40: 30 + 0.85 × 10.
      p95DurationSeconds: 38.5,
    });
    expect(w.verificationPurchase.day).toMatchObject({
      started: 6,
      completed: 3,
      failed: 2,
      refunded: 1,
      running: 1,
      avgDurationSeconds: 40,
    });
    expect(w.order.hour).toMatchObject({
      started: 1,
      completed: 1,
      failed: 0,
      refunded: 1,
      avgDurationSeconds: 2,
    });
    expect(w.checkout.hour).toMatchObject({ started: 1, completed: 1, failed: 0, refunded: 1 });
    expect(w.checkout.hour.avgDurationSeconds).toBeGreaterThanOrEqual(3.9);
    expect(w.checkout.hour.avgDurationSeconds).toBeLessThan(6);
    expect(w.checkout.day).toMatchObject({ started: 2, completed: 1, failed: 1, refunded: 1 });
    expect(w.adjustment.hour).toEqual({
      started: 2,
      completed: 1,
      failed: 1,
      refunded: 0,
      running: 0,
      avgDurationSeconds: null,
      p95DurationSeconds: null,
    });
    expect(w.refund.hour).toEqual({
      started: 2,
      completed: 1,
      failed: 0,
      refunded: null,
      running: 1,
      avgDurationSeconds: 5,
      p95DurationSeconds: 5,
    });
    expect(w.reconciliation.hour).toMatchObject({ started: 1, completed: 1, refunded: null });
    expect(w.reconciliation.hour.avgDurationSeconds).toBe(30);
    expect(w.reconciliation.day.started).toBe(1);

    expect(body.alerts.open).toEqual({ total: 3, warning: 2, critical: 1 });
    expect(body.alerts.newest.map((a) => a.kind)).toEqual([
      'customer_velocity',
      'large_deduction',
      'canary_late',
    ]);
    expect(body.lastReconciliation).toMatchObject({
      id: run,
      status: 'completed',
      trigger: 'sweep',
      matched: 12,
      findingsCount: 2,
    });
    expect(typeof body.lastReconciliation?.finishedAt).toBe('string');
  });

  it('a workflow run on the shared database shows in the hour', async () => {
    const before = await get(sharedApp, '/v1/admin/health');
    expect(before.status).toBe(200);
    const customer = await createCustomer(shared);
    const res = await sharedApp.request(
      '/v1/admin/adjustments',
      jsonRequest('POST', { customerId: customer.id, amount: 25, reason: 'health test' }, admin, {
        'idempotency-key': uniqueId('health'),
      }),
    );
    expect(res.status).toBe(202);
    await eventually(async () => {
      const [row] = await shared.sql`
        select 1 from adjustments where customer_id = ${customer.id} and status = 'completed'`;
      return row ? true : undefined;
    });
    const after = await get(sharedApp, '/v1/admin/health');
    const was = before.body.workflows.adjustment.hour;
    const now = after.body.workflows.adjustment.hour;
    expect(now.started).toBeGreaterThanOrEqual(was.started + 1);
    expect(now.completed).toBeGreaterThanOrEqual(was.completed + 1);
    expect(Object.keys(after.body.workflows)).toEqual([
      'adjustment',
      'verificationPurchase',
      'order',
      'checkout',
      'refund',
      'reconciliation',
    ]);
  });

  it('no reconciliation yet: lastReconciliation is null', async () => {
    // A database of its own with nothing in it.
    await own.sql.begin(async (tx) => {
      await tx`delete from reconciliation_findings`;
      await tx`delete from reconciliation_runs`;
    });
    const { body } = await get(ownApp, '/v1/admin/health');
    expect(body.lastReconciliation).toBeNull();
  });
});

describe('GET /v1/admin/monitor', () => {
  it('sums this test’s own postings into the window’s figures', async () => {
    // On this file's own database: no other test posts there while this one runs.
    const before = await get(ownApp, '/v1/admin/monitor?minutes=10080');
    expect(before.status).toBe(200);
    const a = await createCustomer(own);
    const b = await createCustomer(own);
    const marker = `monitor_test_${hex()}`;
    await fund(ownLedger, a.id, 300);
    await fund(ownLedger, b.id, 200);
    const post = (customerId: string, type: string, amount: number) =>
      ownLedger.postEntry({
        idempotencyKey: uniqueId('monitor'),
        type,
        description: type,
        lines: [
          { account: { wallet: customerId }, amount },
          { account: { system: 'revenue' }, amount: -amount },
        ],
      });
    await post(a.id, 'verification_purchase', -40);
    await post(b.id, 'order_purchase', -60);
    await post(a.id, 'verification_refund', 40);
    await post(b.id, 'refund_clawback', -25);
    await post(a.id, marker, 7);
    const last = await post(b.id, marker, -3);

    const after = await get(ownApp, '/v1/admin/monitor?minutes=10080');
    expect(after.status).toBe(200);
    const delta = (k: string) => Number(after.body[k]) - Number(before.body[k]);
    expect(delta('transactions')).toBe(8);
    expect(delta('creditsAdded')).toBe(300 + 200 + 40 + 7);
    expect(delta('spent')).toBe(100);
    expect(delta('refunded')).toBe(40);
    expect(delta('clawedBack')).toBe(25);
    expect(after.body.uniqueCustomers).toBeGreaterThanOrEqual(2);
    expect(after.body.window.minutes).toBe(10080);
    expect(after.body.byType).toContainEqual({ type: marker, count: 2 });

    const recent = after.body.recent;
    expect(recent.length).toBeLessThanOrEqual(20);
    expect(recent.map((r) => r.id)).toEqual([...recent.map((r) => r.id)].sort((x, y) => y - x));
    expect(recent.find((r) => r.id === last.entryId)).toMatchObject({
      type: marker,
      customerId: b.id,
      amount: -3,
    });
  });

  it('narrows to one customer: their wallet’s figures and only the entries that moved it', async () => {
    const a = await createCustomer(own);
    const b = await createCustomer(own);
    await fund(ownLedger, a.id, 90);
    await fund(ownLedger, b.id, 70);
    const workflowId = `verification-ver_${hex()}`;
    await ownLedger.postEntry({
      idempotencyKey: uniqueId('monitor-one'),
      type: 'verification_purchase',
      description: 'one customer',
      workflowId,
      lines: [
        { account: { wallet: a.id }, amount: -15 },
        { account: { system: 'revenue' }, amount: 15 },
      ],
    });
    const res = await get(ownApp, `/v1/admin/monitor?minutes=60&customerId=${a.id}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      transactions: 2,
      creditsAdded: 90,
      spent: 15,
      uniqueCustomers: 1,
    });
    expect(res.body.recent.map((r) => [r.type, r.customerId, r.amount])).toEqual([
      ['verification_purchase', a.id, -15],
      ['adjustment', a.id, 90],
    ]);
    // Each entry names the workflow that posted it (none for a direct posting).
    expect(res.body.recent.map((r) => r.workflowId)).toEqual([workflowId, null]);
    const bad = await get(ownApp, '/v1/admin/monitor?customerId=not-a-customer');
    expect(bad.status).toBe(400);
  });

  it('refuses windows outside 1..10080 minutes', async () => {
    for (const q of ['0', '10081', '-5', 'abc', '1.5']) {
      const res = await get(sharedApp, `/v1/admin/monitor?minutes=${q}`);
      expect(res.status, q).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    const fine = await get(sharedApp, '/v1/admin/monitor?minutes=10080');
    expect(fine.status).toBe(200);
    const dflt = await get(sharedApp, '/v1/admin/monitor');
    expect(dflt.body.window.minutes).toBe(60);
  });
});

describe('GET /v1/admin/customers/:ref/consistency', () => {
  async function customerWithTopup(
    db: Database,
    ledger: Ledger,
  ): Promise<TestCustomer & { paymentId: string }> {
    const c = await createCustomer(db, { externalId: uniqueId('ext') });
    const paymentId = `pay_${hex()}`;
    await db.sql`
      insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status)
      values (${paymentId}, ${workflowIds.checkout(paymentId)}, ${c.id}, 'small', 100, 500, 'eur', 'init')`;
    const entry = await ledger.postEntry({
      idempotencyKey: `${paymentId}:credit`,
      type: 'topup',
      description: 'top-up',
      metadata: { paymentId },
      lines: [
        { account: { system: 'stripe_clearing' }, amount: -100 },
        { account: { wallet: c.id }, amount: 100 },
      ],
    });
    await db.sql`
      update payments set status = 'credited', topup_entry_id = ${entry.entryId} where id = ${paymentId}`;
    await ledger.postEntry({
      idempotencyKey: uniqueId('spend'),
      type: 'verification_purchase',
      description: 'spend',
      lines: [
        { account: { wallet: c.id }, amount: -30 },
        { account: { system: 'revenue' }, amount: 30 },
      ],
    });
    return { ...c, paymentId };
  }

  const refundRow = (
    db: Database,
    c: { id: string; paymentId: string },
    status: string,
    credits: number,
  ) =>
    db.sql`
      insert into refunds (id, workflow_id, kind, customer_id, payment_id, credits, reason,
                           requested_by, status)
      values (${`ref_${hex()}`}, ${uniqueId('refund')}, 'topup', ${c.id}, ${c.paymentId},
              ${credits}, 'test', 'admin', ${status})`;

  it('a clean customer is consistent, found by id, e-mail or external id', async () => {
    const c = await customerWithTopup(shared, sharedLedger);
    // A settled refund that took 10 credits, and one that failed (re-credited: nothing taken).
    await sharedLedger.postEntry({
      idempotencyKey: uniqueId('clawback'),
      type: 'refund_clawback',
      description: 'refund',
      metadata: { paymentId: c.paymentId },
      lines: [
        { account: { wallet: c.id }, amount: -10 },
        { account: { system: 'refunds' }, amount: 10 },
      ],
    });
    await shared.sql`
      update payments set status = 'partially_refunded', refunded_credits = 10, refunded_amount = 50
      where id = ${c.paymentId}`;
    await refundRow(shared, c, 'refunded', 10);
    await refundRow(shared, c, 'failed', 5);
    for (const ref of [c.id, c.email.toUpperCase(), c.externalId!]) {
      const { status, body } = await get(
        sharedApp,
        `/v1/admin/customers/${encodeURIComponent(ref)}/consistency`,
      );
      expect(status, ref).toBe(200);
      expect(body).toMatchObject({
        customerId: c.id,
        consistent: true,
        problems: [],
        wallet: { cachedBalance: 60, postingsSum: 60, lastBalanceAfter: 60, postings: 3 },
        payments: { count: 1, creditedCredits: 100, refundedCredits: 10 },
        refunds: { byStatus: { refunded: 1, failed: 1 }, refundedCreditsByKind: { topup: 10 } },
        debts: { open: 0, openCredits: 0 },
        disputes: { open: 0, heldCredits: 0 },
        grants: { count: 1, open: 1, remaining: 60, sharesSum: 60, byCategory: { paid: 60 } },
      });
      expect(body.wallet.byType).toEqual(
        expect.arrayContaining([
          { type: 'topup', entries: 1, net: 100 },
          { type: 'verification_purchase', entries: 1, net: -30 },
          { type: 'refund_clawback', entries: 1, net: -10 },
        ]),
      );
      expect(body.wallet.byType).toHaveLength(3);
    }
  });

  it('a corrupted customer is reported with each problem', async () => {
    const c = await customerWithTopup(own, ownLedger);
    const orphan = `pay_${hex()}`;
    await own.sql.begin(async (tx) => {
      // As the owner, with the ledger's guards off: a database no other test uses.
      await tx`set local session_replication_role = replica`;
      await tx`update accounts set balance = balance + 5 where customer_id = ${c.id}`;
      await tx`
        insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status)
        values (${orphan}, ${workflowIds.checkout(orphan)}, ${c.id}, 'small', 100, 500, 'eur', 'credited')`;
      // A refund that says it took 20 credits the payment does not record.
      await refundRow(own, c, 'refunded', 20);
      await tx`
        insert into customer_debts (customer_id, source, credits, settled_credits)
        values (${c.id}, ${uniqueId('debt')}, 12, 2)`;
    });
    const { status, body } = await get(ownApp, `/v1/admin/customers/${c.id}/consistency`);
    expect(status).toBe(200);
    expect(body.consistent).toBe(false);
    expect(body.problems.map((p) => p.code).sort()).toEqual([
      'balance_after_mismatch',
      'cached_balance_mismatch',
      'payment_not_credited',
      'refunds_mismatch',
      'wallet_grants_mismatch',
    ]);
    expect(body.wallet).toMatchObject({ cachedBalance: 75, postingsSum: 70, lastBalanceAfter: 70 });
    expect(body.debts).toEqual({ open: 1, openCredits: 10 });
    expect(body.grants).toMatchObject({ remaining: 70, sharesSum: 70 });
  });

  it("reports a grant that disagrees with its shares, and a closed grant's breakage", async () => {
    const c = await customerWithTopup(own, ownLedger);
    const [grant] = await own.sql<{ id: string }[]>`
      select id from grants where customer_id = ${c.id}`;
    await ownLedger.postEntry({
      idempotencyKey: uniqueId('promo'),
      type: 'adjustment',
      description: 'promotion',
      lines: [
        { account: { system: 'adjustments' }, amount: -15 },
        {
          account: { wallet: c.id },
          amount: 15,
          credit: {
            grant: {
              category: 'promotional',
              source: 'promotion',
              expiresAt: new Date(Date.now() + 3_600_000),
            },
          },
        },
      ],
    });
    const [promo] = await own.sql<{ id: string }[]>`
      select id from grants where customer_id = ${c.id} and category = 'promotional'`;
    await ownLedger.closeGrant({ grantId: promo!.id, kind: 'void', reason: 'sent by mistake' });
    const clean = await get(ownApp, `/v1/admin/customers/${c.id}/consistency`);
    expect(clean.body).toMatchObject({
      consistent: true,
      grants: {
        count: 2,
        open: 1,
        remaining: 70,
        byCategory: { paid: 70, promotional: 0 },
        broken: 15,
      },
    });
    await own.sql.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      await tx`update grants set remaining = remaining - 1 where id = ${grant!.id}`;
    });
    const { body } = await get(ownApp, `/v1/admin/customers/${c.id}/consistency`);
    expect(body.problems.map((p) => p.code).sort()).toEqual([
      'grant_remaining_mismatch',
      'wallet_grants_mismatch',
    ]);
  });

  it('404 for nobody, 400 for a placeholder', async () => {
    expect(
      (await get(sharedApp, '/v1/admin/customers/00000000-0000-4000-8000-000000000000/consistency'))
        .status,
    ).toBe(404);
    expect(
      (await get(sharedApp, `/v1/admin/customers/${uniqueId('no')}@x.test/consistency`)).status,
    ).toBe(404);
    expect((await get(sharedApp, '/v1/admin/customers/%3Cemail%3E/consistency')).status).toBe(400);
  });
});

describe('customers never see the admin views', () => {
  it('every admin route answers 403 to a customer token and changes nothing', async () => {
    const c = await createCustomer(shared, { externalId: uniqueId('ext') });
    const token = await customerToken(c.id);
    for (const url of [
      '/v1/admin/health',
      '/v1/admin/monitor?minutes=10080',
      `/v1/admin/customers/${c.id}/consistency`,
      '/v1/admin/alerts?status=open',
    ]) {
      expect((await get(sharedApp, url, token)).status, url).toBe(403);
    }
    const anonymise = await sharedApp.request(
      `/v1/admin/customers/${c.id}/anonymise`,
      jsonRequest('POST', { reason: 'my own data' }, token),
    );
    expect(anonymise.status).toBe(403);
    const [row] = await shared.sql`select email, anonymised_at from customers where id = ${c.id}`;
    expect(row).toEqual({ email: c.email, anonymised_at: null });
  });
});
