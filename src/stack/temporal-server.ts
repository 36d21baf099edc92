// The Temporal server as production runs it: its own OS process on PostgreSQL (schema set up by
// the release's sql tool), with the namespace and the search attributes the workflows set.
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time.js';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { INDEXED_VALUE_TYPES } from '../readiness/checks.js';
import { SEARCH_ATTRIBUTE_REGISTRATION } from '../shared.js';
import { freePort } from './ports.js';
import { startProcess, type StackProcess } from './process.js';
import type { Log, TemporalServerTools } from './tools.js';

/** The ports one server process listens on (all on 127.0.0.1). */
export interface TemporalServerPorts {
  frontendGrpc: number;
  frontendHttp: number;
  frontendMembership: number;
  historyGrpc: number;
  historyMembership: number;
  matchingGrpc: number;
  matchingMembership: number;
  workerGrpc: number;
  workerMembership: number;
  /** Prometheus metrics of every service, at /metrics. */
  metrics: number;
}

/** Connection pool of one datastore, per Temporal service (each service opens its own). */
export interface PoolSize {
  maxConns: number;
  maxIdleConns: number;
}

export interface TemporalServerConfigInput {
  ports: TemporalServerPorts;
  /** The PostgreSQL server, as host, port, user and password. */
  postgres: { host: string; port: number; user: string; password: string };
  databases: { default: string; visibility: string };
  pools: { default: PoolSize; visibility: PoolSize };
  historyShards: number;
  dynamicConfigFile: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

/** Small pools: four services each open one per datastore, so the totals add up quickly. */
export const DEFAULT_POOLS = {
  default: { maxConns: 5, maxIdleConns: 5 },
  visibility: { maxConns: 2, maxIdleConns: 2 },
} satisfies TemporalServerConfigInput['pools'];

/**
 * The server's static config (v1.29.1 reads `<root>/<config dir>/<env>.yaml`). JSON is YAML, so
 * the object is written as JSON: no quoting surprises in passwords or paths.
 */
export function temporalServerConfig(input: TemporalServerConfigInput): Record<string, unknown> {
  const { ports, postgres: pg } = input;
  const datastore = (databaseName: string, pool: PoolSize) => ({
    sql: {
      pluginName: 'postgres12',
      databaseName,
      connectAddr: `${pg.host}:${pg.port}`,
      connectProtocol: 'tcp',
      user: pg.user,
      password: pg.password,
      maxConns: pool.maxConns,
      maxIdleConns: pool.maxIdleConns,
      maxConnLifetime: '1h',
    },
  });
  const service = (grpcPort: number, membershipPort: number, extra: object = {}) => ({
    rpc: { grpcPort, membershipPort, bindOnLocalHost: true, ...extra },
  });
  return {
    log: { stdout: true, level: input.logLevel, format: 'json' },
    persistence: {
      defaultStore: 'postgres-default',
      visibilityStore: 'postgres-visibility',
      numHistoryShards: input.historyShards,
      datastores: {
        'postgres-default': datastore(input.databases.default, input.pools.default),
        'postgres-visibility': datastore(input.databases.visibility, input.pools.visibility),
      },
    },
    global: {
      membership: { maxJoinDuration: '30s', broadcastAddress: '127.0.0.1' },
      metrics: {
        prometheus: {
          framework: 'tally',
          timerType: 'histogram',
          listenAddress: `127.0.0.1:${ports.metrics}`,
        },
      },
    },
    services: {
      frontend: service(ports.frontendGrpc, ports.frontendMembership, {
        httpPort: ports.frontendHttp,
      }),
      history: service(ports.historyGrpc, ports.historyMembership),
      matching: service(ports.matchingGrpc, ports.matchingMembership),
      worker: service(ports.workerGrpc, ports.workerMembership),
    },
    clusterMetadata: {
      enableGlobalNamespace: false,
      failoverVersionIncrement: 10,
      masterClusterName: 'active',
      currentClusterName: 'active',
      clusterInformation: {
        active: {
          enabled: true,
          initialFailoverVersion: 1,
          rpcName: 'frontend',
          rpcAddress: `127.0.0.1:${ports.frontendGrpc}`,
          httpAddress: `127.0.0.1:${ports.frontendHttp}`,
        },
      },
    },
    dcRedirectionPolicy: { policy: 'noop' },
    archival: { history: { state: 'disabled' }, visibility: { state: 'disabled' } },
    namespaceDefaults: {
      archival: { history: { state: 'disabled' }, visibility: { state: 'disabled' } },
    },
    dynamicConfigClient: { filepath: input.dynamicConfigFile, pollInterval: '10s' },
  };
}

/**
 * Dynamic config both local servers (the dev server and this one) run with, beyond the defaults.
 * Tasks are written to one partition per task queue: with one matching service, the default four
 * make a task that lands in a partition with no waiting poller travel to the root partition
 * first; measured here, a signal and two activities took about twice as long (p50 129 → 65 ms
 * at 2/s under load). Reads stay at the default four, so a task written to another partition
 * before (a dev server's file kept from an earlier run, a cluster being tuned down) is still
 * delivered; reading one partition only measured the same. A cluster with several matching
 * hosts and thousands of tasks per second per queue wants more partitions.
 * Eager activities: a workflow task that schedules an activity on its own queue gets it back in
 * the answer when the worker has a free slot, instead of through matching.
 */
export const TEMPORAL_DYNAMIC_CONFIG: Readonly<Record<string, number | boolean>> = {
  'matching.numTaskqueueWritePartitions': 1,
  'system.enableActivityEagerExecution': true,
};

/**
 * Dynamic config file: the defaults of v1.29.1 serve everything the workflows use (updates,
 * update-with-start, schedules); the ID length limit is the development files' 255 → 1000
 * default kept explicit, so a long business id fails the same way everywhere; then
 * TEMPORAL_DYNAMIC_CONFIG.
 */
export function temporalDynamicConfig(): string {
  const entry = (key: string, value: number | boolean) => [
    `${key}:`,
    `  - value: ${String(value)}`,
    '    constraints: {}',
  ];
  return [
    ...entry('limit.maxIDLength', 1000),
    ...Object.entries(TEMPORAL_DYNAMIC_CONFIG).flatMap(([key, value]) => entry(key, value)),
    '',
  ].join('\n');
}

/** The same settings as `temporal server start-dev` flags. */
export function devServerDynamicConfigArgs(): string[] {
  return Object.entries(TEMPORAL_DYNAMIC_CONFIG).flatMap(([key, value]) => [
    '--dynamic-config-value',
    `${key}=${String(value)}`,
  ]);
}

/** The server's environment name: its config file is `<env>.yaml`. */
export const TEMPORAL_SERVER_ENV = 'creditflow';

/**
 * Free ports for every service. The server records each membership port in a smallint column
 * (cluster_membership.rpc_port), so they must stay below 32768 — above the kernel's ephemeral
 * range, where a "pick any free port" would land. A random start keeps parallel stacks apart.
 */
export async function freeTemporalServerPorts(): Promise<TemporalServerPorts> {
  const taken = new Set<number>();
  const next = async (): Promise<number> => {
    for (;;) {
      const port = await freePort(20_000 + Math.floor(Math.random() * 12_000));
      if (port < 32_768 && !taken.has(port)) {
        taken.add(port);
        return port;
      }
    }
  };
  return {
    frontendGrpc: await next(),
    frontendHttp: await next(),
    frontendMembership: await next(),
    historyGrpc: await next(),
    historyMembership: await next(),
    matchingGrpc: await next(),
    matchingMembership: await next(),
    workerGrpc: await next(),
    workerMembership: await next(),
    metrics: await next(),
  };
}

/** Host, port, user and password of a postgres:// URL, for the server's config and the sql tool. */
export function postgresEndpoint(url: string): TemporalServerConfigInput['postgres'] {
  const parsed = new URL(url);
  return {
    host: parsed.hostname || '127.0.0.1',
    port: Number(parsed.port || 5432),
    user: decodeURIComponent(parsed.username || 'postgres'),
    password: decodeURIComponent(parsed.password),
  };
}

function run(command: string, args: string[], env: Record<string, string | undefined>) {
  return new Promise<string>((resolve, reject) => {
    execFile(command, args, { env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        reject(
          new Error(`${command} ${args.join(' ')} failed: ${stderr || stdout || err.message}`),
        );
      } else resolve(stdout + stderr);
    });
  });
}

