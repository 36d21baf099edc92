// The chaos suite: one production stack (Temporal server on PostgreSQL, 2 workers, 2 APIs),
// five scenarios run on it one after another, each a mixed load under one fault, each ending with
// exact checks. `npm run test:chaos` (scripts/chaos.ts) and test/chaos.test.ts run it.
import { Client, Connection } from '@temporalio/client';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import postgres from 'postgres';
import { ensureBuild } from '../src/stack/build.js';
import { startProdStack, type ProdStack } from '../src/stack/prod.js';
import { StripeDouble } from '../src/stack/stripe-double.js';
import {
  ensureTemporalServer,
  temporalServerMissingMessage,
  type TemporalServerTools,
} from '../src/stack/tools.js';
import { ChaosDriver } from './driver.js';
import { killTemporal, killWorkers, terminateBackends, type Say } from './faults.js';
import { planFor, plannedWorkflows, runLoad, type LoadPlan } from './load.js';
import { Supervisor, type Crash } from './supervisor.js';
import { verifyLoad } from './verify.js';

export const SCENARIOS = [
  'worker-kill',
  'temporal-restart',
  'pg-terminate',
  'webhook-storm',
  'hot-wallet',
] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface ChaosOptions {
  /** The reduced run: fewer workflows and faults, the same scenarios. */
  quick: boolean;
  only: ScenarioName[] | undefined;
  /** Workflows per scenario (default 1,000; 60 with quick). */
  workflows: number | undefined;
  /** A PostgreSQL server (a user that may create databases and roles). */
  postgresUrl: string;
  /** The stripe-mock the Stripe double validates requests with. */
  stripeMockBase: string;
  env: Record<string, string | undefined>;
  tools?: TemporalServerTools;
  say: Say;
  /** Where the JSON goes (nothing written when undefined). */
  resultsFile: string | undefined;
}

export interface ScenarioResult {
  scenario: ScenarioName;
  fault: string;
  /** How many times the fault struck (kills, restarts, backends terminated, extra deliveries, debits). */
  faults: number;
  planned: number;
  started: number;
  finished: number;
  credited: number;
  refunded: number;
  /** Of those, verifications refunded because the provider step ran out of time. */
  providerGaveUp: number;
  duplicatesPrevented: number;
  stuck: number;
  checkerOk: boolean;
  passed: boolean;
  failures: string[];
  /** App or Temporal processes that exited on their own (restarted as a supervisor would). */
  crashes: number;
  crashLog: Crash[];
  durationMs: number;
  traffic: { requests: number; retries: number; stripeDeliveries: number; stripeEvents: number };
}

export interface ChaosResults {
  startedAt: string;
  mode: 'full' | 'quick';
  workflowsPerScenario: number;
  wallMs: number;
  /** Stack start (build check, databases, Temporal, processes). */
  stackStartMs: number;
  passed: boolean;
  scenarios: ScenarioResult[];
  /** Processes that exited on their own after the last scenario was counted (fail the run). */
  trailingCrashes: Crash[];
}

interface Scenario {
  name: ScenarioName;
  fault: string;
  plan: LoadPlan;
  storm: boolean;
  spreadMs: number;
  inject: (
    stack: ProdStack,
    sql: postgres.Sql,
    supervisor: Supervisor,
    say: Say,
  ) => Promise<number>;
}

function scenarios(quick: boolean, workflows: number): Scenario[] {
  const kills = quick ? 3 : 20;
  const killEveryMs = quick ? 2_000 : 3_000;
  const rounds = quick ? 3 : 10;
  const roundEveryMs = quick ? 2_000 : 3_000;
  const plan = planFor(workflows);
  return [
    {
      name: 'worker-kill',
      fault: `a worker SIGKILLed every ${killEveryMs / 1000} s and restarted, ${kills} times`,
      plan,
      storm: false,
      // A restart takes a few seconds: the load lasts about as long as the kills.
      spreadMs: kills * (killEveryMs + 3_000),
      inject: (stack, _sql, supervisor, say) =>
        killWorkers(stack, supervisor, { times: kills, everyMs: killEveryMs, say }),
    },
    {
      name: 'temporal-restart',
      fault: 'the Temporal server SIGKILLed mid-run, restarted 3 s later',
      plan,
      storm: false,
      spreadMs: quick ? 12_000 : 40_000,
      inject: (stack, _sql, supervisor, say) =>
        killTemporal(stack, supervisor, { afterMs: quick ? 4_000 : 15_000, downMs: 3_000, say }),
    },
    {
      name: 'pg-terminate',
      fault: `every app and Temporal PostgreSQL backend terminated, ${rounds} rounds ${roundEveryMs / 1000} s apart`,
      plan,
      storm: false,
      spreadMs: rounds * roundEveryMs,
      inject: (stack, sql, _supervisor, say) =>
        terminateBackends(stack, sql, { rounds, everyMs: roundEveryMs, say }),
    },
    {
      name: 'webhook-storm',
      fault: 'every Stripe event delivered 1–5 times, shuffled, concurrently',
      plan,
      storm: true,
      spreadMs: quick ? 5_000 : 20_000,
      inject: () => Promise.resolve(0),
    },
    {
      name: 'hot-wallet',
      fault: '200 concurrent debits on one wallet that covers 100',
      plan: { ...plan, hotDebits: 200 },
      storm: false,
      spreadMs: quick ? 5_000 : 20_000,
      inject: () => Promise.resolve(200),
    },
  ];
}

