// `npm run bench:ledger` (the first half of `npm run bench`): ledger posting throughput next to a
// pgbench baseline measured on the same PostgreSQL server in the same run, at 1, 8 and 32
// clients, so the numbers say how much the ledger costs over the server's plain transaction rate
// rather than how fast this machine is.
// Two posting paths run side by side: `function` (one call of ledger_post_entry, what postEntry
// uses) and `statements` (the multi-statement transaction it falls back to). Then growth: the
// same posting with 1,000 and with 100,000 wallets and a million postings already in the ledger.
// And what each part of a posting costs on the server alone: pgbench calling the function, then
// copies of it with the guards, the system-account balances and per-grant accounting taken out.
//
//   npm run bench:ledger -- [--seconds 5] [--clients 1,8,32] [--customers 1000] [--no-growth]
//                    [--no-parts] [--growth-postings 1000000] [--growth-wallets 1000,100000]
//   (or BENCH_SECONDS, BENCH_CLIENTS, BENCH_CUSTOMERS; flags win)
//
// Prints a table and writes bench/results/ledger.json and bench/results/ledger.svg. Everything
// runs in scratch databases that are dropped at the end, also on failure; the invariant checker
// runs on each before it is dropped (but the parts database, which the cut-down copies leave
// inconsistent on purpose), and a failed check fails the run.
import { execFile } from 'node:child_process';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import postgres from 'postgres';
import { processEnv } from '../src/config.js';
import { createDatabase, runMigrations, type Sql } from '../src/db/client.js';
import { checkLedger } from '../src/ledger/check.js';
import {
  createLedger,
  type AfterPost,
  type Ledger,
  type PostEntryInput,
} from '../src/ledger/ledger.js';

const LOCAL_URL = 'postgres://postgres@127.0.0.1:5432/test';
const PGBENCH_SCALE = 10;
/** Far more than any wallet can spend in a run, so no debit fails for lack of credits. */
const FUNDING_PER_CUSTOMER = 1_000_000;
/** The client count the growth runs and the extra variants use. */
const GROWTH_CLIENTS = 8;

const execFileAsync = promisify(execFile);
const say = (message: string) => console.log(`· ${message}`);
const redact = (url: string) => url.replace(/\/\/[^@]*@/, '//');

// ---------------------------------------------------------------------------------------------
// Options

class UsageError extends Error {}

export interface LedgerBenchOptions {
  /** Seconds per measured run (each after a 1 s warm-up). */
  seconds: number;
  /** Client counts, each measured for pgbench and both posting paths. */
  clients: number[];
  /** Wallets of the main runs. */
  customers: number;
  /** Run the growth datasets (wallet counts, each with `growthPostings` pre-loaded). */
  growth: boolean;
  /** Measure what each part of a posting costs on the server alone (pgbench, cut-down copies). */
  parts: boolean;
  growthWallets: number[];
  growthPostings: number;
  /** Where ledger.json and ledger.svg go; undefined: write nothing. */
  resultsDir?: string | undefined;
}

export const DEFAULT_BENCH_OPTIONS: LedgerBenchOptions = {
  seconds: 5,
  clients: [1, 8, 32],
  customers: 1000,
  growth: true,
  parts: true,
  growthWallets: [1000, 100_000],
  growthPostings: 1_000_000,
  resultsDir: resolve(import.meta.dirname, 'results'),
};

interface RunShape {
  seconds: number;
  clients: number;
}

function positiveInt(raw: string | undefined, name: string, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) {
    throw new UsageError(`${name} must be a positive integer (got "${raw}")`);
  }
  return Number(raw);
}

function positiveInts(raw: string | undefined, name: string, fallback: number[]): number[] {
  if (raw === undefined || raw === '') return fallback;
  return raw.split(',').map((part) => positiveInt(part.trim(), name, 0));
}

