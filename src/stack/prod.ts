// The production topology on one machine: PostgreSQL, stripe-mock, the Temporal server on
// PostgreSQL, and several workers and API processes, each its own OS process running the compiled
// entry points (dist/) on plain node. `npm run stack:prod` and the tests that kill processes run it.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import postgres from 'postgres';
import { runMigrations } from '../db/client.js';
import { projectRoot } from '../paths.js';
import { freePort } from './ports.js';
import { LOCAL_POSTGRES_URL, assertReachable, dropLogin, ensureAppLogin } from './postgres.js';
import {
  PIDS_DIR,
  reapOrphans,
  removeStackRecord,
  writePidRecord,
  writeStackRecord,
} from './orphans.js';
import { startProcess, type StackProcess } from './process.js';
import { startStripeMock } from './stripe-mock.js';
import {
  DEFAULT_POOLS,
  startTemporalServer,
  type TemporalServerConfigInput,
} from './temporal-server.js';
import {
  TEMPORAL_UI,
  ensureTemporalServer,
  ensureTool,
  temporalServerMissingMessage,
  type Log,
  type TemporalServerTools,
} from './tools.js';

type Env = Record<string, string | undefined>;

export interface ProdStackOptions {
  /** For finding the tools (TEMPORAL_SERVER_DIR, STRIPE_MOCK_PATH, the tool cache). */
  env: Env;
  log: Log;
  /**
   * A PostgreSQL server, as a user that may create databases and roles; the stack's databases
   * are made on it. Default: the local server at 127.0.0.1:5432.
   */
  postgresUrl?: string;
  /** Names the databases (`<name>`, `<name>_temporal`, `<name>_temporal_visibility`) and the login role. */
  name?: string;
  /** Where configs and logs go; default .data/stack-prod/<name>. */
  dir?: string;
  workers?: number;
  apis?: number;
  /** Preferred first API port (the next ones follow); free ones are taken when busy. */
  apiPort?: number;
  /** Preferred Temporal frontend port. */
  temporalPort?: number;
  /**
   * Run the Temporal UI as its own process (found in the tool cache or built once; needs Go).
   * Default true; without Go and without a built UI the stack starts without it and says so.
   */
  ui?: boolean;
  /** Preferred Temporal UI port. */
  uiPort?: number;
  /**
   * The caller drops the databases when it stops (tests, the chaos suite, `--drop`): if it is
   * killed before it can, the next start drops them. Otherwise they are kept and reported.
   */
  ephemeral?: boolean;
  /** A running stripe-mock (or Stripe) to use instead of starting one. */
  stripeApiBase?: string;
  taskQueue?: string;
  /** DATABASE_POOL_SIZE of each API and worker process. */
  databasePoolSize?: number;
  temporalPools?: TemporalServerConfigInput['pools'];
  historyShards?: number;
  /** Use these server tools; otherwise found in the cache or built (needs Go). */
  tools?: TemporalServerTools;
  /**
   * Settings every API and worker process gets on top of the stack's own (LOG_LEVEL, REDIS_URL,
   * OTEL_…); the stack's own (database, Temporal, ports, secrets) cannot be overridden here.
   */
  appEnv?: Env;
}

/** A worker process of the stack. */
export interface StackWorker extends StackProcess {
  index: number;
  /** Its Prometheus metrics. */
  metricsUrl: string;
}

/** An API process of the stack. */
export interface StackApi extends StackProcess {
  index: number;
  url: string;
}

/** The secrets made for this stack alone. */
export interface StackSecrets {
  AUTH_JWT_SECRET: string;
  STRIPE_WEBHOOK_SECRET: string;
  SMS_WEBHOOK_SECRET: string;
  METRICS_TOKEN: string;
}

/** Open PostgreSQL connections of the stack, by database and by process kind. */
export interface StackConnections {
  temporal: number;
  temporalVisibility: number;
  /** The app database, by application_name (creditflow-api, creditflow-worker, …). */
  app: Record<string, number>;
}

export interface ProdStack {
  name: string;
  dir: string;
  postgres: {
    /** The server URL the stack was given (owner rights). */
    serverUrl: string;
    database: string;
    /** Migrations and operator tools: the schema owner. */
    ownerUrl: string;
    /** What the API and worker processes connect as (a member of creditflow_app). */
    appUrl: string;
    appRole: string;
  };
  temporal: StackProcess & {
    address: string;
    namespace: string;
    configFile: string;
    metricsUrl: string;
    databases: { default: string; visibility: string };
  };
  /** The Temporal UI process, pointed at this stack's Temporal server; absent when not started. */
  ui: (StackProcess & { url: string }) | undefined;
  stripeApiBase: string;
  workers: StackWorker[];
  apis: StackApi[];
  taskQueue: string;
  secrets: StackSecrets;
  /** The settings the app processes run with (without the per-process ports). */
  appSettings: Record<string, string>;
  connections: () => Promise<StackConnections>;
  /** Stops the APIs, then the workers, then Temporal and stripe-mock; the databases stay. */
  stop: () => Promise<void>;
  /** Drops the three databases and the login role (after stop). */
  dropDatabases: () => Promise<void>;
}

