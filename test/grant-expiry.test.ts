// Grant expiry: on time through the grant workflow's timer, exactly once however often it is asked
// (a second close, the activity run twice, a worker killed at the timer), and by the
// reconciliation backstop when no timer closed it.
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../src/activities/index.js';
import { createReconciliationActivities } from '../src/activities/reconciliation/index.js';
import { createLedger, type Ledger } from '../src/ledger/ledger.js';
import { workflowIds } from '../src/shared.js';
import {
  adminToken,
  createCustomer,
  deliveredNotifications,
  eventually,
  expectLedgerConsistent,
  jsonRequest,
  spawnWorkerProcess,
  startTestWorker,
  testApp,
  uniqueId,
  useTestApp,
} from './helpers.js';
import { keepHistory } from './history-recorder.js';
import { RecordingLogger } from './recording-logger.js';

const bench = useTestApp('grant-expiry', {}, { checkLedger: true });
let ledger: Ledger;
let admin: string;
let worker: Awaited<ReturnType<typeof startTestWorker>>;

beforeAll(async () => {
  ledger = createLedger(bench.db.sql);
  admin = await adminToken();
  worker = await startTestWorker(bench.db, bench.taskQueue, {
    temporal: bench.temporal,
    taskQueue: bench.taskQueue,
  });
});

afterAll(async () => {
  await worker?.stop();
});

interface GrantView {
  id: string;
  workflowId: string;
  status: string;
  remaining: number | null;
  history?: Array<{ kind: string; amount: number }>;
}

async function createGrant(
  app: ReturnType<typeof testApp>,
  body: Record<string, unknown>,
): Promise<GrantView> {
  const res = await app.request(
    '/v1/admin/grants',
    jsonRequest('POST', body, admin, { 'idempotency-key': uniqueId('expiring') }),
  );
  expect(res.status).toBe(202);
  return (await res.json()) as GrantView;
}