function readOptions(): LedgerBenchOptions {
  const env = processEnv();
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        seconds: { type: 'string' },
        clients: { type: 'string' },
        customers: { type: 'string' },
        'no-growth': { type: 'boolean' },
        'no-parts': { type: 'boolean' },
        'growth-wallets': { type: 'string' },
        'growth-postings': { type: 'string' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const text = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const d = DEFAULT_BENCH_OPTIONS;
  return {
    ...d,
    seconds: positiveInt(
      text(values['seconds']) ?? env.BENCH_SECONDS,
      '--seconds / BENCH_SECONDS',
      d.seconds,
    ),
    clients: positiveInts(
      text(values['clients']) ?? env.BENCH_CLIENTS,
      '--clients / BENCH_CLIENTS',
      d.clients,
    ),
    customers: positiveInt(
      text(values['customers']) ?? env.BENCH_CUSTOMERS,
      '--customers / BENCH_CUSTOMERS',
      d.customers,
    ),
    growth: values['no-growth'] !== true,
    parts: values['no-parts'] !== true,
    growthWallets: positiveInts(
      text(values['growth-wallets']),
      '--growth-wallets',
      d.growthWallets,
    ),
    growthPostings: positiveInt(
      text(values['growth-postings']),
      '--growth-postings',
      d.growthPostings,
    ),
  };
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C: stop the measuring loops and fall through to the cleanup that drops the scratch
// database. A second Ctrl-C exits at once.

let interrupted = false;
function onInterrupt(): void {
  process.once('SIGINT', () => {
    interrupted = true;
    console.log('\nInterrupted: cleaning up (Ctrl-C again to exit at once).');
    process.once('SIGINT', () => process.exit(130));
  });
}
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

/** Drops a scratch database by name or URL (also when sessions are still connected). */
async function dropScratchDatabase(server: Server, nameOrUrl: string): Promise<void> {
  const name = nameOrUrl.includes('://') ? new URL(nameOrUrl).pathname.slice(1) : nameOrUrl;
  await withAdmin(server.adminUrl, (sql) =>
    sql.unsafe(`drop database if exists ${name} with (force)`),
  );
}

async function createScratchDatabase(
  server: Server,
  cleanups: Array<() => Promise<void>>,
): Promise<string> {
  const name = `creditflow_bench_${Date.now()}`;
  await withAdmin(server.adminUrl, (sql) => sql.unsafe(`create database ${name}`));
  cleanups.push(() =>
    dropScratchDatabase(server, name).then(() => say(`dropped scratch database ${name}`)),
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
  opts: RunShape,
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

async function pgbenchInit(url: string): Promise<void> {
  say(`pgbench: initialising scale ${PGBENCH_SCALE} in the scratch database`);
  await execFileAsync('pgbench', ['-i', '-s', String(PGBENCH_SCALE), '-q', url], {
    env: processEnv(),
  });
  checkInterrupted();
}

async function pgbenchBaseline(
  url: string,
  opts: RunShape,
  scratchDir: string,
  /** A custom script run with prepared statements instead of the built-in TPC-B-like one. */
  custom?: { script: string; variant: string },
): Promise<Measurement> {
  const env = processEnv();
  const logDir = mkdtempSync(join(scratchDir, 'pgbench-log-'));
  await withAdmin(url, checkpoint);
  say(`pgbench: ${custom?.variant ?? `TPC-B-like, ${opts.clients} clients`}, ${opts.seconds} s`);
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
      ...(custom ? ['-M', 'prepared', '-f', custom.script] : []),
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
    variant: custom?.variant ?? `pgbench TPC-B-like, ${opts.clients} clients`,
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

type PostingPath = 'function' | 'statements';

/**
 * The server's connection slots are shared with whatever else runs on it: a step that finds
 * them all taken waits and tries again rather than failing the run (or counting errors).
 */
async function whenConnectionsFree<T>(what: string, step: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      const stderr = (err as { stderr?: unknown }).stderr;
      const message = `${err instanceof Error ? err.message : ''} ${typeof stderr === 'string' ? stderr : ''}`;
      if (!/too many clients|remaining connection slots/.test(message) || attempt >= 12) throw err;
      say(`${what}: the server has no free connection slot; retrying in 5 s`);
      await new Promise((r) => setTimeout(r, 5000));
      checkInterrupted();
    }
  }
}

/** A pool of exactly `clients` connections, all opened before anything is measured. */
async function openPool(url: string, clients: number): Promise<ReturnType<typeof createDatabase>> {
  return whenConnectionsFree(`opening ${clients} connections`, async () => {
    const db = createDatabase(url, { max: clients, applicationName: 'creditflow-bench' });
    try {
      await Promise.all(Array.from({ length: clients }, () => db.sql`select pg_sleep(0.05)`));
      return db;
    } catch (err) {
      await db.close();
      throw err;
    }
  });
}

async function createWallets(sql: Sql, count: number): Promise<string[]> {
  // Customers and wallets in one statement: only the funding needs to go through the ledger.
  const rows = await sql<{ customer_id: string }[]>`
    with c as (
      insert into customers (email)
      select 'bench-' || g || '-' || gen_random_uuid() || '@example.test'
      from generate_series(1, ${count}::int) g
      returning id
    )
    insert into accounts (kind, customer_id, code)
    select 'wallet', id, 'wallet' from c
    returning customer_id`;
  return rows.map((r) => r.customer_id);
}

async function fundThroughLedger(ledger: Ledger, ids: string[], clients: number): Promise<void> {
  // Funding through postEntry keeps postings, balance_after chains and system shards consistent.
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
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
}

/**
 * Wallets, each funded by one entry and one grant, and debits of 1 credit spread over them, up
 * to `postings` postings, written set-wise (generate_series) with the ledger's triggers off for
 * the one loading transaction (superuser): the rows are exactly what postEntry would have
 * written, so the checker holds on them afterwards.
 */
async function preload(url: string, wallets: number, postings: number): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => undefined });
  try {
    await createWallets(sql, wallets);
    const debits = Math.max(0, Math.floor(postings / 2) - wallets);
    await sql.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      await tx`create temp table w on commit drop as
        select (row_number() over (order by id) - 1)::int as n, id as account_id, customer_id,
               nextval(pg_get_serial_sequence('entries', 'id')) as entry_id,
               gen_random_uuid() as grant_id
        from accounts where kind = 'wallet' order by id`;
      await tx`create temp table d on commit drop as
        select g, (g % ${wallets}::int) as n,
               nextval(pg_get_serial_sequence('entries', 'id')) as entry_id
        from generate_series(0, ${debits}::int - 1) g order by g`;
      await tx`insert into entries (id, idempotency_key, content_hash, type, description)
        select entry_id, 'bench-funding-' || customer_id, 'preload', 'adjustment', 'Benchmark funding'
        from w order by entry_id`;
      await tx`insert into entries (id, idempotency_key, content_hash, type, description)
        select entry_id, 'bench-preload-' || g, 'preload', 'bench_debit', 'Benchmark debit'
        from d order by entry_id`;
      await tx`create temp table plan on commit drop as
        with adj as (select min(id) as id from accounts where kind = 'system' and code = 'adjustments'),
             rev as (select array_agg(id order by shard) as ids from accounts
                     where kind = 'system' and code = 'revenue')
        select row_number() over (order by entry_id, account_id) as seq, entry_id, account_id, amount
        from (
          select w.entry_id, w.account_id, ${FUNDING_PER_CUSTOMER}::bigint as amount from w
          union all select w.entry_id, adj.id, -${FUNDING_PER_CUSTOMER}::bigint from w, adj
          union all select d.entry_id, w.account_id, -1 from d join w using (n)
          union all select d.entry_id, rev.ids[1 + d.g % cardinality(rev.ids)], 1 from d, rev
        ) lines`;
      await tx`insert into postings (entry_id, account_id, amount, balance_after)
        select entry_id, account_id, amount,
               sum(amount) over (partition by account_id order by seq)
        from plan order by seq`;
      await tx`update accounts a set balance = s.total, updated_at = now()
        from (select account_id, sum(amount) as total from plan group by account_id) s
        where a.id = s.account_id`;
      await tx`insert into grants (id, customer_id, category, source, credits, remaining, entry_id, reason)
        select w.grant_id, w.customer_id, 'paid', 'adjustment', ${FUNDING_PER_CUSTOMER}::bigint,
               ${FUNDING_PER_CUSTOMER}::bigint - coalesce(c.drawn, 0), w.entry_id, 'benchmark funding'
        from w left join (select n, count(*) as drawn from d group by n) c using (n)`;
      await tx`insert into grant_postings (entry_id, grant_id, customer_id, amount, kind)
        select entry_id, grant_id, customer_id, ${FUNDING_PER_CUSTOMER}::bigint, 'grant' from w
        order by entry_id`;
      await tx`insert into grant_postings (entry_id, grant_id, customer_id, amount, kind)
        select d.entry_id, w.grant_id, w.customer_id, -1, 'draw' from d join w using (n)
        order by d.entry_id`;
    });
    await sql`vacuum analyze`;
  } finally {
    await sql.end({ timeout: 5 });
  }
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

