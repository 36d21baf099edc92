// The flow benchmarks' own stack, set up the way `npm start` and the test setup do it: a fresh
// PostgreSQL database with migrations and an app login, the Temporal dev server from the tool
// cache, stripe-mock (behind a stateful double for session ids), the real API and worker entry
// points as child processes, and a worker process for the baseline workflows. stop() tears all
// of it down, also after a failure half way.
import { bundleWorkflowCode } from '@temporalio/worker';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  createWriteStream,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { processEnv } from '../../src/config.js';
import { runMigrations } from '../../src/db/client.js';
import { projectRoot } from '../../src/paths.js';
import { freePort, waitForPort } from '../../src/stack/ports.js';
import {
  LOCAL_POSTGRES_URL,
  assertReachable,
  dropLogin,
  ensureAppLogin,
  isReachable,
  startEmbeddedPostgres,
} from '../../src/stack/postgres.js';
import { startStripeMock } from '../../src/stack/stripe-mock.js';
import { startTemporalDevServer } from '../../src/stack/temporal.js';
import { webpackConfigHook, workflowBundleOptions } from '../../src/temporal.js';
import { startStripeDouble } from './stripe-double.js';

export type Say = (message: string) => void;

/** Settings that tuning varies, passed to the API and worker processes as their env. */
export type ProcessEnv = Record<string, string>;

export interface FlowStack {
  ownerUrl: string;
  appUrl: string;
  temporalAddress: string;
  namespace: string;
  apiUrl: string;
  taskQueue: string;
  bareTaskQueue: string;
  jwtSecret: string;
  stripeWebhookSecret: string;
  smsWebhookSecret: string;
  /** Starts one more worker of each kind (the real one and the baseline one). */
  addWorkers: () => Promise<void>;
  workerCount: () => number;
  stop: () => Promise<void>;
}

interface Child {
  name: string;
  process: ChildProcess;
  log: string;
}

const tsx = join(projectRoot, 'node_modules', '.bin', 'tsx');