function waitForGrant(app: ReturnType<typeof testApp>, id: string, status: string) {
  return eventually(async () => {
    const res = await app.request(`/v1/admin/grants/${id}`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    const grant = (await res.json()) as GrantView;
    return grant.status === status ? grant : undefined;
  });
}

async function expiryEntries(grantId: string) {
  return bench.db.sql<{ type: string; amount: string }[]>`
    select e.type, p.amount from entries e
    join postings p on p.entry_id = e.id
    join accounts a on a.id = p.account_id and a.kind = 'system' and a.code = 'breakage'
    where e.idempotency_key = ${`grant-expiry:${grantId}`}`;
}

/** Until the database clock is past the grant's expiresAt (no timing asserted). */
function pastExpiry(grantId: string) {
  return eventually(
    async () => {
      const [row] = await bench.db.sql<{ past: boolean }[]>`
        select expires_at < now() - interval '500 milliseconds' as past from grants
        where id = ${grantId}`;
      return row?.past ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
}

describe('grant expiry', () => {
  it('expires what is left at expiresAt, tells the customer once, and a repeat moves nothing', async () => {
    const customer = await createCustomer(bench.db);
    const started = await createGrant(bench.app, {
      customerId: customer.id,
      credits: 40,
      category: 'promotional',
      expiresAt: new Date(Date.now() + 3_000).toISOString(),
      reason: 'short promo',
    });
    await waitForGrant(bench.app, started.id, 'open');
    await ledger.postEntry({
      idempotencyKey: uniqueId('spend'),
      type: 'purchase',
      description: 'test purchase',
      lines: [
        { account: { wallet: customer.id }, amount: -15 },
        { account: { system: 'revenue' }, amount: 15 },
      ],
    });

    const expired = await waitForGrant(bench.app, started.id, 'expired');
    expect(expired.remaining).toBe(0);
    expect(expired.history?.map((h) => [h.kind, h.amount])).toEqual([
      ['grant', 40],
      ['draw', -15],
      ['expiry', -25],
    ]);
    expect(await bench.temporal.workflow.getHandle(started.workflowId).result()).toMatchObject({
      status: 'expired',
      closedCredits: 25,
    });
    await keepHistory(bench.temporal, 'grant-expired', started.workflowId);

    // Asked again, by the ledger and by the activity run twice: nothing moves.
    const again = await ledger.closeGrant({ grantId: started.id, kind: 'expiry' });
    expect(again).toMatchObject({ closedNow: false, credits: 0, status: 'expired' });
    const activities = createActivities({ db: bench.db });
    const env = new MockActivityEnvironment(
      { taskQueue: bench.taskQueue },
      { logger: new RecordingLogger() },
    );
    for (let i = 0; i < 2; i++) {
      const result = await env.run((input) => activities.expireGrant(input), {
        grantId: started.id,
        workflowId: started.workflowId,
      });
      expect(result).toMatchObject({ closedNow: false, credits: 0, status: 'expired' });
    }

    expect(await expiryEntries(started.id)).toEqual([{ type: 'grant_expiry', amount: '25' }]);
    expect(await ledger.walletBalance(customer.id)).toBe(0);
    const told = await deliveredNotifications(bench.db, customer.id);
    expect(told.filter((n) => n.kind === 'credits_expired')).toEqual([
      expect.objectContaining({ title: 'Credits expired', amount: '25', balance_after: '0' }),
    ]);
    await expectLedgerConsistent(bench.db);
  });

  it('a worker killed while the workflow waits at the timer: the next worker expires it once', async () => {
    const taskQueue = uniqueId('grant-expiry-kill');
    const app = testApp(bench.db, bench.temporal, taskQueue);
    const doomed = await spawnWorkerProcess(taskQueue);
    let next: Awaited<ReturnType<typeof startTestWorker>> | undefined;
    try {
      const customer = await createCustomer(bench.db);
      const started = await createGrant(app, {
        customerId: customer.id,
        credits: 10,
        category: 'paid',
        expiresAt: new Date(Date.now() + 4_000).toISOString(),
        reason: 'expires while no worker runs',
      });
      await waitForGrant(app, started.id, 'open');
      const handle = bench.temporal.workflow.getHandle(started.workflowId);
      expect((await handle.describe()).status.name).toBe('RUNNING');
      await doomed.kill();

      // The timer fires with no worker to act on it: the grant is still open past its expiry.
      await pastExpiry(started.id);
      const [still] = await bench.db.sql<{ status: string }[]>`
        select status from grants where id = ${started.id}`;
      expect(still).toEqual({ status: 'open' });

      next = await startTestWorker(bench.db, taskQueue);
      expect(await handle.result()).toMatchObject({ status: 'expired', closedCredits: 10 });
      expect(await expiryEntries(started.id)).toEqual([{ type: 'grant_expiry', amount: '10' }]);
      const told = await deliveredNotifications(bench.db, customer.id);
      expect(told.filter((n) => n.kind === 'credits_expired')).toHaveLength(1);
    } finally {
      await doomed.kill();
      await next?.stop();
    }
  });

  it('the reconciliation backstop expires a grant no timer closed, once, and leaves fresh ones', async () => {
    const customer = await createCustomer(bench.db);
    // Grants with an expiry but no grant workflow: nothing but the backstop will close them.
    const post = (credits: number) =>
      ledger.postEntry({
        idempotencyKey: uniqueId('unwatched'),
        type: 'grant',
        description: 'grant nobody watches',
        lines: [
          {
            account: { wallet: customer.id },
            amount: credits,
            credit: {
              grant: {
                category: 'promotional',
                source: 'promotion',
                expiresAt: new Date(Date.now() + 1_000).toISOString(),
              },
            },
          },
          { account: { system: 'adjustments' }, amount: -credits },
        ],
      });
    const overdue = (await post(7)).grants[0]!.grantId;
    await pastExpiry(overdue);
    const fresh = (await post(3)).grants[0]!.grantId;

    const env = new MockActivityEnvironment(
      { taskQueue: bench.taskQueue },
      { logger: new RecordingLogger() },
    );
    const sweep = async (grantExpiryGraceMs: number, onlyGrant: string) => {
      const runId = uniqueId('rec-grants');
      const activities = createReconciliationActivities({
        db: bench.db,
        ledger,
        grantExpiryGraceMs,
      });
      const now = new Date();
      const window = {
        from: new Date(now.getTime() - 3_600_000).toISOString(),
        to: now.toISOString(),
      };
      await env.run((input) => activities.beginReconciliationRun(input), {
        runId,
        workflowId: workflowIds.reconciliation(runId),
        trigger: 'manual',
        ...window,
      });
      await env.run((input) => activities.reconcileFlows(input), {
        runId,
        customerIds: [customer.id],
        ...window,
      });
      return bench.db.sql<{ kind: string; action: string; amount: string }[]>`
        select kind, action, amount from reconciliation_findings
        where run_id = ${runId} and refs->>'grantId' = ${onlyGrant}`;
    };

    expect(await sweep(0, overdue)).toEqual([
      { kind: 'grant_expiry_overdue', action: 'repaired', amount: '7' },
    ]);
    expect(await expiryEntries(overdue)).toEqual([{ type: 'grant_expiry', amount: '7' }]);
    // A later run finds nothing: the grant is closed.
    expect(await sweep(0, overdue)).toEqual([]);
    expect(await expiryEntries(overdue)).toHaveLength(1);

    // Within the grace period a grant is left to its timer.
    await pastExpiry(fresh);
    expect(await sweep(10 * 60_000, fresh)).toEqual([]);
    const [open] = await bench.db.sql`select status from grants where id = ${fresh}`;
    expect(open).toEqual({ status: 'open' });
    await ledger.closeGrant({ grantId: fresh, kind: 'void', reason: 'test clean-up' });

    const told = await deliveredNotifications(bench.db, customer.id);
    expect(told.filter((n) => n.kind === 'credits_expired')).toEqual([
      expect.objectContaining({ amount: '7' }),
    ]);
    await expectLedgerConsistent(bench.db);
  });
});