/** Runs one scenario: the load and the fault together, then the checks. */
async function runScenario(
  scenario: Scenario,
  context: {
    stack: ProdStack;
    stripe: StripeDouble;
    sql: postgres.Sql;
    temporal: Client;
    supervisor: Supervisor;
    say: Say;
  },
  closeTimeoutMs: number,
): Promise<ScenarioResult> {
  const { stack, stripe, sql, temporal, supervisor, say } = context;
  const began = Date.now();
  const since = new Date(began - 1_000);
  const driver = await ChaosDriver.connect(stack, stripe, sql);
  say(`${scenario.name}: ${plannedWorkflows(scenario.plan)} workflows; ${scenario.fault}`);
  const [load, struck] = await Promise.all([
    runLoad(driver, scenario.plan, {
      storm: scenario.storm,
      concurrency: 48,
      spreadMs: scenario.spreadMs,
      label: scenario.name,
    }),
    scenario.inject(stack, sql, supervisor, say),
  ]);
  const outcome = await verifyLoad(sql, temporal, load, {
    since,
    closeTimeoutMs,
    stripeDeliveries: driver.traffic.stripeDeliveries,
  });
  const faults =
    scenario.name === 'webhook-storm'
      ? driver.traffic.stripeDeliveries - load.stripeEvents
      : struck;
  // Every crash since the previous scenario was counted, between scenarios included.
  const crashes = supervisor.takeCrashes();
  // A process that exits on its own is a failure even when nothing was lost: the fault was meant
  // to be met by a handled error, not a restart.
  const failures = [
    ...outcome.failures,
    ...crashes.map(
      (c) => `${c.process} (pid ${c.pid}) exited on its own at ${c.at}; last lines:\n${c.log}`,
    ),
  ];
  const passed =
    failures.length === 0 &&
    outcome.stuck === 0 &&
    outcome.checkerOk &&
    outcome.started === outcome.finished;
  return {
    scenario: scenario.name,
    fault: scenario.fault,
    faults,
    planned: plannedWorkflows(scenario.plan),
    ...outcome,
    failures,
    passed,
    crashes: crashes.length,
    crashLog: crashes,
    durationMs: Date.now() - began,
    traffic: {
      requests: driver.traffic.requests,
      retries: driver.traffic.retries,
      stripeDeliveries: driver.traffic.stripeDeliveries,
      stripeEvents: load.stripeEvents,
    },
  };
}