/** The ledger's debit loop on one path; returns the keys it posted (for the replay run). */
async function debitRun(
  sql: Sql,
  ledger: Ledger,
  customers: string[],
  label: string,
  shape: RunShape,
  system = 'revenue',
  posted?: PostEntryInput[],
  afterPost?: AfterPost,
): Promise<Measurement> {
  const pick = () => customers[Math.floor(Math.random() * customers.length)]!;
  const tag = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  await checkpoint(sql);
  say(`${label}, ${shape.seconds} s`);
  return measure(label, shape, async (seq) => {
    const input = debit(pick(), system, `bench-${tag}-${seq}`);
    await ledger.postEntry(input, afterPost);
    posted?.push(input);
  });
}

interface CheckResult {
  database: string;
  ok: boolean;
  counts: { accounts: number; entries: number; postings: number };
  violations: string[];
}

async function runChecker(sql: Sql, database: string): Promise<CheckResult> {
  say(`running the invariant checker on ${database}`);
  const report = await checkLedger(sql);
  const result = {
    database,
    ok: report.ok,
    counts: report.counts,
    violations: report.violations.slice(0, 20).map((v) => `${v.invariant}: ${v.detail}`),
  };
  const { accounts, entries, postings } = report.counts;
  console.log(
    `  invariant check (${database}): ${report.ok ? 'PASSED' : 'FAILED'} ` +
      `(${accounts} accounts, ${entries} entries, ${postings} postings)`,
  );
  for (const v of result.violations) console.log(`    ${v}`);
  return result;
}

const ledgerOn = (sql: Sql, path: PostingPath) => createLedger(sql, undefined, { path });

