// `npm run bench:flows`: what the flows' safety costs, end to end, as ratios to baselines measured
// in the same run on the same Temporal server and worker settings:
//   - end to end: verification purchases/s and p50/p99 (API call → debit → code → completed)
//     against bare workflows with as many no-op activities, with one worker and with two;
//   - hot wallet: 200 concurrent debits on one wallet that covers 100, against 200 wallets;
//   - webhook to credited: p99 at a fixed rate of signed Stripe webhooks, against a bare signal;
//   - timeout to refund: p99 delay past the verification timeout, at two concurrencies;
//   - growth: the end-to-end rate with 1,000 and 100,000 wallets in the ledger.
// Writes bench/results/flows.{json,md,svg} and the README's "Flow benchmarks" table.
//
//   npm run bench:flows -- [--seconds 8] [--clients 8] [--quick] [--only e2e,hot,webhook,timeout,growth]
//
// runFlowBench(options) runs it from another script (npm run bench).
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { isMainModule } from '../src/main.js';
import { writeFlowReports, printFlowTable } from './flows/report.js';
import { bare } from './flows/bare-contract.js';
import { Driver, alternating, fixedRate, pool, type Customer } from './flows/scenarios.js';
import { startFlowStack, type ProcessEnv } from './flows/stack.js';
import type { CpuByPart } from './flows/cpu.js';
import { ratio, summarise, type Summary } from './flows/stats.js';

export interface FlowBenchOptions {
  /** Measured seconds of each closed-loop run (end to end, growth). */
  seconds: number;
  /** Concurrent purchasers in the closed-loop runs. */
  clients: number;
  /** Unmeasured seconds before each closed-loop run. */
  warmupSeconds: number;
  /** Slices the baseline and the app alternate in, within `seconds` each. */
  rounds: number;
  /** Concurrent debits in the hot-wallet run; the wallet covers half of them. */
  hotDebits: number;
  /** Fixed webhook rates (events/s): the target's, and one this machine can sustain. */
  webhookRates: number[];
  /** Seconds of webhooks at each rate. */
  webhookSeconds: number;
  /** The verification timeout of the timeout-to-refund runs. */
  refundTimeoutSeconds: number;
  refundConcurrency: number[];
  growthWallets: number[];
  /** Which figures to measure (all by default); end to end always runs first. */
  only: Array<'hot' | 'webhook' | 'timeout' | 'growth'> | undefined;
  /** Settings for the API and worker processes (e.g. pool sizes), recorded with the results. */
  env: ProcessEnv;
  /** Where flows.json/md/svg go; nothing is written when undefined. */
  resultsDir: string | undefined;
  /** Rewrites the README's "Flow benchmarks" table when set. */
  readme: string | undefined;
  say: (message: string) => void;
}

export const defaultFlowBenchOptions = (): FlowBenchOptions => ({
  seconds: 8,
  clients: 8,
  warmupSeconds: 2,
  rounds: 4,
  hotDebits: 200,
  webhookRates: [10, 50],
  webhookSeconds: 3,
  refundTimeoutSeconds: 2,
  refundConcurrency: [30, 100],
  growthWallets: [1_000, 100_000],
  only: undefined,
  env: {},
  resultsDir: new URL('./results/', import.meta.url).pathname,
  readme: new URL('../README.md', import.meta.url).pathname,
  say: (m) => console.log(`· ${m}`),
});

interface HotRun {
  elapsedMs: number;
  succeeded: number;
  refused: number;
  errors: number;
  /** What the unexpected answers were (a few). */
  unexpected: string[];
}

export interface HistoryShape {
  events: number;
  workflowTasks: number;
}

export interface Compared {
  app: Summary & { firstError?: string };
  baseline: Summary & { firstError?: string };
  rate: number | undefined;
  p50: number | undefined;
  p99: number | undefined;
}

export interface FlowBenchResults {
  startedAt: string;
  seconds: number;
  cpus: number;
  options: Omit<FlowBenchOptions, 'say' | 'resultsDir' | 'readme'>;
  endToEnd: Array<{ workers: number; cpuMsPerPurchase?: CpuCompared } & Compared>;
  /** Call → debit settled (POST 202; the baseline's update-with-start), 1 worker. */
  startToDebit: Compared | undefined;
  /** One completed purchase's history next to one baseline run's: noise-free round trips. */
  history: { app: HistoryShape; baseline: HistoryShape } | undefined;
  /** Undefined when not measured (options.only). */
  hotWallet:
    | {
        debits: number;
        covered: number;
        hot: HotRun & { balanceAfter: number };
        spread: HotRun;
        elapsed: number | undefined;
        overdraft: boolean;
        exact: boolean;
      }
    | undefined;
  webhook: Array<
    {
      eventsPerSecond: number;
      events: number;
      maxSendLagMs: number;
      /** From sending the webhook (or signal) to the workflow's close. */
      closed: { app: Summary; baseline: Summary };
    } & Compared
  >;
  timeoutRefund: Array<
    {
      concurrency: number;
      timeoutSeconds: number;
      /** How late the timer itself fired past the timeout. */
      timerLate: { app: Summary; baseline: Summary };
      /** From the purchase's answer plus the timeout to its workflow closing (rent and release included). */
      closed: { app: Summary; baseline: Summary };
    } & Compared
  >;
  growth: Array<{ wallets: number; workers: number; cpuMsPerPurchase?: CpuCompared } & Compared>;
  /** Rate at the most wallets over the rate at the fewest. */
  growthRate: number | undefined;
}

