// Factories and harness shared by integration tests: each test file gets its own task queue,
// customers and ids against the run's one PostgreSQL and one Temporal server.
import { Client, Connection } from '@temporalio/client';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { afterAll, beforeAll, expect, inject } from 'vitest';
import { mintToken, type Principal } from '../src/api/auth.js';
import { createApp, type AppDeps, type AppOptions } from '../src/api/app.js';
import { createActivities, type ActivityDeps, type Activities } from '../src/activities/index.js';
import { createDatabase, runMigrations, type Database } from '../src/db/client.js';
import { checkLedger } from '../src/ledger/check.js';
import { createLedger, type Ledger } from '../src/ledger/ledger.js';
import type { NewGrant } from '../src/ledger/grants.js';
import { processEnv } from '../src/config.js';
import { createAutoTopupDispatcher } from '../src/credits/auto-topup-dispatcher.js';
import { createLogger, type Logger } from '../src/logger.js';
import type { OutboxMetrics } from '../src/metrics.js';
import {
  createOutboxDispatcher,
  type DeliverMessage,
  type OutboxDispatcherDeps,
  type OutboxSettings,
} from '../src/notifications/dispatcher.js';
import { freePort } from '../src/stack/ports.js';
import { createWorker } from '../src/temporal.js';

const projectRoot = fileURLToPath(new URL('..', import.meta.url));
const workerEntry = fileURLToPath(new URL('../src/worker.ts', import.meta.url));

export const JWT_SECRET = 'test-secret-that-is-at-least-32-characters-long';
export const SMS_SECRET = 'test-sms-webhook-secret';

export function testDatabase(max = 10): Database {
  return createDatabase(inject('databaseUrl'), { max, applicationName: 'creditflow-test' });
}

/**
 * The run's database as its owner (superuser in tests): for set-up the app role may not do and
 * for tests that corrupt the ledger on purpose, always inside a rolled-back transaction.
 */
export function testOwnerDatabase(max = 2): Database {
  return createDatabase(inject('ownerDatabaseUrl'), {
    max,
    applicationName: 'creditflow-test-owner',
  });
}

/**
 * A freshly migrated database of the calling file's own, as its owner: for exact figures no other
 * test can move, and for corrupting the ledger on purpose. `drop` removes it.
 */
export async function scratchDatabase(
  prefix: string,
  /** `migrate: false` leaves it empty, as an operator's database before `npm run db:migrate`. */
  options: { max?: number; migrate?: boolean } = {},
): Promise<{ db: Database; url: string; drop: () => Promise<void> }> {
  const server = inject('ownerDatabaseUrl');
  const name = `creditflow_${prefix}_${randomBytes(5).toString('hex')}`;
  const run = async (statement: string) => {
    const sql = postgres(server, { max: 1, onnotice: () => undefined });
    try {
      await sql.unsafe(statement);
    } finally {
      await sql.end();
    }
  };
  await run(`create database ${name}`);
  const url = new URL(server);
  url.pathname = `/${name}`;
  if (options.migrate !== false) await runMigrations(url.toString());
  const db = createDatabase(url.toString(), {
    max: options.max ?? 2,
    applicationName: `creditflow-test-${prefix}`,
  });
  return {
    db,
    url: url.toString(),
    drop: async () => {
      await db.close();
      await run(`drop database if exists ${name} with (force)`);
    },
  };
}

export function uniqueId(prefix: string): string {
  return `${prefix}-${randomUUID()}`;
}

export interface TestCustomer {
  id: string;
  email: string;
  externalId: string | null;
}

/** Creates a customer with a wallet, straight in the database. */
export async function createCustomer(
  db: Database,
  overrides: Partial<Omit<TestCustomer, 'id'>> = {},
): Promise<TestCustomer> {
  const email = overrides.email ?? `${randomUUID()}@example.test`;
  const externalId = overrides.externalId ?? null;
  return db.sql.begin(async (tx) => {
    const [row] = await tx<{ id: string }[]>`
      insert into customers (email, external_id) values (${email}, ${externalId}) returning id`;
    await tx`insert into accounts (kind, customer_id, code) values ('wallet', ${row!.id}, 'wallet')`;
    return { id: row!.id, email, externalId };
  });
}