// ---------------------------------------------------------------------------------------------
// What each part of a posting costs: the server alone

/**
 * A copy of ledger_post_entry with parts taken out, made from the function as the database
 * holds it. Each cut names the text it replaces; a definition that no longer holds that text
 * makes the variant unavailable (reported, not fatal) rather than measuring something else.
 */
interface PartCut {
  /** What the cut takes out. */
  what: string;
  apply: (definition: string) => string | undefined;
}

const replaceOnce = (text: string, from: string, to: string): string | undefined =>
  text.split(from).length === 2 ? text.replace(from, to) : undefined;

/** The system accounts' running balances: their UPDATE becomes a constant (no row, no lock). */
const WITHOUT_SYSTEM_BALANCES: PartCut = {
  what: 'system-account running balances',
  apply: (d) =>
    replaceOnce(
      d,
      `      UPDATE accounts SET balance = balance + v_line.n, updated_at = now()
        WHERE id = v_line.a AND kind = v_line.k AND code = v_line.o
        RETURNING balance INTO v_balance;`,
      '      v_balance := 0;\n      PERFORM 1;',
    ),
};

/** Per-grant accounting: no draw in burn-down order, no grant update, no grant posting. */
const WITHOUT_GRANTS: PartCut = {
  what: 'per-grant accounting',
  apply: (d) => {
    const opened = replaceOnce(
      d,
      '  v_kind := CASE p_type',
      '  IF false THEN\n  v_kind := CASE p_type',
    );
    return (
      opened &&
      replaceOnce(
        opened,
        '  -- Every account in ascending id order',
        '  END IF;\n  -- Every account in ascending id order',
      )
    );
  },
};

export interface PartsRow {
  /** The posting as far as this row goes. */
  variant: string;
  /** The parts taken out, cumulatively. */
  without: string[];
  measurement: Measurement;
  /** Why it could not be measured. */
  unavailable?: string;
}

export interface PartsResult {
  clients: number;
  tpcb: Measurement;
  rows: PartsRow[];
}

/**
 * pgbench (prepared statements, GROWTH_CLIENTS clients) calling ledger_post_entry with a debit
 * line set read from a table, then the same with parts of the posting taken out one after the
 * other: the guard triggers (session_replication_role = replica), the system accounts' running
 * balances, per-grant accounting. Next to TPC-B-like in the same database. No node client is
 * involved, so the ratios are the server's cost alone. Runs in its own scratch database, which
 * the cut-down copies leave inconsistent on purpose: it is dropped, not checked.
 */