/** Settings the stack owns: the caller's appEnv cannot override them. */
const STACK_OWNED = new Set([
  'NODE_ENV',
  'NODE_OPTIONS',
  'PORT',
  'DATABASE_URL',
  'MIGRATION_DATABASE_URL',
  'TEMPORAL_ADDRESS',
  'TEMPORAL_NAMESPACE',
  'TEMPORAL_TASK_QUEUE',
  'TEMPORAL_TLS',
  'TEMPORAL_API_KEY',
  'STRIPE_SECRET_KEY',
  'STRIPE_API_BASE',
  'STRIPE_WEBHOOK_SECRET',
  'SMS_WEBHOOK_SECRET',
  'AUTH_JWT_SECRET',
  'METRICS_TOKEN',
  'METRICS_PORT',
  'WORKER_METRICS_PORT',
  'WORKER_TEMPORAL_METRICS_PORT',
  'DATABASE_POOL_SIZE',
  'RECONCILIATION_SCHEDULES',
  'WORKFLOW_BUNDLE_PATH',
]);

function stackName(): string {
  return `creditflow_prod_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
}

function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

async function withAdmin<T>(serverUrl: string, run: (sql: postgres.Sql) => Promise<T>) {
  const sql = postgres(serverUrl, { max: 1, onnotice: () => undefined });
  try {
    return await run(sql);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** The compiled entry point, or an error saying to build first. */
function entry(relative: string): string {
  const path = join(projectRoot, 'dist', relative);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: run \`npm run build\` first.`);
  }
  return path;
}

/**
 * A worker is polling once its metrics report the build it polls as (set right before it polls),
 * whatever LOG_LEVEL hides.
 */
const polling = (metricsUrl: string) => async () => {
  const res = await fetch(metricsUrl).catch(() => undefined);
  return res?.ok === true && (await res.text()).includes('creditflow_worker_build_info{');
};

