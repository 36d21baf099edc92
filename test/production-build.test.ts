// The production build: `npm run build`, then `npm run api` / `npm run worker` with
// NODE_ENV=production run dist/ on plain node — no TypeScript loader — and serve a whole flow.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { processEnv } from '../src/config.js';
import type { Database } from '../src/db/client.js';
import { ensureBuild } from '../src/stack/build.js';
import { freePort } from '../src/stack/ports.js';
import {
  JWT_SECRET,
  adminToken,
  createCustomer,
  customerToken,
  eventually,
  jsonRequest,
  testDatabase,
  uniqueId,
} from './helpers.js';

const projectRoot = fileURLToPath(new URL('..', import.meta.url));
const METRICS_TOKEN = 'metrics-token-for-the-build-test';

/** An `npm run <script>` process and everything it printed. */
interface NpmProcess {
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

function npmRun(script: string, env: Record<string, string>): NpmProcess {
  const base = { ...processEnv() };
  // Nothing may slip a loader in from the test's own environment.
  delete base['NODE_OPTIONS'];
  const child = spawn('npm', ['run', '-s', script], {
    cwd: projectRoot,
    env: {
      ...base,
      NODE_ENV: 'production',
      DATABASE_URL: inject('databaseUrl'),
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_NAMESPACE: inject('temporalNamespace'),
      RECONCILIATION_SCHEDULES: 'false',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  child.stdout?.on('data', (d: Buffer) => output.push(d.toString()));
  child.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { child, output, exited };
}

/** A /proc file's text, or undefined when its process is already gone. */
function procFile(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Every process below `pid` (Linux /proc), with its command line. */
function descendants(pid: number): { pid: number; argv: string[] }[] {
  const tasks = threads(pid);
  const found: { pid: number; argv: string[] }[] = [];
  for (const tid of tasks) {
    const children = (procFile(`/proc/${pid}/task/${tid}/children`) ?? '')
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
    for (const child of children) {
      const cmdline = procFile(`/proc/${child}/cmdline`);
      if (cmdline === undefined) continue;
      found.push({ pid: child, argv: cmdline.split('\0').filter(Boolean) }, ...descendants(child));
    }
  }
  return found;
}

function threads(pid: number): string[] {
  try {
    return readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
}

/**
 * The node process running `entry` below an `npm run`: its command line must be exactly
 * `node <entry>`, and no process of the tree may mention tsx.
 */
function plainNodeProcess(npm: NpmProcess, entry: string): number {
  const tree = descendants(npm.child.pid!);
  const running = tree.find((p) => p.argv.includes(entry));
  expect(running, `a process running ${entry} under npm: ${JSON.stringify(tree)}`).toBeDefined();
  expect(basename(running!.argv[0]!)).toBe('node');
  expect(running!.argv.slice(1)).toEqual([entry]);
  for (const p of tree) expect(p.argv.join(' ')).not.toMatch(/tsx/);
  const environ = readFileSync(`/proc/${running!.pid}/environ`, 'utf8').split('\0');
  expect(environ.filter((v) => v.startsWith('NODE_OPTIONS='))).toEqual([]);
  return running!.pid;
}

/** The JSON log lines a process has written so far. */
function logLines(proc: NpmProcess): Record<string, unknown>[] {
  return proc.output
    .join('')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** SIGTERM to the node process itself (a drain, as in production), then npm's exit. */
async function stop(npm: NpmProcess, pid: number | undefined) {
  if (npm.child.exitCode !== null) return;
  if (pid !== undefined) process.kill(pid, 'SIGTERM');
  else npm.child.kill('SIGTERM');
  await npm.exited;
}

let db: Database;
const taskQueue = uniqueId('build');
let api: NpmProcess | undefined;
let worker: NpmProcess | undefined;
let apiPid: number | undefined;
let workerPid: number | undefined;
const apiPort = await freePort();
const workerMetricsPort = await freePort();

beforeAll(async () => {
  db = testDatabase();
  // `npm run build`, once for the current sources, under a lock other tests that run the build share.
  await ensureBuild({ log: () => undefined });

  worker = npmRun('worker', {
    TEMPORAL_TASK_QUEUE: taskQueue,
    WORKER_METRICS_PORT: String(workerMetricsPort),
    LOG_LEVEL: 'info',
  });
  api = npmRun('api', {
    TEMPORAL_TASK_QUEUE: taskQueue,
    PORT: String(apiPort),
    AUTH_JWT_SECRET: JWT_SECRET,
    METRICS_TOKEN,
    LOG_LEVEL: 'warn',
  });
  const ready = {
    worker: () => Promise.resolve(logLines(worker!).some((l) => l['msg'] === 'worker polling')),
    api: async () => (await fetch(`http://127.0.0.1:${apiPort}/readyz`).catch(() => undefined))?.ok,
  };
  for (const [proc, isReady] of [
    [worker, ready.worker],
    [api, ready.api],
  ] as const) {
    await eventually(
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`exited:\n${proc.output.join('')}`);
        return (await isReady()) ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
  }
}, 300_000);

afterAll(async () => {
  if (api) await stop(api, apiPid);
  if (worker) await stop(worker, workerPid);
  await db?.close();
});

describe('the production build', () => {
  it('runs the API and the worker on plain node, and they complete an adjustment', async () => {
    apiPid = plainNodeProcess(api!, 'dist/src/server.js');
    workerPid = plainNodeProcess(worker!, 'dist/src/worker.js');

    const base = `http://127.0.0.1:${apiPort}`;
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    // Files beside the modules (the dashboard's) were copied into the build.
    const page = await fetch(`${base}/dashboard`);
    expect(page.status).toBe(200);
    expect(await page.text()).toBe(
      readFileSync(join(projectRoot, 'src', 'dashboard', 'static', 'index.html'), 'utf8'),
    );

    const customer = await createCustomer(db);
    const started = await fetch(
      `${base}/v1/admin/adjustments`,
      jsonRequest(
        'POST',
        { customerId: customer.id, amount: 25, reason: 'built' },
        await adminToken(),
        { 'idempotency-key': uniqueId('build-adj') },
      ),
    );
    expect(started.status).toBe(202);
    const { id } = (await started.json()) as { id: string };
    const admin = await adminToken();
    await eventually(async () => {
      const res = await fetch(`${base}/v1/admin/adjustments/${id}`, {
        headers: { authorization: `Bearer ${admin}` },
      });
      const body = (await res.json()) as { status?: string };
      return body.status === 'completed' ? true : undefined;
    });
    const wallet = await fetch(`${base}/v1/wallet`, {
      headers: { authorization: `Bearer ${await customerToken(customer.id)}` },
    });
    expect(wallet.status).toBe(200);
    expect(await wallet.json()).toMatchObject({ balance: 25 });
  });

  it('the worker runs the prebundled workflows and reports its build id', async () => {
    const version = (
      JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string }
    ).version;
    const bundle = readFileSync(join(projectRoot, 'dist', 'workflow-bundle.js'));
    const buildId = `${version}+${createHash('sha256').update(bundle).digest('hex').slice(0, 12)}`;

    const lines = logLines(worker!);
    const polling = lines.find((l) => l['msg'] === 'worker polling');
    expect(polling).toMatchObject({
      buildId,
      deploymentName: 'creditflow',
      versioning: 'off',
      workflowBundle: join(projectRoot, 'dist', 'workflow-bundle.js'),
    });
    // Nothing bundled at start: the build did it.
    expect(lines.some((l) => String(l['msg']).startsWith('Workflow bundle created'))).toBe(false);
    // A tracing worker has its own prebundle, with OpenTelemetry's workflow interceptors.
    const tracingBundle = readFileSync(
      join(projectRoot, 'dist', 'workflow-bundle-tracing.js'),
      'utf8',
    );
    expect(tracingBundle).toContain('OpenTelemetryInboundInterceptor');
    expect(bundle.toString('utf8')).not.toContain('OpenTelemetryInboundInterceptor');

    const metrics = await (await fetch(`http://127.0.0.1:${workerMetricsPort}/metrics`)).text();
    expect(metrics).toContain(
      `creditflow_worker_build_info{deployment_name="creditflow",build_id="${buildId}",versioning="off"} 1`,
    );
  });
});