/** CPU milliseconds per finished purchase, by part of the stack (Linux only). */
export interface CpuCompared {
  app: CpuByPart;
  baseline: CpuByPart;
}

const perPurchase = (cpu: CpuByPart, completed: number): CpuByPart =>
  Object.fromEntries(
    Object.entries(cpu).map(([k, v]) => [k, completed > 0 ? (v * 1000) / completed : 0]),
  );

const compare = (app: Compared['app'], baseline: Compared['baseline']): Compared => ({
  app,
  baseline,
  rate: ratio(app.perSecond, baseline.perSecond),
  p50: ratio(app.p50, baseline.p50),
  p99: ratio(app.p99, baseline.p99),
});

export async function runFlowBench(
  overrides: Partial<FlowBenchOptions> = {},
): Promise<FlowBenchResults> {
  const opts = { ...defaultFlowBenchOptions(), ...overrides };
  const { say } = opts;
  const began = performance.now();
  const startedAt = new Date().toISOString();
  const stack = await startFlowStack({ say, env: opts.env });
  // Ctrl-C: tear the stack down (processes, database, login role) before leaving.
  const interrupted = () => {
    say('interrupted: tearing the stack down');
    void stack.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  let driver: Driver | undefined;
  try {
    driver = await Driver.connect(stack, say);
    const d = driver;
    // Enough buyers that none passes the velocity alert (ALERT_VELOCITY_COUNT purchases within
    // minutes), as real customers would not: the alert's work is not a purchase's usual cost.
    const buyers = await d.customers(500, 1_000_000);
    let turn = 0;
    const nextBuyer = () => buyers[turn++ % buyers.length]!;

    const endToEnd = async () => {
      say(
        `end to end, ${stack.workerCount()} worker(s): baseline and verification purchases, ` +
          `${opts.rounds} alternating rounds`,
      );
      const { app, baseline, cpu } = await alternating(
        opts.clients,
        opts.seconds,
        opts.warmupSeconds,
        opts.rounds,
        () => d.barePurchase(),
        () => d.purchase(nextBuyer()),
        () => d.cpu(),
      );
      return {
        ...compare(app, baseline),
        ...(cpu
          ? {
              cpuMsPerPurchase: {
                app: perPurchase(cpu.app, app.completed),
                baseline: perPurchase(cpu.baseline, baseline.completed),
              },
            }
          : {}),
      };
    };

    const results: Omit<FlowBenchResults, 'seconds'> = {
      startedAt,
      cpus: cpus().length,
      options: {
        seconds: opts.seconds,
        clients: opts.clients,
        warmupSeconds: opts.warmupSeconds,
        rounds: opts.rounds,
        hotDebits: opts.hotDebits,
        webhookRates: opts.webhookRates,
        webhookSeconds: opts.webhookSeconds,
        refundTimeoutSeconds: opts.refundTimeoutSeconds,
        refundConcurrency: opts.refundConcurrency,
        growthWallets: opts.growthWallets,
        only: opts.only,
        env: opts.env,
      },
      endToEnd: [],
      history: undefined,
      startToDebit: undefined,
      hotWallet: undefined,
      webhook: [],
      timeoutRefund: [],
      growth: [],
      growthRate: undefined,
    };

    // 1. End to end, one worker then two.
    d.startLatencies = { app: [], bare: [] };
    results.endToEnd.push({ workers: 1, ...(await endToEnd()) });
    results.startToDebit = compare(
      summarise(d.startLatencies.app, 0, 1),
      summarise(d.startLatencies.bare, 0, 1),
    );
    if (d.lastPurchase.app && d.lastPurchase.bare) {
      results.history = {
        app: await d.historyShape(d.lastPurchase.app),
        baseline: await d.historyShape(d.lastPurchase.bare),
      };
    }
    await stack.addWorkers();
    results.endToEnd.push({ workers: 2, ...(await endToEnd()) });

    const wanted = (item: 'hot' | 'webhook' | 'timeout' | 'growth') =>
      !opts.only || opts.only.includes(item);

    // 2. Hot wallet.
    if (wanted('hot')) results.hotWallet = await hotWallet(d, opts.hotDebits);

    // 3. Webhook to credited.
    for (const rate of wanted('webhook') ? opts.webhookRates : []) {
      results.webhook.push(
        await webhookToCredited(d, rate, Math.round(rate * opts.webhookSeconds), opts, nextBuyer),
      );
    }

    // 4. Timeout to refund.
    for (const concurrency of wanted('timeout') ? opts.refundConcurrency : []) {
      results.timeoutRefund.push(await timeoutToRefund(d, concurrency, opts.refundTimeoutSeconds));
    }

    // 5. Growth.
    for (const wallets of wanted('growth') ? opts.growthWallets : []) {
      const added = await d.preloadWallets(wallets);
      say(`growth: ${wallets} wallets in the ledger (${added} pre-loaded)`);
      results.growth.push({ wallets, workers: stack.workerCount(), ...(await endToEnd()) });
    }
    const first = results.growth[0];
    const last = results.growth[results.growth.length - 1];
    results.growthRate = ratio(last?.app.perSecond, first?.app.perSecond);

    return { ...results, seconds: (performance.now() - began) / 1000 };
  } finally {
    process.off('SIGINT', interrupted);
    await driver?.close().catch(() => undefined);
    await stack.stop();
  }
}

async function hotWallet(
  d: Driver,
  debits: number,
): Promise<NonNullable<FlowBenchResults['hotWallet']>> {
  const covered = Math.floor(debits / 2);
  const run = async (customers: Customer[]) => {
    let succeeded = 0;
    let refused = 0;
    let errors = 0;
    const unexpected = new Set<string>();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: debits }, async (_, i) => {
        try {
          const settled = await d.debitOutcome(customers[i % customers.length]!);
          if (settled === 'debited') succeeded++;
          else if (settled === 'insufficient_credits') refused++;
          else {
            errors++;
            unexpected.add(settled);
          }
        } catch (err) {
          errors++;
          unexpected.add((err as Error).message);
        }
      }),
    );
    return {
      elapsedMs: performance.now() - t0,
      succeeded,
      refused,
      errors,
      unexpected: [...unexpected].slice(0, 5),
    };
  };
  d.say(`hot wallet: ${debits} debits spread over ${debits} wallets (baseline)`);
  const spread = await run(await d.customers(debits, d.price));
  d.say(`hot wallet: ${debits} concurrent debits on one wallet that covers ${covered}`);
  const [hot] = await d.customers(1, covered * d.price);
  const hotRun = await run([hot!]);
  const balanceAfter = await d.balance(hot!.id);
  return {
    debits,
    covered,
    hot: { ...hotRun, balanceAfter },
    spread,
    elapsed: ratio(hotRun.elapsedMs, spread.elapsedMs),
    overdraft: balanceAfter < 0,
    exact:
      hotRun.succeeded === covered && hotRun.refused === debits - covered && balanceAfter === 0,
  };
}