/** Starts the whole stack; on any failure, stops and drops what it had started. */
export async function startProdStack(options: ProdStackOptions): Promise<ProdStack> {
  const { log } = options;
  const name = options.name ?? stackName();
  if (!/^[a-z_][a-z0-9_]{0,40}$/.test(name)) {
    throw new Error(`stack name "${name}": use lower-case letters, digits and _ (at most 41)`);
  }
  const dir = options.dir ?? join(projectRoot, '.data', 'stack-prod', name);
  const serverUrl = options.postgresUrl ?? LOCAL_POSTGRES_URL;
  // First, what a start that was killed outright left running beside this one.
  await reapOrphans(dirname(dir), serverUrl, log).catch((err: unknown) =>
    log(`Could not check for processes left by a killed stack: ${(err as Error).message}`),
  );
  mkdirSync(join(dir, PIDS_DIR), { recursive: true });
  const pidFile = (processName: string) =>
    join(dir, PIDS_DIR, `${processName.toLowerCase().replace(/[^a-z0-9]+/g, '-')}.json`);
  const workerEntry = entry('src/worker.js');
  const apiEntry = entry('src/server.js');
  const stops: Array<() => Promise<void>> = [];
  const drops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) {
      await stop().catch((err: unknown) => log(`stop failed: ${(err as Error).message}`));
    }
    removeStackRecord(dir);
  };
  const dropAll = async () => {
    for (const drop of drops.splice(0).reverse()) {
      await drop().catch((err: unknown) => log(`drop failed: ${(err as Error).message}`));
    }
  };

  try {
    const tools = options.tools ?? (await ensureTemporalServer(options.env, log));
    if (!tools) throw new Error(temporalServerMissingMessage(options.env));

    // PostgreSQL: a fresh app database, migrated by its owner; the processes log in as a role
    // that is a member of creditflow_app (no DDL, no trigger control).
    await assertReachable(serverUrl);
    const database = name;
    const appRole = `${name}_app`;
    await withAdmin(serverUrl, (sql) => sql.unsafe(`create database "${database}"`));
    drops.push(async () => {
      await withAdmin(serverUrl, (sql) =>
        sql.unsafe(`drop database if exists "${database}" with (force)`),
      );
      await dropLogin(serverUrl, appRole);
    });
    const temporalDatabases = {
      default: `${name}_temporal`,
      visibility: `${name}_temporal_visibility`,
    };
    const server = new URL(serverUrl);
    writeStackRecord(dir, {
      name,
      ownerPid: process.pid,
      server: `${server.hostname}:${server.port || '5432'}`,
      databases: [database, temporalDatabases.default, temporalDatabases.visibility],
      appRole,
      ephemeral: options.ephemeral ?? false,
    });
    const ownerUrl = databaseUrl(serverUrl, database);
    log(`PostgreSQL: database ${database} on ${new URL(serverUrl).host}; applying migrations…`);
    await runMigrations(ownerUrl);
    const appUrl = await ensureAppLogin(ownerUrl, {
      role: appRole,
      password: randomBytes(18).toString('hex'),
    });

    // stripe-mock, unless one is given.
    let stripeApiBase = options.stripeApiBase;
    if (!stripeApiBase) {
      const mock = await startStripeMock(options.env, log);
      if (!mock) {
        throw new Error(
          'stripe-mock is needed: install Go (it is then built once) or set STRIPE_MOCK_PATH.',
        );
      }
      const mockPidFile = pidFile('stripe-mock');
      writePidRecord(mockPidFile, { name: 'stripe-mock', pid: mock.pid, command: mock.binary });
      stops.push(async () => {
        await mock.stop();
        rmSync(mockPidFile, { force: true });
      });
      stripeApiBase = mock.apiBase;
    }

    // Temporal on PostgreSQL, in databases of its own.
    // Dropped by name: a start that failed halfway may have made them already.
    drops.push(() =>
      withAdmin(serverUrl, async (sql) => {
        for (const db of Object.values(temporalDatabases)) {
          await sql.unsafe(`drop database if exists "${db}" with (force)`);
        }
      }),
    );
    const temporal = await startTemporalServer({
      tools,
      postgresUrl: serverUrl,
      databases: temporalDatabases,
      dir: join(dir, 'temporal'),
      pools: options.temporalPools ?? DEFAULT_POOLS,
      historyShards: options.historyShards,
      frontendPort: options.temporalPort,
      pidFile: pidFile('temporal-server'),
      log,
    });
    stops.push(temporal.close);

    // The Temporal UI, as its own deployment would run it: pointed at the frontend. Optional:
    // a UI that cannot be built or started is reported and the stack runs without it.
    let ui: (StackProcess & { url: string }) | undefined;
    if (options.ui !== false) {
      try {
        const started = await startTemporalUi({
          env: options.env,
          log,
          dir,
          temporal,
          preferredPort: options.uiPort ?? 8233,
          pidFile: pidFile('temporal-ui'),
        });
        if (started) {
          stops.push(started.close);
          ui = started;
        }
      } catch (err) {
        log(`Temporal UI: not started (${(err as Error).message.split('\n')[0]}).`);
      }
    }

    const secrets: StackSecrets = {
      AUTH_JWT_SECRET: randomBytes(32).toString('hex'),
      STRIPE_WEBHOOK_SECRET: `whsec_${randomBytes(24).toString('hex')}`,
      SMS_WEBHOOK_SECRET: randomBytes(24).toString('hex'),
      METRICS_TOKEN: randomBytes(24).toString('hex'),
    };
    const taskQueue = options.taskQueue ?? 'creditflow';
    const appSettings: Record<string, string> = {
      NODE_ENV: 'production',
      DATABASE_URL: appUrl,
      MIGRATION_DATABASE_URL: ownerUrl,
      DATABASE_POOL_SIZE: String(options.databasePoolSize ?? 5),
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: temporal.namespace,
      TEMPORAL_TASK_QUEUE: taskQueue,
      STRIPE_SECRET_KEY: 'sk_test_creditflowstack',
      STRIPE_API_BASE: stripeApiBase,
      ...(ui ? { TEMPORAL_UI_URL: ui.url } : {}),
      ...secrets,
    };
    const inherited = Object.fromEntries(
      Object.entries(options.appEnv ?? {}).filter(
        ([key, value]) => value !== undefined && !STACK_OWNED.has(key),
      ),
    );
    const processEnv = (own: Record<string, string>) => ({
      PATH: process.env['PATH'],
      HOME: process.env['HOME'],
      ...inherited,
      ...appSettings,
      ...own,
    });

    const workerCount = options.workers ?? 2;
    const apiCount = options.apis ?? 2;
    const workers: StackWorker[] = await Promise.all(
      Array.from({ length: workerCount }, async (_, i) => {
        const metricsPort = await freePort(0);
        const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
        const worker = await startProcess({
          name: `worker ${i + 1}`,
          command: process.execPath,
          args: [workerEntry],
          env: processEnv({
            WORKER_METRICS_PORT: String(metricsPort),
            // One worker keeps the reconciliation schedules in place; the others leave them be.
            RECONCILIATION_SCHEDULES: i === 0 ? 'true' : 'false',
          }),
          cwd: projectRoot,
          logFile: join(dir, `worker-${i + 1}.log`),
          pidFile: pidFile(`worker-${i + 1}`),
          ready: polling(metricsUrl),
          readyTimeoutMs: 60_000,
          stopGraceMs: 40_000,
        });
        stops.push(worker.close);
        return Object.assign(worker, { index: i + 1, metricsUrl });
      }),
    );

    const apis: StackApi[] = [];
    let nextPort = options.apiPort ?? 3000;
    for (let i = 0; i < apiCount; i++) {
      const port = await freePort(nextPort);
      nextPort = port + 1;
      const url = `http://127.0.0.1:${port}`;
      const api = await startProcess({
        name: `API ${i + 1}`,
        command: process.execPath,
        args: [apiEntry],
        env: processEnv({ PORT: String(port) }),
        cwd: projectRoot,
        logFile: join(dir, `api-${i + 1}.log`),
        pidFile: pidFile(`api-${i + 1}`),
        ready: async () => (await fetch(`${url}/readyz`).catch(() => undefined))?.ok === true,
        readyTimeoutMs: 60_000,
        stopGraceMs: 15_000,
      });
      stops.push(api.close);
      apis.push(Object.assign(api, { index: i + 1, url }));
    }

    const running = temporal;
    const connections = () =>
      withAdmin(serverUrl, async (sql) => {
        const rows = await sql<{ datname: string; app: string; n: number }[]>`
          select datname, coalesce(nullif(application_name, ''), '(none)') as app, count(*)::int as n
          from pg_stat_activity
          where datname in (${database}, ${temporalDatabases.default}, ${temporalDatabases.visibility})
          group by 1, 2`;
        const sum = (db: string) =>
          rows.filter((r) => r.datname === db).reduce((total, r) => total + r.n, 0);
        return {
          temporal: sum(temporalDatabases.default),
          temporalVisibility: sum(temporalDatabases.visibility),
          app: Object.fromEntries(
            rows.filter((r) => r.datname === database).map((r) => [r.app, r.n]),
          ),
        };
      });
    return {
      name,
      dir,
      postgres: { serverUrl, database, ownerUrl, appUrl, appRole },
      temporal: Object.assign(running.process, {
        address: running.address,
        namespace: running.namespace,
        configFile: running.configFile,
        metricsUrl: `http://127.0.0.1:${running.ports.metrics}/metrics`,
        databases: temporalDatabases,
      }),
      ui,
      stripeApiBase,
      workers,
      apis,
      taskQueue,
      secrets,
      appSettings,
      connections,
      stop: stopAll,
      dropDatabases: dropAll,
    };
  } catch (err) {
    await stopAll();
    await dropAll();
    throw err;
  }
}

