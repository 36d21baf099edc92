// `npm run test:chaos [-- --quick] [-- --only worker-kill,hot-wallet] [-- --workflows N]`: the
// chaos suite on the production topology (chaos/run.ts). Prints a table per scenario; a full run
// of every scenario writes bench/results/chaos.json, any other run .data/chaos/chaos.json.
// Exits 1 when a scenario failed, 2 on a wrong command line.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SCENARIOS, chaosTable, runChaos, type ScenarioName } from '../chaos/run.js';
import { processEnv } from '../src/config.js';
import { projectRoot } from '../src/paths.js';
import { LOCAL_POSTGRES_URL } from '../src/stack/postgres.js';
import { startStripeMock } from '../src/stack/stripe-mock.js';

const say = (message: string) => process.stdout.write(`[chaos] ${message}\n`);
const usage = (problem: string): never => {
  say(problem);
  say('usage: npm run test:chaos -- [--quick] [--only <scenario,...>] [--workflows N]');
  say(`scenarios: ${SCENARIOS.join(', ')}`);
  process.exit(2);
};

let values: { quick?: boolean; only?: string; workflows?: string };
try {
  ({ values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      workflows: { type: 'string' },
    },
  }));
} catch (err) {
  usage((err as Error).message);
  throw err;
}
const only = values.only?.split(',').map((s) => s.trim()) as ScenarioName[] | undefined;
for (const name of only ?? []) {
  if (!SCENARIOS.includes(name)) usage(`--only: unknown scenario "${name}"`);
}
const workflows = values.workflows === undefined ? undefined : Number(values.workflows);
if (
  workflows !== undefined &&
  (!Number.isInteger(workflows) || workflows < 10 || workflows > 20_000)
) {
  usage('--workflows: a whole number from 10 to 20000');
}

const env = processEnv();
const quick = values.quick ?? false;
// Only a full run of every scenario at the default size is the recorded result.
const recorded = !quick && !only && workflows === undefined;
const resultsFile = recorded
  ? join(projectRoot, 'bench', 'results', 'chaos.json')
  : join(projectRoot, '.data', 'chaos', 'chaos.json');

const stripeMock = await startStripeMock(env, say, 0);
if (!stripeMock) {
  usage('stripe-mock is needed: install Go (it is then built once) or set STRIPE_MOCK_PATH.');
}
try {
  const results = await runChaos({
    quick,
    only,
    workflows,
    postgresUrl: env['MIGRATION_DATABASE_URL'] ?? env['DATABASE_URL'] ?? LOCAL_POSTGRES_URL,
    stripeMockBase: stripeMock!.apiBase,
    env,
    say,
    resultsFile,
  });
  process.stdout.write(`\n${chaosTable(results)}\n\n`);
  say(
    `${results.passed ? 'every scenario passed' : 'FAILED'}; wall time ${(results.wallMs / 1000).toFixed(0)} s ` +
      `(stack start ${(results.stackStartMs / 1000).toFixed(0)} s); results in ${resultsFile}`,
  );
  process.exitCode = results.passed ? 0 : 1;
} finally {
  await stripeMock!.stop();
}