async function webhookToCredited(
  d: Driver,
  rate: number,
  n: number,
  opts: FlowBenchOptions,
  nextBuyer: () => Customer,
): Promise<FlowBenchResults['webhook'][number]> {
  d.say(`webhook to credited: opening ${n} checkouts`);
  const paymentIds: string[] = [];
  await pool(Array.from({ length: n }), opts.clients, async () => {
    paymentIds.push(await d.openCheckout(nextBuyer()));
  });
  const events = await Promise.all(paymentIds.map((id) => d.paidEvent(id)));
  const closed = events.map((e) => {
    const p = d.outcome(e.workflowId);
    p.catch(() => undefined);
    return p;
  });
  d.say(`webhook to credited: ${n} signed webhooks at ${rate}/s`);
  const appSent: number[] = [];
  const app = await fixedRate(
    n,
    rate,
    (i) => {
      appSent[i] = Date.now();
      return d.deliverStripe(events[i]!.body, events[i]!.signature);
    },
    async (i) => {
      const status = await closed[i]!;
      if (status !== 'credited') throw new Error(`checkout ended ${status}`);
    },
  );

  d.say(`webhook to credited: baseline, ${n} signals at ${rate}/s`);
  const bareIds: string[] = [];
  await pool(Array.from({ length: n }), opts.clients, async () => {
    bareIds.push(await d.startBare(bare.topup, 3_600));
  });
  const bareClosed = bareIds.map((id) => {
    const p = d.outcome(id);
    p.catch(() => undefined);
    return p;
  });
  const bareSent: number[] = [];
  const baseline = await fixedRate(
    n,
    rate,
    (i) => {
      bareSent[i] = Date.now();
      return d.signalBare(bareIds[i]!);
    },
    async (i) => {
      await bareClosed[i]!;
    },
  );
  // Credited: from sending the webhook (or the signal) to the completion of the step that
  // credits, read from each history; `closed` is the send to the workflow's close.
  const credited = async (
    ids: string[],
    sent: number[],
    activity: 'creditTopup' | 'last',
    run: { seconds: number },
  ) => {
    const delays: number[] = [];
    let errors = 0;
    let firstError: string | undefined;
    await pool(
      ids.map((id, i) => ({ id, i })),
      opts.clients,
      async ({ id, i }) => {
        try {
          delays.push((await d.creditedAt(id, activity)) - sent[i]!);
        } catch (err) {
          errors++;
          firstError ??= (err as Error).message;
        }
      },
    );
    return { ...summarise(delays, errors, run.seconds), firstError };
  };
  const appCredited = await credited(
    events.map((e) => e.workflowId),
    appSent,
    'creditTopup',
    app,
  );
  const bareCredited = await credited(bareIds, bareSent, 'last', baseline);
  return {
    eventsPerSecond: rate,
    events: n,
    maxSendLagMs: Math.max(app.lagMs, baseline.lagMs),
    ...compare(appCredited, bareCredited),
    closed: { app, baseline },
  };
}