/**
 * Creates the database (dropped first when `fresh`) and sets up the schema as the release ships
 * it: `setup-schema -v 0.0`, then `update-schema -d <schema>/<part>/versioned`.
 */
export async function setupTemporalDatabase(
  tools: TemporalServerTools,
  serverUrl: string,
  database: string,
  part: 'temporal' | 'visibility',
): Promise<void> {
  const admin = postgres(serverUrl, { max: 1, onnotice: () => undefined });
  try {
    const quoted = `"${database.replace(/"/g, '""')}"`;
    await admin.unsafe(`drop database if exists ${quoted} with (force)`);
    await admin.unsafe(`create database ${quoted}`);
  } finally {
    await admin.end({ timeout: 1 });
  }
  const pg = postgresEndpoint(serverUrl);
  const common = [
    '--plugin',
    'postgres12',
    '--ep',
    pg.host,
    '-p',
    String(pg.port),
    '-u',
    pg.user,
    '--db',
    database,
  ];
  // The password goes by environment, so it never shows in a process listing.
  const env = { PATH: process.env['PATH'], SQL_PASSWORD: pg.password };
  await run(tools.sqlTool, [...common, 'setup-schema', '-v', '0.0'], env);
  await run(
    tools.sqlTool,
    [...common, 'update-schema', '-d', join(tools.schemaDir, part, 'versioned')],
    env,
  );
}