/** Puts credits in a wallet through the real posting function. */
export async function fund(ledger: Ledger, customerId: string, amount: number): Promise<void> {
  await ledger.postEntry({
    idempotencyKey: uniqueId('test-funding'),
    type: 'adjustment',
    description: 'Test funding',
    lines: [
      { account: { wallet: customerId }, amount },
      { account: { system: 'adjustments' }, amount: -amount },
    ],
  });
}

/**
 * Gives a wallet a starting balance beyond what postEntry takes in one line, the way a posting
 * would (entry, balances, postings in one transaction), against a scratch system account.
 */
export async function seedBalance(db: Database, customerId: string, amount: bigint): Promise<void> {
  const source = uniqueId('test_source');
  const text = amount.toString();
  await db.sql`insert into accounts (kind, code, shard) values ('system', ${source}, 0)`;
  await db.sql.begin(async (tx) => {
    const [entry] = await tx<{ id: string }[]>`
      insert into entries (idempotency_key, content_hash, type, description)
      values (${uniqueId('seed')}, 'seed', 'test_seed', 'large starting balance') returning id`;
    const [wallet] = await tx<{ id: string; balance: string }[]>`
      update accounts set balance = balance + ${text}::bigint where customer_id = ${customerId}
      returning id, balance`;
    const [system] = await tx<{ id: string; balance: string }[]>`
      update accounts set balance = balance - ${text}::bigint where code = ${source}
      returning id, balance`;
    await tx`insert into postings (entry_id, account_id, amount, balance_after)
             values (${entry!.id}, ${wallet!.id}, ${text}::bigint, ${wallet!.balance}),
                    (${entry!.id}, ${system!.id}, -${text}::bigint, ${system!.balance})`;
    const [grant] = await tx<{ id: string }[]>`
      insert into grants (customer_id, category, source, credits, remaining, entry_id, reason)
      values (${customerId}, 'paid', 'adjustment', ${text}::bigint, ${text}::bigint, ${entry!.id},
              'large starting balance') returning id`;
    await tx`insert into grant_postings (entry_id, grant_id, customer_id, amount, kind)
             values (${entry!.id}, ${grant!.id}, ${customerId}, ${text}::bigint, 'grant')`;
  });
}

/**
 * Credits `credits` to a wallet as one grant (an adjustment from the `adjustments` account) and
 * answers the grant's id; `grant` says its category, source, dates and priority.
 */
export async function postGrant(
  ledger: Ledger,
  customerId: string,
  credits: number,
  grant: Partial<NewGrant> = {},
): Promise<string> {
  const posted = await ledger.postEntry({
    idempotencyKey: uniqueId('grant'),
    type: 'adjustment',
    description: 'test grant',
    lines: [
      {
        account: { wallet: customerId },
        amount: credits,
        credit: { grant: { category: 'paid', source: 'adjustment', ...grant } },
      },
      { account: { system: 'adjustments' }, amount: -credits },
    ],
  });
  const created = posted.grants.filter((g) => g.kind === 'grant');
  if (created.length !== 1)
    throw new Error(`expected one grant, the entry created ${created.length}`);
  return created[0]!.grantId;
}

export async function expectLedgerConsistent(db: Database): Promise<void> {
  const report = await checkLedger(db.sql);
  expect(report.violations).toEqual([]);
}

export async function connectTestClient(): Promise<Client> {
  const connection = await Connection.connect({ address: inject('temporalAddress') });
  return new Client({ connection, namespace: inject('temporalNamespace') });
}

/**
 * The apps' logger in tests: quiet, since many tests provoke errors on purpose (flagged events,
 * Temporal down). TEST_LOG_LEVEL=error (or info) shows them.
 */
export const silentLogger = createLogger({ level: process.env['TEST_LOG_LEVEL'] ?? 'silent' });

/** Outbox settings for tests: quick polls and retries, the alert after three failed attempts. */
export const testOutboxSettings: OutboxSettings = {
  pollIntervalMs: 50,
  batchSize: 50,
  retryInitialMs: 100,
  retryMaxMs: 1000,
  alertAfterAttempts: 3,
  maxAttempts: 1000,
};