async function timeoutToRefund(
  d: Driver,
  concurrency: number,
  timeoutSeconds: number,
): Promise<FlowBenchResults['timeoutRefund'][number]> {
  const timeoutMs = timeoutSeconds * 1000;
  const buyers = await d.customers(concurrency, d.price);
  const measure = async (start: (i: number) => Promise<string>, expect: string | undefined) => {
    const delays: number[] = [];
    const timerLate: number[] = [];
    const closed: number[] = [];
    let errors = 0;
    let firstError: string | undefined;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async (_, i) => {
        try {
          const workflowId = await start(i);
          const answered = performance.now();
          const status = await d.outcome(workflowId);
          if (expect && status !== expect) throw new Error(`ended ${status}, not ${expect}`);
          closed.push(performance.now() - answered - timeoutMs);
          const delay = await d.timeoutRefundDelay(workflowId, timeoutMs);
          delays.push(delay.refundMs);
          timerLate.push(delay.timerLateMs);
        } catch (err) {
          errors++;
          firstError ??= (err as Error).message;
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    return {
      ...summarise(delays, errors, seconds),
      firstError,
      timerLate: summarise(timerLate, 0, seconds),
      closed: summarise(closed, 0, seconds),
    };
  };
  d.say(`timeout to refund: ${concurrency} concurrent, ${timeoutSeconds} s timeout, baseline`);
  const baseline = await measure(() => d.startBare(bare.verification, timeoutSeconds), undefined);
  d.say(`timeout to refund: ${concurrency} concurrent verifications`);
  const app = await measure(
    async (i) => (await d.started(buyers[i]!, timeoutSeconds)).workflowId,
    'refunded',
  );
  return {
    concurrency,
    timeoutSeconds,
    ...compare(app, baseline),
    timerLate: { app: app.timerLate, baseline: baseline.timerLate },
    closed: { app: app.closed, baseline: baseline.closed },
  };
}

// ---------------------------------------------------------------------------------------------

if (isMainModule(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' },
      clients: { type: 'string' },
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
    },
  });
  const positive = (raw: string | undefined, name: string) => {
    if (raw === undefined) return undefined;
    if (!/^\d+$/.test(raw) || Number(raw) < 1) {
      console.error(`--${name} must be a positive integer (got "${raw}")`);
      process.exit(2);
    }
    return Number(raw);
  };
  const only = values.only
    ?.split(',')
    .map((x) => x.trim())
    .filter(Boolean) as FlowBenchOptions['only'];
  const known = ['e2e', 'hot', 'webhook', 'timeout', 'growth'];
  if (only?.some((x) => !known.includes(x))) {
    console.error(`--only takes a list of ${known.join(', ')} (end to end always runs)`);
    process.exit(2);
  }
  const overrides: Partial<FlowBenchOptions> = values.quick
    ? {
        seconds: 3,
        warmupSeconds: 1,
        rounds: 1,
        webhookSeconds: 1,
        refundConcurrency: [10, 30],
        growthWallets: [1_000, 10_000],
        resultsDir: undefined,
        readme: undefined,
      }
    : {};
  const seconds = positive(values.seconds, 'seconds');
  const clients = positive(values.clients, 'clients');
  if (seconds) overrides.seconds = seconds;
  if (clients) overrides.clients = clients;
  if (only) {
    // A partial run is for comparing a change; it leaves the recorded results alone.
    Object.assign(overrides, { only, resultsDir: undefined, readme: undefined });
  }
  try {
    const results = await runFlowBench(overrides);
    printFlowTable(results);
    const opts = { ...defaultFlowBenchOptions(), ...overrides };
    await writeFlowReports(results, { resultsDir: opts.resultsDir, readme: opts.readme });
    process.exit(0);
  } catch (err) {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  }
}