export interface TemporalServerOptions {
  tools: TemporalServerTools;
  /** A PostgreSQL server (any database on it) as a user that may create databases. */
  postgresUrl: string;
  /** Names of the two databases, created fresh (an existing one of that name is dropped). */
  databases: { default: string; visibility: string };
  /** Where the config and the log go. */
  dir: string;
  namespace?: string;
  historyShards?: number;
  pools?: TemporalServerConfigInput['pools'];
  /** Preferred frontend port (e.g. 7233); a free one when taken or absent. */
  frontendPort?: number;
  logLevel?: TemporalServerConfigInput['logLevel'];
  /** Where the running server's pid is recorded (see ProcessSpec.pidFile). */
  pidFile?: string;
  log: Log;
}

export interface RunningTemporalServer {
  process: StackProcess;
  address: string;
  namespace: string;
  ports: TemporalServerPorts;
  configFile: string;
  databases: { default: string; visibility: string };
  /** Stops the process and closes its log; the databases stay (dropDatabases removes them). */
  close: () => Promise<void>;
  dropDatabases: () => Promise<void>;
}

/** True once the frontend answers a health-free RPC (getSystemInfo needs every service up). */
async function frontendAnswers(address: string): Promise<boolean> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: '1 second' });
    await connection.withDeadline(Date.now() + 2_000, () =>
      connection!.workflowService.getSystemInfo({}),
    );
    // The namespace APIs need the history service's shards, not only the frontend.
    await connection.withDeadline(Date.now() + 2_000, () =>
      connection!.workflowService.listNamespaces({ pageSize: 1 }),
    );
    return true;
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The namespace (retention one day) and every search attribute the workflows set, once. */
export async function ensureNamespace(address: string, namespace: string): Promise<void> {
  const connection = await Connection.connect({ address });
  try {
    const exists = await connection.workflowService
      .describeNamespace({ namespace })
      .then(() => true)
      .catch(() => false);
    if (!exists) {
      await connection.workflowService.registerNamespace({
        namespace,
        workflowExecutionRetentionPeriod: msToTs('1 day'),
      });
    }
    const wanted = Object.fromEntries(
      Object.entries(SEARCH_ATTRIBUTE_REGISTRATION).map(([name, type]) => [
        name,
        INDEXED_VALUE_TYPES[type]!,
      ]),
    );
    // Right after registration the namespace may not be in every service's cache yet: retry.
    for (let attempt = 1; ; attempt++) {
      try {
        const listed = await connection.operatorService.listSearchAttributes({ namespace });
        const present = listed.customAttributes ?? {};
        const missing = Object.fromEntries(
          Object.entries(wanted).filter(([name]) => present[name] === undefined),
        );
        if (Object.keys(missing).length === 0) break;
        await connection.operatorService.addSearchAttributes({
          namespace,
          searchAttributes: missing,
        });
      } catch (err) {
        if (attempt >= 30) throw err;
        await pause(500);
      }
    }
  } finally {
    await connection.close();
  }
}