export interface TestOutboxOptions {
  settings?: Partial<OutboxSettings>;
  /** Replaces the delivery channel, e.g. with one that fails. */
  deliver?: DeliverMessage;
  /** The e-mail channel (e.g. mailpit's SMTP); off without it. */
  email?: OutboxDispatcherDeps['email'];
  logger?: Logger;
  metrics?: OutboxMetrics;
  /** Also runs the auto top-up dispatcher (as src/worker.ts does), starting runs through this client. */
  autoTopup?: { temporal: Client; retryAfterMs?: number };
}

/**
 * A worker on its own task queue, using the run's prebuilt workflow bundle, with the outbox
 * dispatcher that delivers the notifications its activities queue (as src/worker.ts runs it).
 */
export async function startTestWorker(
  db: Database,
  taskQueue: string,
  extra: Partial<Omit<ActivityDeps, 'db'>> = {},
  /** Replaces individual activities, e.g. with a flaky version of one. */
  overrides: Partial<Activities> = {},
  outbox: TestOutboxOptions = {},
) {
  const { worker, connection } = await createWorker({
    target: { address: inject('temporalAddress'), namespace: inject('temporalNamespace') },
    taskQueue,
    activities: { ...createActivities({ db, ...extra }), ...overrides },
    workflowBundle: { codePath: inject('workflowBundlePath') },
  });
  const dispatcher = createOutboxDispatcher({
    sql: db.sql,
    taskQueue,
    logger: outbox.logger ?? createLogger({ level: 'silent' }),
    metrics: outbox.metrics,
    settings: { ...testOutboxSettings, ...outbox.settings },
    deliver: outbox.deliver,
    email: outbox.email,
  });
  dispatcher.start();
  const autoTopups = outbox.autoTopup
    ? createAutoTopupDispatcher({
        sql: db.sql,
        temporal: outbox.autoTopup.temporal,
        taskQueue,
        logger: outbox.logger ?? createLogger({ level: 'silent' }),
        settings: {
          pollIntervalMs: 50,
          retryAfterMs: outbox.autoTopup.retryAfterMs ?? 500,
          batchSize: 50,
        },
      })
    : undefined;
  autoTopups?.start();
  const running = worker.run();
  return {
    worker,
    dispatcher,
    autoTopups,
    stop: async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await dispatcher.stop();
      await autoTopups?.stop();
      await connection.close();
    },
  };
}

/** Waits until the outbox holds nothing pending for the customer, then lists what they were told. */
export async function deliveredNotifications(db: Database, customerId: string) {
  await eventually(
    async () => {
      const [row] = await db.sql<{ pending: string }[]>`
        select count(*) as pending from notification_outbox
        where customer_id = ${customerId} and status = 'pending'`;
      return Number(row?.pending) === 0 ? true : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 50 },
  );
  return db.sql<
    {
      kind: string;
      title: string;
      body: string;
      amount: string | null;
      balance_after: string | null;
      data: Record<string, unknown>;
    }[]
  >`
    select kind, title, body, amount, balance_after, data from notifications
    where customer_id = ${customerId} order by id`;
}

/** What a route test file works against; filled in before its first test. */
export interface TestAppBench {
  db: Database;
  temporal: Client;
  app: ReturnType<typeof testApp>;
  taskQueue: string;
}

/**
 * Registers the set-up most route test files share: the file's own database pool, Temporal
 * client and app on a task queue of its own, closed after the file (with the ledger checked
 * when `checkLedger` is set).
 */
export function useTestApp(
  name: string,
  extra: Partial<AppDeps> = {},
  options: { checkLedger?: boolean } = {},
): TestAppBench {
  const bench = {} as TestAppBench;
  beforeAll(async () => {
    bench.db = testDatabase();
    bench.temporal = await connectTestClient();
    bench.taskQueue = uniqueId(name);
    bench.app = testApp(bench.db, bench.temporal, bench.taskQueue, extra);
  });
  afterAll(async () => {
    if (options.checkLedger && bench.db) await expectLedgerConsistent(bench.db);
    await bench.temporal?.connection.close();
    await bench.db?.close();
  });
  return bench;
}

/** The real app, wired to the run's database and Temporal, on the file's own task queue. */
export function testApp(
  db: Database,
  temporal: Client,
  taskQueue: string,
  extra: Partial<AppDeps> = {},
  options: AppOptions = {},
) {
  return createApp(
    {
      db,
      ledger: createLedger(db.sql),
      temporal,
      logger: silentLogger,
      jwtSecret: JWT_SECRET,
      taskQueue,
      smsWebhookSecret: SMS_SECRET,
      ...extra,
    },
    options,
  );
}

