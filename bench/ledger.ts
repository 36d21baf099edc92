// `npm run bench`: ledger posting throughput and latency, next to a pgbench baseline measured
// on the same PostgreSQL server in the same run, so the numbers say how much the ledger costs
// over the server's plain transaction rate rather than how fast this machine happens to be.
//
//   npm run bench -- --seconds 5 --clients 8 [--customers 1000]
//   (or BENCH_SECONDS, BENCH_CLIENTS, BENCH_CUSTOMERS; flags win)
//
// Everything runs in a scratch database that is dropped at the end, also on failure.
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs, promisify } from 'node:util';
import postgres from 'postgres';
import { processEnv } from '../src/config.js';
import { createDatabase, runMigrations, type Sql } from '../src/db/client.js';
import { checkLedger } from '../src/ledger/check.js';
import { createLedger, type Ledger, type PostEntryInput } from '../src/ledger/ledger.js';

const LOCAL_URL = 'postgres://postgres@127.0.0.1:5432/test';
const PGBENCH_SCALE = 10;
/** Far more than any wallet can spend in a run, so no debit fails for lack of credits. */
const FUNDING_PER_CUSTOMER = 1_000_000;

const execFileAsync = promisify(execFile);
const say = (message: string) => console.log(`· ${message}`);
const redact = (url: string) => url.replace(/\/\/[^@]*@/, '//');

// ---------------------------------------------------------------------------------------------
// Options

class UsageError extends Error {}

interface Options {
  seconds: number;
  clients: number;
  customers: number;
}

function positiveInt(raw: string | undefined, name: string, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) {
    throw new UsageError(`${name} must be a positive integer (got "${raw}")`);
  }
  return Number(raw);
}

