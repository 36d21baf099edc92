// The chaos suite's reduced run (npm run test:chaos -- --quick) on the production topology: every
// scenario with a smaller load and fewer faults — a few worker SIGKILLs, one Temporal server
// restart, a few rounds of terminated PostgreSQL backends, a webhook storm and the full
// 200-debit hot wallet — each ending with exact counts, balances and the ledger checker.
import { expect, inject, it } from 'vitest';
import { chaosTable, runChaos } from '../chaos/run.js';
import { processEnv } from '../src/config.js';
import { findTemporalServer, temporalServerMissingMessage } from '../src/stack/tools.js';

const env = processEnv();

it('keeps every credit exact under worker kills, a Temporal restart, lost connections, a webhook storm and a hot wallet', async () => {
  // A missing server is a failure that says how to get it, never a skip.
  const tools = findTemporalServer(env);
  if (!tools) throw new Error(temporalServerMissingMessage(env));
  const server = new URL(inject('ownerDatabaseUrl'));
  server.pathname = '/postgres';
  const results = await runChaos({
    quick: true,
    only: undefined,
    workflows: undefined,
    postgresUrl: server.toString(),
    stripeMockBase: inject('stripeApiBase'),
    env,
    tools,
    say: () => undefined,
    resultsFile: undefined,
  });
  const failures = results.scenarios.flatMap((s) => s.failures.map((f) => `${s.scenario}: ${f}`));
  expect(failures, chaosTable(results)).toEqual([]);
  expect(results.scenarios.map((s) => [s.scenario, s.passed])).toEqual([
    ['worker-kill', true],
    ['temporal-restart', true],
    ['pg-terminate', true],
    ['webhook-storm', true],
    ['hot-wallet', true],
  ]);
  expect(results.trailingCrashes).toEqual([]);
  expect(results.passed).toBe(true);
  for (const s of results.scenarios) {
    expect(s.started, s.scenario).toBe(s.planned);
    expect(s.finished, s.scenario).toBe(s.started);
    expect(s.stuck, s.scenario).toBe(0);
    expect(s.checkerOk, s.scenario).toBe(true);
  }
  // Each fault really struck.
  const faults = Object.fromEntries(results.scenarios.map((s) => [s.scenario, s.faults]));
  expect(faults['worker-kill']).toBe(3);
  expect(faults['temporal-restart']).toBe(1);
  expect(faults['pg-terminate']).toBeGreaterThan(0);
  expect(faults['webhook-storm']).toBeGreaterThan(0);
  expect(faults['hot-wallet']).toBe(200);
}, 600_000);