/**
 * Sets up both databases, writes the config, starts `temporal-server start` as its own process,
 * waits until it answers and creates the namespace and search attributes.
 */
export async function startTemporalServer(
  options: TemporalServerOptions,
): Promise<RunningTemporalServer> {
  const { tools, databases, dir, log } = options;
  const namespace = options.namespace ?? 'default';
  mkdirSync(join(dir, 'config'), { recursive: true });
  log(`Temporal: setting up the schema in ${databases.default} and ${databases.visibility}…`);
  await setupTemporalDatabase(tools, options.postgresUrl, databases.default, 'temporal');
  await setupTemporalDatabase(tools, options.postgresUrl, databases.visibility, 'visibility');

  const ports = await freeTemporalServerPorts();
  if (options.frontendPort) {
    const preferred = await freePort(options.frontendPort);
    if (!Object.values(ports).includes(preferred)) ports.frontendGrpc = preferred;
  }
  const dynamicConfigFile = join(dir, 'config', 'dynamicconfig.yaml');
  writeFileSync(dynamicConfigFile, temporalDynamicConfig());
  const configFile = join(dir, 'config', `${TEMPORAL_SERVER_ENV}.yaml`);
  writeFileSync(
    configFile,
    `${JSON.stringify(
      temporalServerConfig({
        ports,
        postgres: postgresEndpoint(options.postgresUrl),
        databases,
        pools: options.pools ?? DEFAULT_POOLS,
        historyShards: options.historyShards ?? 4,
        dynamicConfigFile,
        logLevel: options.logLevel ?? 'warn',
      }),
      null,
      2,
    )}\n`,
    { mode: 0o600 },
  );

  const address = `127.0.0.1:${ports.frontendGrpc}`;
  log(`Temporal: starting the server on ${address}…`);
  const server = await startProcess({
    name: 'Temporal server',
    command: tools.server,
    args: ['-r', dir, '-c', 'config', '-e', TEMPORAL_SERVER_ENV, '--allow-no-auth', 'start'],
    env: { PATH: process.env['PATH'], HOME: process.env['HOME'] },
    cwd: dir,
    logFile: join(dir, 'temporal-server.log'),
    ...(options.pidFile ? { pidFile: options.pidFile } : {}),
    ready: () => frontendAnswers(address),
    readyTimeoutMs: 90_000,
    stopGraceMs: 10_000,
  });
  const dropDatabases = async () => {
    const admin = postgres(options.postgresUrl, { max: 1, onnotice: () => undefined });
    try {
      for (const name of [databases.default, databases.visibility]) {
        await admin.unsafe(`drop database if exists "${name.replace(/"/g, '""')}" with (force)`);
      }
    } finally {
      await admin.end({ timeout: 1 });
    }
  };
  try {
    await ensureNamespace(address, namespace);
  } catch (err) {
    await server.close();
    throw err;
  }
  return {
    process: server,
    address,
    namespace,
    ports,
    configFile,
    databases,
    close: () => server.close(),
    dropDatabases,
  };
}