/** Starts the Temporal UI server against `temporal`; undefined when it is not built and Go is not installed. */
async function startTemporalUi(input: {
  env: Env;
  log: Log;
  dir: string;
  temporal: { address: string; namespace: string };
  preferredPort: number;
  pidFile: string;
}): Promise<(StackProcess & { url: string; close: () => Promise<void> }) | undefined> {
  const { temporal, log } = input;
  const uiServer = await ensureTool(TEMPORAL_UI, input.env, log);
  if (!uiServer) {
    log(
      `Temporal UI: not started (${TEMPORAL_UI.label} is not built and Go is not installed; ` +
        `go install ${TEMPORAL_UI.goPackage}, or set ${TEMPORAL_UI.envVar}).`,
    );
    return undefined;
  }
  const port = await freePort(input.preferredPort);
  const url = `http://127.0.0.1:${port}`;
  const uiDir = join(input.dir, 'temporal-ui');
  mkdirSync(join(uiDir, 'config'), { recursive: true });
  writeFileSync(
    join(uiDir, 'config', 'production.yaml'),
    [
      `temporalGrpcAddress: ${temporal.address}`,
      'host: 127.0.0.1',
      `port: ${port}`,
      'enableUi: true',
      `defaultNamespace: ${temporal.namespace}`,
      '',
    ].join('\n'),
  );
  const started = await startProcess({
    name: 'Temporal UI',
    command: uiServer,
    args: ['--root', uiDir, '--config', 'config', '--env', 'production', 'start'],
    env: { PATH: process.env['PATH'], HOME: process.env['HOME'] },
    cwd: uiDir,
    logFile: join(input.dir, 'temporal-ui.log'),
    pidFile: input.pidFile,
    ready: async () => (await fetch(`${url}/`).catch(() => undefined))?.ok === true,
    readyTimeoutMs: 30_000,
    stopGraceMs: 5_000,
  });
  return Object.assign(started, { url });
}