function spawnEntry(name: string, entry: string, env: ProcessEnv, dir: string): Child {
  const log = join(dir, `${name}.log`);
  const out = createWriteStream(log);
  const child = spawn(tsx, [entry], {
    cwd: projectRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(out);
  child.stderr.pipe(out);
  return { name, process: child, log };
}

const tail = (file: string) => {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '';
  }
};

/** Resolves when the child prints `marker`; fails when it exits first or time runs out. */
function waitForOutput(child: Child, marker: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => fail(new Error(`${child.name} did not start within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      seen = (seen + chunk.toString()).slice(-4096);
      if (seen.includes(marker)) done();
    };
    const onExit = (code: number | null) =>
      fail(new Error(`${child.name} exited (${code}) before it was ready:\n${tail(child.log)}`));
    const cleanup = () => {
      clearTimeout(timer);
      child.process.stdout?.off('data', onData);
      child.process.off('exit', onExit);
    };
    const done = () => {
      cleanup();
      resolve();
    };
    const fail = (err: Error) => {
      cleanup();
      reject(err);
    };
    child.process.stdout?.on('data', onData);
    child.process.once('exit', onExit);
  });
}

function stopChild(child: Child): Promise<void> {
  return new Promise((resolve) => {
    if (child.process.exitCode !== null || child.process.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.process.kill('SIGKILL'), 10_000);
    child.process.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.process.kill('SIGTERM');
  });
}

export async function startFlowStack(options: {
  say: Say;
  /** Extra env for the API and worker processes (the settings being tuned). */
  env?: ProcessEnv;
}): Promise<FlowStack> {
  const { say } = options;
  const env = processEnv();
  const cleanups: Array<() => Promise<void>> = [];
  const children: Child[] = [];
  const scratch = mkdtempSync(join(tmpdir(), 'creditflow-flowbench-'));
  chmodSync(scratch, 0o755);
  cleanups.push(() => Promise.resolve(rmSync(scratch, { recursive: true, force: true })));
  const stop = async () => {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((err: unknown) => say(`cleanup failed: ${(err as Error).message}`));
    }
    cleanups.length = 0;
  };

  try {
    // PostgreSQL: a fresh database on DATABASE_URL's server or the local one, else embedded.
    const server =
      env.DATABASE_URL ??
      ((await isReachable(LOCAL_POSTGRES_URL)) ? LOCAL_POSTGRES_URL : undefined);
    let ownerUrl: string;
    const appRole = `creditflow_flowbench_${randomBytes(4).toString('hex')}`;
    if (server) {
      await assertReachable(server);
      const name = `creditflow_flowbench_${Date.now()}`;
      const admin = postgres(server, { max: 1, onnotice: () => undefined });
      await admin.unsafe(`create database ${name}`);
      await admin.end();
      cleanups.push(async () => {
        const sql = postgres(server, { max: 1, onnotice: () => undefined });
        await sql.unsafe(`drop database if exists ${name} with (force)`);
        await sql.end();
        await dropLogin(server, appRole);
        say(`dropped database ${name}`);
      });
      const url = new URL(server);
      url.pathname = `/${name}`;
      ownerUrl = url.toString();
      say(`PostgreSQL: fresh database ${name} on ${url.host}`);
    } else {
      const pg = await startEmbeddedPostgres(join(scratch, 'postgres'), {
        ephemeral: true,
        log: say,
      });
      cleanups.push(pg.stop);
      ownerUrl = pg.url;
      say('PostgreSQL: embedded, for this run only');
    }
    await runMigrations(ownerUrl);
    const appUrl = await ensureAppLogin(ownerUrl, {
      role: appRole,
      password: randomBytes(18).toString('hex'),
    });

    const temporal = await startTemporalDevServer({ env, log: say });
    cleanups.push(temporal.stop);
    say(`Temporal: dev server at ${temporal.address}`);

    const stripeMock = await startStripeMock(env, say, 0);
    if (!stripeMock) throw new Error('stripe-mock is needed: install Go or set STRIPE_MOCK_PATH');
    cleanups.push(stripeMock.stop);
    const stripeDouble = await startStripeDouble(stripeMock.apiBase);
    cleanups.push(stripeDouble.close);

    // Both bundles once, so worker processes start in seconds and run the same code.
    const quiet = {
      log: () => {},
      trace: () => {},
      debug: () => {},
      info: () => {},
      warn: say,
      error: say,
    };
    const appBundle = join(scratch, 'workflow-bundle.js');
    writeFileSync(appBundle, (await bundleWorkflowCode(workflowBundleOptions(quiet))).code);
    const bareBundle = join(scratch, 'bare-bundle.js');
    writeFileSync(
      bareBundle,
      (
        await bundleWorkflowCode({
          workflowsPath: fileURLToPath(new URL('./bare-workflows.ts', import.meta.url)),
          webpackConfigHook,
          logger: quiet,
        })
      ).code,
    );

    const suffix = randomBytes(4).toString('hex');
    const taskQueue = `flowbench-${suffix}`;
    const bareTaskQueue = `flowbench-bare-${suffix}`;
    const secrets = {
      jwtSecret: randomBytes(32).toString('hex'),
      stripeWebhookSecret: `whsec_${randomBytes(24).toString('hex')}`,
      smsWebhookSecret: randomBytes(24).toString('hex'),
    };
    const common: ProcessEnv = {
      NODE_ENV: 'development',
      // The production default: the log lines the flows write are part of their cost.
      LOG_LEVEL: 'info',
      DATABASE_URL: appUrl,
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: temporal.namespace,
      TEMPORAL_TASK_QUEUE: taskQueue,
      AUTH_JWT_SECRET: secrets.jwtSecret,
      STRIPE_WEBHOOK_SECRET: secrets.stripeWebhookSecret,
      SMS_WEBHOOK_SECRET: secrets.smsWebhookSecret,
      STRIPE_SECRET_KEY: 'sk_test_creditflowflowbench',
      STRIPE_API_BASE: stripeDouble.apiBase,
      WORKFLOW_BUNDLE_PATH: appBundle,
      RECONCILIATION_SCHEDULES: 'false',
      // The benchmark measures the flows, not the limits that protect them.
      RATE_LIMIT_PER_CUSTOMER: '0',
      RATE_LIMIT_PER_IP: '0',
      ...options.env,
    };
    for (const key of [
      'OTEL_EXPORTER_OTLP_ENDPOINT',
      'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
      'SMTP_URL',
      'REDIS_URL',
    ]) {
      common[key] = '';
    }
    cleanups.push(async () => {
      for (const child of children.reverse()) await stopChild(child);
    });

    const port = await freePort(0);
    const api = spawnEntry('api', 'src/server.ts', { ...common, PORT: String(port) }, scratch);
    children.push(api);
    let workers = 0;
    const addWorkers = async () => {
      workers++;
      const app = spawnEntry(
        `worker-${workers}`,
        'src/worker.ts',
        { ...common, WORKER_METRICS_PORT: String(await freePort(0)) },
        scratch,
      );
      const bare = spawnEntry(
        `bare-worker-${workers}`,
        'bench/flows/bare-worker.ts',
        { ...common, BARE_TASK_QUEUE: bareTaskQueue, BARE_BUNDLE_PATH: bareBundle },
        scratch,
      );
      children.push(app, bare);
      await Promise.all([
        waitForOutput(app, 'worker polling', 60_000),
        waitForOutput(bare, 'bare worker polling', 60_000),
      ]);
    };
    await Promise.all([waitForPort(port, api.process, 'API', 60_000), addWorkers()]);
    say(`API at http://127.0.0.1:${port}; worker and baseline worker polling`);

    return {
      ownerUrl,
      appUrl,
      temporalAddress: temporal.address,
      namespace: temporal.namespace,
      apiUrl: `http://127.0.0.1:${port}`,
      taskQueue,
      bareTaskQueue,
      ...secrets,
      addWorkers,
      workerCount: () => workers,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