/** Starts the stack, runs the chosen scenarios, stops and drops the stack (also on failure). */
export async function runChaos(options: ChaosOptions): Promise<ChaosResults> {
  const { say } = options;
  const began = Date.now();
  const workflows = options.workflows ?? (options.quick ? 60 : 1_000);
  const chosen = scenarios(options.quick, workflows).filter(
    (s) => !options.only || options.only.includes(s.name),
  );
  await ensureBuild({ log: say });
  // Found (or built, with Go) before anything starts, saying so: a build takes minutes.
  const tools = options.tools ?? (await ensureTemporalServer(options.env, say));
  if (!tools) throw new Error(temporalServerMissingMessage(options.env));
  const stripe = await StripeDouble.start(options.stripeMockBase);
  let stack: ProdStack | undefined;
  let sql: postgres.Sql | undefined;
  let temporal: Client | undefined;
  let supervisor: Supervisor | undefined;
  let stopping: Promise<void> | undefined;
  const teardown = () =>
    (stopping ??= (async () => {
      await temporal?.connection.close().catch(() => undefined);
      await sql?.end({ timeout: 5 }).catch(() => undefined);
      supervisor?.stop();
      await stack?.stop();
      await stack?.dropDatabases();
      await stripe.close();
    })());
  const interrupted = () => {
    say('interrupted: stopping the stack and dropping its databases…');
    void teardown().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  try {
    stack = await startProdStack({
      env: options.env,
      log: () => undefined,
      tools,
      postgresUrl: options.postgresUrl,
      name: `creditflow_chaos_${Date.now().toString(36)}`,
      stripeApiBase: stripe.apiBase,
      apiPort: 0,
      // Dropped at the end; a run killed outright is cleaned up by the next start.
      ephemeral: true,
      ui: false,
      appEnv: {
        LOG_LEVEL: 'warn',
        // One driver plays every customer from one address: limits would refuse the load.
        RATE_LIMIT_PER_CUSTOMER: '0',
        RATE_LIMIT_PER_IP: '0',
        // The sweep's canary buys on its own; the counts here are the load's alone.
        CANARY_CREDITS: '0',
      },
    });
    const stackStartMs = Date.now() - began;
    say(`stack up in ${(stackStartMs / 1000).toFixed(1)} s (${stack.name})`);
    sql = postgres(stack.postgres.ownerUrl, {
      max: 8,
      onnotice: () => undefined,
      connection: { application_name: 'creditflow-chaos' },
    });
    const connection = await Connection.connect({ address: stack.temporal.address });
    temporal = new Client({ connection, namespace: stack.temporal.namespace });
    supervisor = new Supervisor([stack.temporal, ...stack.workers, ...stack.apis], say);

    const results: ScenarioResult[] = [];
    for (const scenario of chosen) {
      const result = await runScenario(
        scenario,
        { stack, stripe, sql, temporal, supervisor, say },
        options.quick ? 120_000 : 300_000,
      );
      results.push(result);
      say(
        `${result.scenario}: ${result.passed ? 'passed' : 'FAILED'} in ${(result.durationMs / 1000).toFixed(1)} s` +
          (result.failures.length > 0 ? `\n  ${result.failures.join('\n  ')}` : ''),
      );
    }
    const summary: ChaosResults = {
      startedAt: new Date(began).toISOString(),
      mode: options.quick ? 'quick' : 'full',
      workflowsPerScenario: workflows,
      wallMs: Date.now() - began,
      stackStartMs,
      passed: false,
      scenarios: results,
      trailingCrashes: [],
    };
    // A crash after the last scenario was counted (while it settled) fails the run too.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    summary.trailingCrashes = supervisor.takeCrashes();
    for (const crash of summary.trailingCrashes) {
      say(
        `${crash.process} (pid ${crash.pid}) exited on its own at ${crash.at}, after the last scenario`,
      );
    }
    summary.passed = results.every((r) => r.passed) && summary.trailingCrashes.length === 0;
    if (options.resultsFile) {
      mkdirSync(dirname(options.resultsFile), { recursive: true });
      writeFileSync(options.resultsFile, `${JSON.stringify(summary, null, 2)}\n`);
    }
    return summary;
  } finally {
    process.off('SIGINT', interrupted);
    await teardown();
  }
}

/** The results as a Markdown table, one row per scenario. */
export function chaosTable(results: ChaosResults): string {
  const head = [
    'scenario',
    'fault',
    'faults',
    'started',
    'finished',
    'credited',
    'refunded',
    'duplicates prevented',
    'stuck',
    'crashes',
    'checker',
    'result',
    'time',
  ];
  const rows = results.scenarios.map((r) => [
    r.scenario,
    r.fault,
    String(r.faults),
    String(r.started),
    String(r.finished),
    String(r.credited),
    r.providerGaveUp > 0 ? `${r.refunded} (${r.providerGaveUp} provider)` : String(r.refunded),
    String(r.duplicatesPrevented),
    String(r.stuck),
    String(r.crashes),
    r.checkerOk ? 'ok' : 'VIOLATIONS',
    r.passed ? 'passed' : 'FAILED',
    `${(r.durationMs / 1000).toFixed(0)} s`,
  ]);
  return [head, head.map(() => '---'), ...rows].map((row) => `| ${row.join(' | ')} |`).join('\n');
}