function readOptions(): Options {
  const env = processEnv();
  let values: { seconds?: string; clients?: string; customers?: string };
  try {
    ({ values } = parseArgs({
      options: {
        seconds: { type: 'string' },
        clients: { type: 'string' },
        customers: { type: 'string' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return {
    seconds: positiveInt(values.seconds ?? env.BENCH_SECONDS, '--seconds / BENCH_SECONDS', 10),
    clients: positiveInt(values.clients ?? env.BENCH_CLIENTS, '--clients / BENCH_CLIENTS', 8),
    customers: positiveInt(
      values.customers ?? env.BENCH_CUSTOMERS,
      '--customers / BENCH_CUSTOMERS',
      1000,
    ),
  };
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C: stop the measuring loops and fall through to the cleanup that drops the scratch
// database. A second Ctrl-C exits at once.

let interrupted = false;
process.once('SIGINT', () => {
  interrupted = true;
  console.log('\nInterrupted: cleaning up (Ctrl-C again to exit at once).');
  process.once('SIGINT', () => process.exit(130));
});
function checkInterrupted(): void {
  if (interrupted) throw new Error('interrupted');
}

// ---------------------------------------------------------------------------------------------
// Server and scratch database

interface Server {
  /** A URL on the server whose database may be used to create and drop the scratch one. */
  adminUrl: string;
  label: string;
}

/** Connects once; resolves to the error message when the server cannot be reached. */
async function unreachable(url: string): Promise<string | undefined> {
  const sql = postgres(url, { max: 1, connect_timeout: 5, onnotice: () => undefined });
  try {
    await sql`select 1`;
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

async function pickServer(
  scratchDir: string,
  cleanups: Array<() => Promise<void>>,
): Promise<Server> {
  const configured = processEnv().DATABASE_URL;
  if (configured) {
    const problem = await unreachable(configured);
    if (problem) {
      throw new Error(
        `PostgreSQL at DATABASE_URL (${redact(configured)}) is not reachable: ${problem}`,
      );
    }
    return { adminUrl: configured, label: `DATABASE_URL (${redact(configured)})` };
  }
  if (!(await unreachable(LOCAL_URL))) {
    return { adminUrl: LOCAL_URL, label: `local (${LOCAL_URL})` };
  }
  say(`no PostgreSQL at ${LOCAL_URL}; starting an embedded one`);
  const { startEmbeddedPostgres } = await import('../src/stack/postgres.js');
  const pg = await startEmbeddedPostgres(join(scratchDir, 'postgres'), {
    ephemeral: true,
    log: (m) => console.error(m),
  });
  cleanups.push(() => pg.stop());
  return { adminUrl: pg.url, label: `embedded (${redact(pg.url)})` };
}

async function withAdmin<T>(url: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 1, onnotice: () => undefined });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function createScratchDatabase(
  server: Server,
  cleanups: Array<() => Promise<void>>,
): Promise<string> {
  const name = `creditflow_bench_${Date.now()}`;
  await withAdmin(server.adminUrl, (sql) => sql.unsafe(`create database ${name}`));
  cleanups.push(() =>
    withAdmin(server.adminUrl, (sql) =>
      sql.unsafe(`drop database if exists ${name} with (force)`),
    ).then(() => say(`dropped scratch database ${name}`)),
  );
  const url = new URL(server.adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Flushes dirty pages between phases, so one phase's writes are not paid for by the next. */
async function checkpoint(sql: Sql): Promise<void> {
  await sql`checkpoint`.catch(() => undefined); // needs superuser or pg_checkpoint; best effort
}

// ---------------------------------------------------------------------------------------------
// Measurement

interface Measurement {
  variant: string;
  completed: number;
  errors: number;
  seconds: number;
  perSecond: number;
  /** Milliseconds; undefined when nothing completed. */
  p50?: number;
  p99?: number;
  firstError?: string;
}

function percentile(sorted: ArrayLike<number>, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

function summarise(
  variant: string,
  latencies: number[],
  errors: number,
  seconds: number,
  firstError?: string,
): Measurement {
  const sorted = Float64Array.from(latencies).sort();
  return {
    variant,
    completed: latencies.length,
    errors,
    seconds,
    perSecond: latencies.length / seconds,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    firstError,
  };
}

/** Unmeasured run-in before each variant, so JIT compilation, cold caches and plan setup are
 * not billed to whichever variant happens to run first. */
const WARMUP_SECONDS = 1;

/**
 * `clients` loops calling `op` back to back until the time is up, after a warm-up; failures are
 * counted, not fatal. `op` gets a sequence number unique across the warm-up and the run.
 */
async function measure(
  variant: string,
  opts: Options,
  op: (seq: number) => Promise<void>,
): Promise<Measurement> {
  let seq = 0;
  const drive = async (seconds: number, latencies: number[] | undefined) => {
    let errors = 0;
    let firstError: string | undefined;
    const start = performance.now();
    const deadline = start + seconds * 1000;
    await Promise.all(
      Array.from({ length: opts.clients }, async () => {
        while (performance.now() < deadline && !interrupted) {
          const t0 = performance.now();
          try {
            await op(seq++);
            latencies?.push(performance.now() - t0);
          } catch (err) {
            errors++;
            firstError ??= err instanceof Error ? err.message : String(err);
          }
        }
      }),
    );
    checkInterrupted();
    // Wall time to the last posting's end, like pgbench: in-flight work past the deadline counts.
    return { errors, firstError, seconds: (performance.now() - start) / 1000 };
  };
  await drive(WARMUP_SECONDS, undefined);
  const latencies: number[] = [];
  const run = await drive(opts.seconds, latencies);
  return summarise(variant, latencies, run.errors, run.seconds, run.firstError);
}

// ---------------------------------------------------------------------------------------------
// pgbench baseline

async function pgbenchAvailable(): Promise<boolean> {
  try {
    await execFileAsync('pgbench', ['--version'], { env: processEnv() });
    return true;
  } catch {
    return false;
  }
}

async function pgbenchBaseline(url: string, opts: Options, logDir: string): Promise<Measurement> {
  const env = processEnv();
  say(`pgbench: initialising scale ${PGBENCH_SCALE} in the scratch database`);
  await execFileAsync('pgbench', ['-i', '-s', String(PGBENCH_SCALE), '-q', url], { env });
  checkInterrupted();
  await withAdmin(url, checkpoint);
  say(`pgbench: TPC-B-like, ${opts.clients} clients, ${opts.seconds} s`);
  // Per-transaction log (-l) so the baseline gets p50/p99 computed the same way as the ledger's.
  const prefix = join(logDir, 'pgbench');
  const { stdout } = await execFileAsync(
    'pgbench',
    [
      '-c',
      String(opts.clients),
      '-j',
      String(Math.min(2, opts.clients)),
      '-T',
      String(opts.seconds),
      '-n',
      '-l',
      `--log-prefix=${prefix}`,
      url,
    ],
    { env, cwd: logDir, maxBuffer: 16 * 1024 * 1024 },
  );
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout);
  if (!tps) throw new Error(`could not find the tps line in pgbench's output:\n${stdout}`);
  const processed = /number of transactions actually processed: (\d+)/.exec(stdout);
  const failed = /number of failed transactions: (\d+)/.exec(stdout);

  // Log lines: client_id transaction_no elapsed_us script_no epoch_s epoch_us [schedule_lag]
  const latencies: number[] = [];
  for (const file of readdirSync(logDir).filter((f) => f.startsWith('pgbench.'))) {
    for (const line of readFileSync(join(logDir, file), 'utf8').split('\n')) {
      const micros = Number(line.split(' ')[2]);
      if (line && Number.isFinite(micros)) latencies.push(micros / 1000);
    }
  }
  const sorted = Float64Array.from(latencies).sort();
  const perSecond = Number(tps[1]);
  const completed = processed ? Number(processed[1]) : latencies.length;
  return {
    variant: 'pgbench TPC-B-like (baseline)',
    completed,
    errors: failed ? Number(failed[1]) : 0,
    seconds: completed / perSecond,
    perSecond,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
  };
}

// ---------------------------------------------------------------------------------------------
// Ledger

async function createFundedCustomers(sql: Sql, ledger: Ledger, opts: Options): Promise<string[]> {
  // Customers and wallets in one statement: only the funding needs to go through the ledger.
  const rows = await sql<{ customer_id: string }[]>`
    with c as (
      insert into customers (email)
      select 'bench-' || g || '@example.test' from generate_series(1, ${opts.customers}::int) g
      returning id
    )
    insert into accounts (kind, customer_id, code)
    select 'wallet', id, 'wallet' from c
    returning customer_id`;
  const ids = rows.map((r) => r.customer_id);
  // Funding through postEntry keeps postings, balance_after chains and system shards consistent.
  let next = 0;
  await Promise.all(
    Array.from({ length: opts.clients }, async () => {
      while (next < ids.length) {
        checkInterrupted();
        const customer = ids[next++]!;
        await ledger.postEntry({
          idempotencyKey: `bench-funding-${customer}`,
          type: 'adjustment',
          description: 'Benchmark funding',
          lines: [
            { account: { wallet: customer }, amount: FUNDING_PER_CUSTOMER },
            { account: { system: 'adjustments' }, amount: -FUNDING_PER_CUSTOMER },
          ],
        });
      }
    }),
  );
  return ids;
}

function debit(customer: string, system: string, idempotencyKey: string): PostEntryInput {
  return {
    idempotencyKey,
    type: 'bench_debit',
    description: 'Benchmark debit',
    lines: [
      { account: { wallet: customer }, amount: -1 },
      { account: { system }, amount: 1 },
    ],
  };
}

async function ledgerRuns(
  url: string,
  opts: Options,
): Promise<{ runs: Measurement[]; checkOk: boolean }> {
  // One pool the size of the client count, as pgbench opens one connection per client.
  const db = createDatabase(url, { max: opts.clients, applicationName: 'creditflow-bench' });
  try {
    const ledger = createLedger(db.sql);
    say(`creating and funding ${opts.customers} customers`);
    const customers = await createFundedCustomers(db.sql, ledger, opts);
    const pick = () => customers[Math.floor(Math.random() * customers.length)]!;
    const tag = Date.now().toString(36);
    const posted: PostEntryInput[] = [];
    const runs: Measurement[] = [];

    const debitRun = async (variant: string, system: string) => {
      await checkpoint(db.sql);
      say(`${variant}, ${opts.clients} clients, ${opts.seconds} s`);
      const run = await measure(variant, opts, async (seq) => {
        const input = debit(pick(), system, `bench-${system}-${tag}-${seq}`);
        await ledger.postEntry(input);
        posted.push(input);
      });
      runs.push(run);
    };

    await debitRun('ledger (a) sharded revenue', 'revenue');

    // A one-row system account: every posting queues on the same row lock until commit.
    await db.sql`insert into accounts (kind, code, shard) values ('system', 'bench_single', 0)`;
    // Same ledger instance on purpose: it reloads system accounts on an unknown code, and its
    // wallet-id cache stays warm, so (a) and (b) differ only in the system row they lock.
    await debitRun('ledger (b) single-row system', 'bench_single');

    await checkpoint(db.sql);
    say(
      `ledger (c) idempotent replay of ${posted.length} posted keys, ${opts.clients} clients, ${opts.seconds} s`,
    );
    if (posted.length > 0) {
      runs.push(
        await measure('ledger (c) idempotent replay', opts, async () => {
          const result = await ledger.postEntry(posted[Math.floor(Math.random() * posted.length)]!);
          if (!result.replayed) {
            throw new Error(`replay of ${result.idempotencyKey} posted a new entry`);
          }
        }),
      );
    }

    say('running the invariant checker');
    const report = await checkLedger(db.sql);
    const { accounts, entries, postings } = report.counts;
    console.log(
      `\nInvariant check: ${report.ok ? 'PASSED' : 'FAILED'} ` +
        `(${accounts} accounts, ${entries} entries, ${postings} postings)`,
    );
    for (const v of report.violations.slice(0, 20)) console.log(`  ${v.invariant}: ${v.detail}`);
    return { runs, checkOk: report.ok };
  } finally {
    await db.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Report

function printTable(baseline: Measurement | undefined, runs: Measurement[]): void {
  const ms = (v: number | undefined) => (v === undefined ? '—' : v.toFixed(2));
  const header = ['variant', 'done', 'errors', 'per second', 'p50 ms', 'p99 ms', 'vs pgbench'];
  const rows = [baseline, ...runs]
    .filter((m): m is Measurement => m !== undefined)
    .map((m) => [
      m.variant,
      String(m.completed),
      String(m.errors),
      m.perSecond.toFixed(1),
      ms(m.p50),
      ms(m.p99),
      baseline ? `${(m.perSecond / baseline.perSecond).toFixed(2)}×` : 'n/a',
    ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(`\n${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}`);
  for (const r of rows) console.log(line(r));

  console.log('');
  if (!baseline) console.log('pgbench baseline: unavailable (pgbench is not on PATH).');
  const sharded = runs.find((r) => r.variant.includes('(a)'));
  const single = runs.find((r) => r.variant.includes('(b)'));
  if (baseline && sharded) {
    console.log(
      `ledger/pgbench (sharded) = ${(sharded.perSecond / baseline.perSecond).toFixed(2)}×`,
    );
  }
  if (sharded && single && single.perSecond > 0) {
    const p99 =
      sharded.p99 !== undefined && single.p99 !== undefined
        ? `, p99 single-row/sharded = ${(single.p99 / sharded.p99).toFixed(2)}×`
        : '';
    console.log(
      `sharded/single-row throughput = ${(sharded.perSecond / single.perSecond).toFixed(2)}×${p99}`,
    );
  }
  for (const m of runs.filter((r) => r.firstError)) {
    console.log(`${m.variant}: ${m.errors} failed, first: ${m.firstError}`);
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const opts = readOptions();
  const cleanups: Array<() => Promise<void>> = [];
  const scratchDir = mkdtempSync(join(tmpdir(), 'creditflow-bench-'));
  // The embedded PostgreSQL runs as an unprivileged user, which must be able to reach its folder.
  chmodSync(scratchDir, 0o755);
  cleanups.push(() => {
    rmSync(scratchDir, { recursive: true, force: true });
    return Promise.resolve();
  });
  try {
    const server = await pickServer(scratchDir, cleanups);
    const url = await createScratchDatabase(server, cleanups);
    const settings = await withAdmin(url, async (sql) => {
      const [row] = await sql<{ version: string; fsync: string; sync: string }[]>`
        select current_setting('server_version') as version, current_setting('fsync') as fsync,
               current_setting('synchronous_commit') as sync`;
      return row!;
    });
    console.log(
      `PostgreSQL ${settings.version}, ${server.label}; fsync=${settings.fsync}, ` +
        `synchronous_commit=${settings.sync}; ${cpus().length} CPUs\n` +
        `scratch database ${new URL(url).pathname.slice(1)}; ` +
        `${opts.clients} clients, ${opts.seconds} s per run, ${opts.customers} customers`,
    );
    await runMigrations(url);

    let baseline: Measurement | undefined;
    if (await pgbenchAvailable()) {
      const logDir = join(scratchDir, 'pgbench-log');
      mkdirSync(logDir);
      baseline = await pgbenchBaseline(url, opts, logDir);
    } else {
      say('pgbench is not on PATH: the baseline is unavailable');
    }
    checkInterrupted();

    const { runs, checkOk } = await ledgerRuns(url, opts);
    printTable(baseline, runs);
    return checkOk ? 0 : 1;
  } finally {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((err: unknown) =>
        console.error(`cleanup failed: ${(err as Error).message}`),
      );
    }
  }
}

let exitCode: number;
try {
  exitCode = await main();
} catch (err) {
  if (interrupted) {
    // The cleanup above already ran; a stack trace of the abort would only be noise.
  } else if (err instanceof UsageError) {
    console.error(
      `${err.message}\nusage: npm run bench -- [--seconds N] [--clients N] [--customers N]`,
    );
  } else {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  }
  exitCode = interrupted ? 130 : 1;
}
process.exit(exitCode);