export function tokenFor(principal: Principal): Promise<string> {
  return mintToken(JWT_SECRET, principal);
}

export const adminToken = () => tokenFor({ sub: 'admin-tests', role: 'admin' });
export const customerToken = (customerId: string) =>
  tokenFor({ sub: customerId, role: 'customer' });

/** Polls until `check` returns a value (not undefined) or the deadline passes. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  { timeoutMs = 20_000, intervalMs = 100 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(
    `condition not met within ${timeoutMs} ms${lastError instanceof Error ? `: ${lastError.message}` : ''}`,
  );
}

/** JSON request helper for app.request. */
export function jsonRequest(
  method: string,
  body: unknown,
  token?: string,
  headers: Record<string, string> = {},
): RequestInit {
  return {
    method,
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  };
}

/** Worker processes this test file started that have not exited yet. */
const liveWorkers = new Set<ChildProcess>();
// A file that ends early (a timed-out test, a failed hook) must not leave its workers polling.
process.once('exit', () => {
  for (const child of liveWorkers) child.kill('SIGKILL');
});

/** src/worker.ts as its own OS process against the run's services, on `taskQueue`. */
function spawnWorker(taskQueue: string, extraEnv: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', workerEntry], {
    cwd: projectRoot,
    env: {
      ...processEnv(),
      DATABASE_URL: inject('databaseUrl'),
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_NAMESPACE: inject('temporalNamespace'),
      TEMPORAL_TASK_QUEUE: taskQueue,
      LOG_LEVEL: 'warn',
      // The shared test server must not get schedules whose sweeps touch other files' data.
      RECONCILIATION_SCHEDULES: 'false',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveWorkers.add(child);
  child.once('exit', () => liveWorkers.delete(child));
  return child;
}

/**
 * A worker in its own OS process (src/worker.ts), for chaos tests that SIGKILL it mid-flow. It runs
 * the run's prebuilt workflow bundle, so a start (and a restart after a kill) does not bundle again;
 * `bundleAtStart` makes it bundle src/workflows itself, as a worker under tsx does by default, and a
 * tracing worker (OTEL_EXPORTER_OTLP_ENDPOINT) always does, since that bundle differs.
 */
export async function spawnWorkerProcess(
  taskQueue: string,
  extraEnv: Record<string, string> = {},
  options: { bundleAtStart?: boolean } = {},
) {
  const metricsPort = await freePort();
  const prebuilt: Record<string, string> =
    options.bundleAtStart || extraEnv['OTEL_EXPORTER_OTLP_ENDPOINT'] !== undefined
      ? {}
      : { WORKFLOW_BUNDLE_PATH: inject('workflowBundlePath') };
  const child = spawnWorker(taskQueue, {
    WORKER_METRICS_PORT: String(metricsPort),
    OUTBOX_POLL_INTERVAL_MS: '100',
    ...prebuilt,
    ...extraEnv,
  });
  const output: string[] = [];
  child.stdout.on('data', (d: Buffer) => output.push(d.toString()));
  child.stderr.on('data', (d: Buffer) => output.push(d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Ready once it serves metrics, which it does just before polling.
  await eventually(
    async () => {
      if (child.exitCode !== null) throw new Error(`worker exited early:\n${output.join('')}`);
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).catch(() => undefined);
      return res?.ok ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  ).catch((err: unknown) => {
    if (child.exitCode === null) child.kill('SIGKILL');
    throw err;
  });
  return {
    pid: child.pid,
    output,
    /** The worker's own /metrics (WORKER_METRICS_PORT). */
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    /** Settles when the process has exited, with its exit code. */
    exited: exited.then(() => child.exitCode),
    /** SIGKILL: no drain, no cleanup, exactly like a crashed host. */
    kill: async () => {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * src/worker.ts run as its own process against the run's services, until it exits (a worker that
 * must refuse to start) or `stop()`; `extraEnv` overrides the environment (namespace, database…).
 */
export function runWorkerProcess(extraEnv: Record<string, string> = {}) {
  const child = spawnWorker(uniqueId('refused'), extraEnv);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('exit', (code) => resolve({ code, stdout, stderr })),
  );
  return {
    exited,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