async function partsCost(
  server: Server,
  cleanups: Array<() => Promise<void>>,
  opts: LedgerBenchOptions,
  scratchDir: string,
): Promise<PartsResult> {
  const clients = GROWTH_CLIENTS;
  const shape = { clients, seconds: opts.seconds };
  const url = await createScratchDatabase(server, cleanups);
  await runMigrations(url);
  await pgbenchInit(url);
  const setup = await openPool(url, clients);
  let lineSets: number;
  let definition: string;
  try {
    say(`parts: creating and funding ${opts.customers} wallets`);
    const customers = await createWallets(setup.sql, opts.customers);
    await fundThroughLedger(ledgerOn(setup.sql, 'function'), customers, clients);
    // Every wallet with every revenue shard, as the function takes its lines.
    await setup.sql`
      create table bench_lines as
      select row_number() over (order by w.id, s.id) - 1 as id,
             jsonb_build_array(
               jsonb_build_object('i', 0, 'a', w.id, 'k', 'wallet', 'o', w.customer_id, 'n', -1),
               jsonb_build_object('i', 1, 'a', s.id, 'k', 'system', 'o', 'revenue', 'n', 1)) as lines
      from accounts w, accounts s
      where w.kind = 'wallet' and s.kind = 'system' and s.code = 'revenue'`;
    await setup.sql`alter table bench_lines add primary key (id)`;
    await setup.sql`vacuum analyze`;
    const [count] = await setup.sql<{ n: number }[]>`select count(*)::int as n from bench_lines`;
    lineSets = count!.n;
    const [def] = await setup.sql<{ d: string }[]>`
      select pg_get_functiondef('ledger_post_entry'::regproc) as d`;
    definition = def!.d;
  } finally {
    await setup.close();
  }

  const script = (name: string, fn: string, guards: boolean) => {
    const file = join(scratchDir, `parts-${name}.sql`);
    writeFileSync(
      file,
      [
        `\\set r random(0, ${lineSets - 1})`,
        ...(guards ? [] : ['set session_replication_role = replica;']),
        `select ${fn}('parts-' || gen_random_uuid(), 'h', 'bench_debit', 'Benchmark debit', ` +
          `null, '{}', null, (select lines from bench_lines where id = :r));`,
        '',
      ].join('\n'),
    );
    return file;
  };
  const steps: Array<{ name: string; variant: string; guards: boolean; cuts: PartCut[] }> = [
    { name: 'full', variant: 'the posting as it runs', guards: true, cuts: [] },
    { name: 'no-guards', variant: 'without the guard triggers', guards: false, cuts: [] },
    {
      name: 'no-system',
      variant: '… and without system-account running balances',
      guards: false,
      cuts: [WITHOUT_SYSTEM_BALANCES],
    },
    {
      name: 'floor',
      variant: '… and without per-grant accounting (entry, two postings, wallet balance)',
      guards: false,
      cuts: [WITHOUT_SYSTEM_BALANCES, WITHOUT_GRANTS],
    },
  ];

  const tpcb = await pgbenchBaseline(url, shape, scratchDir);
  const rows: PartsRow[] = [];
  for (const step of steps) {
    checkInterrupted();
    const without = [...(step.guards ? [] : ['guard triggers']), ...step.cuts.map((c) => c.what)];
    const label = `ledger_post_entry ${step.variant}, ${clients} clients`;
    let fn = 'ledger_post_entry';
    let unavailable: string | undefined;
    if (step.cuts.length > 0) {
      let copy: string | undefined = definition.replace(
        /FUNCTION public\.ledger_post_entry\(/,
        `FUNCTION public.bench_post_${step.name.replace('-', '_')}(`,
      );
      for (const cut of step.cuts) {
        copy = copy && cut.apply(copy);
        if (!copy) {
          unavailable = `ledger_post_entry no longer holds the text the "${cut.what}" cut replaces`;
          break;
        }
      }
      if (copy) {
        fn = `bench_post_${step.name.replace('-', '_')}`;
        await withAdmin(url, (sql) => sql.unsafe(copy));
      }
    }
    if (unavailable) {
      say(`parts: ${label}: unavailable (${unavailable})`);
      rows.push({ variant: step.variant, without, measurement: noneMeasured(label), unavailable });
      continue;
    }
    try {
      const measurement = await pgbenchBaseline(url, shape, scratchDir, {
        script: script(step.name, fn, step.guards),
        variant: label,
      });
      rows.push({ variant: step.variant, without, measurement });
    } catch (err) {
      const message =
        ((err as { stderr?: string }).stderr || (err as Error).message)
          .split('\n')
          .find((l) => l.includes('ERROR')) ?? (err as Error).message;
      say(`parts: ${label}: failed (${message})`);
      rows.push({
        variant: step.variant,
        without,
        measurement: noneMeasured(label),
        unavailable: message.slice(0, 300),
      });
    }
  }
  // The cut-down copies broke this database's invariants on purpose: drop it now.
  await dropScratchDatabase(server, url);
  return { clients, tpcb, rows };
}

const noneMeasured = (variant: string): Measurement => ({
  variant,
  completed: 0,
  errors: 0,
  seconds: 0,
  perSecond: 0,
});

// ---------------------------------------------------------------------------------------------
// Results

export interface ScalingRow {
  clients: number;
  pgbench: Measurement;
  statements: Measurement;
  function: Measurement;
}

export interface GrowthRow {
  wallets: number;
  /** Postings in the ledger before the run. */
  postings: number;
  clients: number;
  statements: Measurement;
  function: Measurement;
}

export interface LedgerBenchResult {
  at: string;
  server: {
    version: string;
    fsync: string;
    synchronousCommit: string;
    cpus: number;
    label: string;
  };
  options: Omit<LedgerBenchOptions, 'resultsDir'>;
  scaling: ScalingRow[];
  /** Other shapes at GROWTH_CLIENTS: with an afterPost write, one-row system account, replays. */
  variants: Measurement[];
  growth: GrowthRow[];
  /** pgbench at GROWTH_CLIENTS: the baseline of `variants` and `growth`. */
  growthBaseline?: Measurement | undefined;
  /** What each part of a posting costs on the server alone (pgbench driving the function). */
  parts?: PartsResult | undefined;
  checks: CheckResult[];
  ok: boolean;
}

const ratio = (m: Measurement, base: Measurement | undefined) =>
  base && base.perSecond > 0 ? m.perSecond / base.perSecond : undefined;
const times = (r: number | undefined) => (r === undefined ? 'n/a' : `${r.toFixed(2)}×`);

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function measurementRows(result: LedgerBenchResult): string[][] {
  const ms = (v: number | undefined) => (v === undefined ? '—' : v.toFixed(2));
  const row = (m: Measurement, base: Measurement | undefined) => [
    m.variant,
    String(m.completed),
    String(m.errors),
    m.perSecond.toFixed(1),
    ms(m.p50),
    ms(m.p99),
    times(ratio(m, base)),
  ];
  const rows: string[][] = [];
  for (const s of result.scaling) {
    rows.push(row(s.pgbench, s.pgbench), row(s.statements, s.pgbench), row(s.function, s.pgbench));
  }
  for (const v of result.variants) rows.push(row(v, result.growthBaseline));
  for (const g of result.growth) {
    rows.push(row(g.statements, result.growthBaseline), row(g.function, result.growthBaseline));
  }
  return rows;
}

/** The summary as a Markdown table (the README's "Ledger benchmark" section shows it). */
export function markdownSummary(result: LedgerBenchResult): string {
  const lines = [
    '| shape | clients | pgbench tps | statements / s | function / s | statements vs pgbench | function vs pgbench |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const s of result.scaling) {
    lines.push(
      `| ${result.options.customers.toLocaleString('en')} wallets | ${s.clients} | ${s.pgbench.perSecond.toFixed(0)} | ` +
        `${s.statements.perSecond.toFixed(0)} | ${s.function.perSecond.toFixed(0)} | ` +
        `${times(ratio(s.statements, s.pgbench))} | ${times(ratio(s.function, s.pgbench))} |`,
    );
  }
  for (const g of result.growth) {
    const base = result.growthBaseline;
    lines.push(
      `| ${g.wallets.toLocaleString('en')} wallets + ${g.postings.toLocaleString('en')} postings | ${g.clients} | ` +
        `${base ? base.perSecond.toFixed(0) : 'n/a'} | ${g.statements.perSecond.toFixed(0)} | ` +
        `${g.function.perSecond.toFixed(0)} | ${times(ratio(g.statements, base))} | ${times(ratio(g.function, base))} |`,
    );
  }
  return lines.join('\n');
}

/** The parts table: each cut-down posting next to TPC-B-like, on the server alone. */
export function partsSummary(parts: PartsResult): string {
  const lines = [
    `| posting (pgbench, ${parts.clients} clients, server alone) | per second | vs TPC-B-like (${parts.tpcb.perSecond.toFixed(0)} tps) | vs the posting as it runs |`,
    '| --- | ---: | ---: | ---: |',
  ];
  const full = parts.rows[0]?.measurement;
  for (const row of parts.rows) {
    const m = row.measurement;
    lines.push(
      row.unavailable
        ? `| ${row.variant} | unavailable: ${row.unavailable} | | |`
        : `| ${row.variant} | ${m.perSecond.toFixed(0)} | ${times(ratio(m, parts.tpcb))} | ${times(full && ratio(m, full))} |`,
    );
  }
  return lines.join('\n');
}

function printResult(result: LedgerBenchResult): void {
  console.log(
    `\n${table(
      ['variant', 'done', 'errors', 'per second', 'p50 ms', 'p99 ms', 'vs pgbench'],
      measurementRows(result),
    )}\n`,
  );
  console.log(markdownSummary(result));
  if (result.parts) console.log(`\n${partsSummary(result.parts)}`);
  const failed = [
    ...result.scaling.flatMap((s) => [s.statements, s.function]),
    ...result.variants,
    ...result.growth.flatMap((g) => [g.statements, g.function]),
  ].filter((m) => m.firstError);
  for (const m of failed) console.log(`${m.variant}: ${m.errors} failed, first: ${m.firstError}`);
  console.log(`\ninvariant checks: ${result.ok ? 'all PASSED' : 'FAILED'}`);
}

/** A bar chart of every ratio to pgbench, hand-written SVG (no dependency). */
export function chartSvg(result: LedgerBenchResult): string {
  const groups: Array<{ label: string; bars: Array<{ name: string; value: number }> }> = [];
  for (const s of result.scaling) {
    groups.push({
      label: `${s.clients} client${s.clients === 1 ? '' : 's'}`,
      bars: [
        { name: 'statements', value: ratio(s.statements, s.pgbench) ?? 0 },
        { name: 'function', value: ratio(s.function, s.pgbench) ?? 0 },
      ],
    });
  }
  for (const g of result.growth) {
    groups.push({
      label: `${g.wallets >= 1000 ? `${g.wallets / 1000}k` : g.wallets} wallets + ${g.postings / 1e6}M`,
      bars: [
        { name: 'statements', value: ratio(g.statements, result.growthBaseline) ?? 0 },
        { name: 'function', value: ratio(g.function, result.growthBaseline) ?? 0 },
      ],
    });
  }
  const colours: Record<string, string> = { statements: '#9aa5b1', function: '#2f6fde' };
  const width = 120 + groups.length * 110;
  const height = 320;
  const top = 40;
  const bottom = 260;
  const max = Math.max(1.2, ...groups.flatMap((g) => g.bars.map((b) => b.value))) * 1.1;
  const y = (v: number) => bottom - (v / max) * (bottom - top);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="12" y="22" font-size="14" font-weight="bold">Ledger postings/s as a ratio of pgbench TPC-B-like (same server, same run)</text>`,
    `<line x1="60" x2="${width - 20}" y1="${bottom}" y2="${bottom}" stroke="#333"/>`,
  ];
  for (let t = 0; t <= max; t += 0.25) {
    parts.push(
      `<line x1="60" x2="${width - 20}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="${t === 1 ? '#d33' : '#eee'}"${t === 1 ? ' stroke-dasharray="4 3"' : ''}/>`,
      `<text x="52" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${t.toFixed(2)}×</text>`,
    );
  }
  groups.forEach((g, i) => {
    const x0 = 80 + i * 110;
    g.bars.forEach((b, j) => {
      const x = x0 + j * 42;
      parts.push(
        `<rect x="${x}" y="${y(b.value).toFixed(1)}" width="36" height="${(bottom - y(b.value)).toFixed(1)}" fill="${colours[b.name]}"/>`,
        `<text x="${x + 18}" y="${(y(b.value) - 4).toFixed(1)}" text-anchor="middle">${b.value.toFixed(2)}</text>`,
      );
    });
    parts.push(`<text x="${x0 + 39}" y="${bottom + 18}" text-anchor="middle">${g.label}</text>`);
  });
  const legendY = height - 20;
  parts.push(
    `<rect x="80" y="${legendY - 10}" width="12" height="12" fill="${colours['statements']}"/>`,
    `<text x="96" y="${legendY}">statements (multi-statement transaction)</text>`,
    `<rect x="360" y="${legendY - 10}" width="12" height="12" fill="${colours['function']}"/>`,
    `<text x="376" y="${legendY}">function (ledger_post_entry, one round trip)</text>`,
    `</svg>`,
  );
  return `${parts.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------

/** Runs the whole benchmark; the caller decides what a failed check means. */
export async function runLedgerBench(
  partial: Partial<LedgerBenchOptions> = {},
): Promise<LedgerBenchResult> {
  const opts: LedgerBenchOptions = { ...DEFAULT_BENCH_OPTIONS, ...partial };
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
        `clients ${opts.clients.join(', ')}; ${opts.seconds} s per run; ${opts.customers} wallets` +
        (opts.growth
          ? `; growth: ${opts.growthWallets.join(' and ')} wallets with ${opts.growthPostings} postings`
          : ''),
    );
    await runMigrations(url);
    const hasPgbench = await pgbenchAvailable();
    if (hasPgbench) await pgbenchInit(url);
    else say('pgbench is not on PATH: the baseline is unavailable');

    const result: LedgerBenchResult = {
      at: new Date().toISOString(),
      server: {
        version: settings.version,
        fsync: settings.fsync,
        synchronousCommit: settings.sync,
        cpus: cpus().length,
        label: server.label,
      },
      options: {
        seconds: opts.seconds,
        clients: opts.clients,
        customers: opts.customers,
        growth: opts.growth,
        parts: opts.parts,
        growthWallets: opts.growthWallets,
        growthPostings: opts.growthPostings,
      },
      scaling: [],
      variants: [],
      growth: [],
      checks: [],
      ok: true,
    };
    const baselineAt = (clients: number) =>
      hasPgbench
        ? whenConnectionsFree(`pgbench, ${clients} clients`, () =>
            pgbenchBaseline(url, { clients, seconds: opts.seconds }, scratchDir),
          )
        : Promise.resolve(noneMeasured(`pgbench unavailable, ${clients} clients`));

    // Scaling: at each client count pgbench, then both paths, each with a pool that size.
    const setup = await openPool(url, GROWTH_CLIENTS);
    let customers: string[];
    try {
      say(`creating and funding ${opts.customers} wallets`);
      customers = await createWallets(setup.sql, opts.customers);
      await fundThroughLedger(ledgerOn(setup.sql, 'function'), customers, GROWTH_CLIENTS);
    } finally {
      await setup.close();
    }
    for (const clients of opts.clients) {
      const shape = { clients, seconds: opts.seconds };
      const pgbench = await baselineAt(clients);
      const db = await openPool(url, clients);
      try {
        const statements = await debitRun(
          db.sql,
          ledgerOn(db.sql, 'statements'),
          customers,
          `ledger statements, ${clients} clients`,
          shape,
        );
        const fn = await debitRun(
          db.sql,
          ledgerOn(db.sql, 'function'),
          customers,
          `ledger function, ${clients} clients`,
          shape,
        );
        result.scaling.push({ clients, pgbench, statements, function: fn });
      } finally {
        await db.close();
      }
    }
    result.growthBaseline =
      result.scaling.find((s) => s.clients === GROWTH_CLIENTS)?.pgbench ??
      (await baselineAt(GROWTH_CLIENTS));

    // Other shapes at 8 clients: every posting on one system row, and replays of posted keys.
    {
      const shape = { clients: GROWTH_CLIENTS, seconds: opts.seconds };
      const db = await openPool(url, GROWTH_CLIENTS);
      try {
        const ledger = ledgerOn(db.sql, 'function');
        // What the workflows' postings carry: a write of their own in the posting transaction.
        await db.sql`create table bench_after_post (entry_id bigint primary key, note text)`;
        const outboxRow: AfterPost = async (tx, entry) => {
          await tx`insert into bench_after_post (entry_id, note) values (${entry.entryId}, 'after post')`;
        };
        for (const path of ['statements', 'function'] as const) {
          result.variants.push(
            await debitRun(
              db.sql,
              ledgerOn(db.sql, path),
              customers,
              `ledger ${path} + afterPost insert, ${GROWTH_CLIENTS} clients`,
              shape,
              'revenue',
              undefined,
              outboxRow,
            ),
          );
        }
        await db.sql`insert into accounts (kind, code, shard) values ('system', 'bench_single', 0)`;
        const posted: PostEntryInput[] = [];
        result.variants.push(
          await debitRun(
            db.sql,
            ledger,
            customers,
            `ledger function, one-row system account, ${GROWTH_CLIENTS} clients`,
            shape,
            'bench_single',
            posted,
          ),
        );
        if (posted.length > 0) {
          await checkpoint(db.sql);
          const label = `ledger function, idempotent replay, ${GROWTH_CLIENTS} clients`;
          say(`${label}, ${opts.seconds} s`);
          result.variants.push(
            await measure(label, shape, async () => {
              const replay = await ledger.postEntry(
                posted[Math.floor(Math.random() * posted.length)]!,
              );
              if (!replay.replayed) {
                throw new Error(`replay of ${replay.idempotencyKey} posted a new entry`);
              }
            }),
          );
        }
        result.checks.push(await runChecker(db.sql, `${opts.customers} wallets`));
      } finally {
        await db.close();
      }
    }

    // What each part costs, on the server alone.
    if (opts.parts && hasPgbench) {
      checkInterrupted();
      result.parts = await partsCost(server, cleanups, opts, scratchDir);
    }

    // Growth: the same debit with the ledger already holding a million postings.
    if (opts.growth) {
      for (const wallets of opts.growthWallets) {
        checkInterrupted();
        const gurl = await createScratchDatabase(server, cleanups);
        await runMigrations(gurl);
        say(`growth: loading ${wallets} wallets and ${opts.growthPostings} postings`);
        const loadStarted = performance.now();
        await preload(gurl, wallets, opts.growthPostings);
        say(`growth: loaded in ${((performance.now() - loadStarted) / 1000).toFixed(1)} s`);
        const db = await openPool(gurl, GROWTH_CLIENTS);
        try {
          const [row] = await db.sql<{ n: string }[]>`select count(*) as n from postings`;
          const ids = (
            await db.sql<{ customer_id: string }[]>`
              select customer_id from accounts where kind = 'wallet'`
          ).map((r) => r.customer_id);
          const shape = { clients: GROWTH_CLIENTS, seconds: opts.seconds };
          const label = `${wallets} wallets + ${Number(row!.n)} postings, ${GROWTH_CLIENTS} clients`;
          const statements = await debitRun(
            db.sql,
            ledgerOn(db.sql, 'statements'),
            ids,
            `ledger statements, ${label}`,
            shape,
          );
          const fn = await debitRun(
            db.sql,
            ledgerOn(db.sql, 'function'),
            ids,
            `ledger function, ${label}`,
            shape,
          );
          result.growth.push({
            wallets,
            postings: Number(row!.n),
            clients: GROWTH_CLIENTS,
            statements,
            function: fn,
          });
          result.checks.push(await runChecker(db.sql, label));
        } finally {
          await db.close();
        }
        // Free the disk for the next dataset now rather than at the end.
        await dropScratchDatabase(server, gurl);
      }
    }

    result.ok = result.checks.every((c) => c.ok);
    printResult(result);
    if (opts.resultsDir) {
      mkdirSync(opts.resultsDir, { recursive: true });
      writeFileSync(join(opts.resultsDir, 'ledger.json'), `${JSON.stringify(result, null, 2)}\n`);
      writeFileSync(join(opts.resultsDir, 'ledger.svg'), chartSvg(result));
      say(`wrote ${join(opts.resultsDir, 'ledger.json')} and ledger.svg`);
    }
    return result;
  } finally {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((err: unknown) =>
        console.error(`cleanup failed: ${(err as Error).message}`),
      );
    }
  }
}

async function main(): Promise<number> {
  onInterrupt();
  try {
    const result = await runLedgerBench(readOptions());
    return result.ok ? 0 : 1;
  } catch (err) {
    if (interrupted) {
      // The cleanup already ran; a stack trace of the abort would only be noise.
    } else if (err instanceof UsageError) {
      console.error(
        `${err.message}\nusage: npm run bench:ledger -- [--seconds N] [--clients 1,8,32] [--customers N] ` +
          '[--no-growth] [--no-parts] [--growth-wallets 1000,100000] [--growth-postings N]',
      );
    } else {
      console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    }
    return interrupted ? 130 : 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exit(await main());
}
