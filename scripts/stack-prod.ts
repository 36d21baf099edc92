// `npm run stack:prod [-- --drop] [-- --workers N --apis N]`: the production topology on this
// machine — the Temporal server on PostgreSQL with the Temporal UI, two workers and two API
// processes running the compiled build — until Ctrl-C. --drop removes the stack's databases when it stops.
import { parseArgs } from 'node:util';
import { processEnv } from '../src/config.js';
import { ensureBuild } from '../src/stack/build.js';
import { startProdStack, type ProdStack } from '../src/stack/prod.js';
import { LOCAL_POSTGRES_URL } from '../src/stack/postgres.js';

const say = (message: string) => process.stdout.write(`[stack:prod] ${message}\n`);
const env = processEnv();
const { values } = parseArgs({
  options: {
    drop: { type: 'boolean', default: false },
    workers: { type: 'string', default: '2' },
    apis: { type: 'string', default: '2' },
  },
});
const count = (value: string, flag: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 16) {
    say(`--${flag}: must be a whole number from 1 to 16`);
    process.exit(2);
  }
  return n;
};
const workers = count(values.workers, 'workers');
const apis = count(values.apis, 'apis');
// The server the stack makes its databases on: the owner's URL when one is configured.
const postgresUrl = env['MIGRATION_DATABASE_URL'] ?? env['DATABASE_URL'] ?? LOCAL_POSTGRES_URL;

let stack: ProdStack | undefined;
let stopping = false;
async function shutdown(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  if (stack) {
    say('Stopping the APIs, the workers, Temporal and stripe-mock…');
    const started = Date.now();
    await stack.stop();
    say(`Stopped in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
    if (values.drop) {
      await stack.dropDatabases();
      say(`Dropped ${stack.postgres.database} and its Temporal databases.`);
    } else {
      say(
        `Kept the databases ${stack.postgres.database}, ${stack.temporal.databases.default} and ` +
          `${stack.temporal.databases.visibility} (run with -- --drop to remove them at the end).`,
      );
    }
  }
  process.exit(code);
}
// A signal while the stack is still starting stops it once the start has finished (so nothing
// it made is left behind); a second one leaves at once.
let starting = true;
let interrupted = false;
function onSignal(): void {
  if (!starting) {
    void shutdown(0);
    return;
  }
  if (interrupted) process.exit(130);
  interrupted = true;
  say('Stopping once the start in progress has finished (again to leave at once)…');
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
process.on('SIGHUP', onSignal);

try {
  const started = Date.now();
  if (!(await ensureBuild({ log: say }))) say('dist/ is up to date with the sources.');
  const stackStarted = Date.now();
  stack = await startProdStack({
    env,
    log: say,
    postgresUrl,
    workers,
    apis,
    apiPort: 3000,
    temporalPort: 7233,
    ephemeral: values.drop,
    appEnv: env,
  });
  starting = false;
  if (interrupted) await shutdown(0);
  const s = stack;
  const line = (label: string, value: string) => say(`  ${label.padEnd(24)} ${value}`);
  say('');
  say(
    `Up in ${((Date.now() - stackStarted) / 1000).toFixed(1)} s (with the build check ` +
      `${((Date.now() - started) / 1000).toFixed(1)} s). Logs and configs: ${s.dir}`,
  );
  say('');
  for (const api of s.apis) {
    line(`API ${api.index} (pid ${api.pid})`, `${api.url}  docs ${api.url}/docs`);
  }
  say(`  Metrics: GET <API>/metrics with "Authorization: Bearer $METRICS_TOKEN"`);
  for (const worker of s.workers)
    line(`worker ${worker.index} (pid ${worker.pid})`, worker.metricsUrl);
  line(
    `Temporal (pid ${s.temporal.pid})`,
    `${s.temporal.address}  namespace ${s.temporal.namespace}`,
  );
  if (s.ui) line(`Temporal UI (pid ${s.ui.pid})`, s.ui.url);
  line('Temporal metrics', s.temporal.metricsUrl);
  line('Temporal config', s.temporal.configFile);
  line('Temporal databases', `${s.temporal.databases.default}, ${s.temporal.databases.visibility}`);
  line('stripe-mock', s.stripeApiBase);
  line('PostgreSQL (owner)', s.postgres.ownerUrl.replace(/\/\/([^:@]*):[^@]*@/, '//$1:***@'));
  line('Task queue', s.taskQueue);
  say('');
  say('Settings of every API and worker process (each also gets PORT or WORKER_METRICS_PORT):');
  for (const [key, value] of Object.entries(s.appSettings)) say(`  ${key}=${value}`);
  say('');
  say('Tokens: AUTH_JWT_SECRET=<above> npm run token -- --admin');
  say(
    `SMS codes: SMS_WEBHOOK_SECRET=<above> npm run sms:code -- <verificationId> --url ${s.apis[0]!.url}`,
  );
  const connections = await s.connections();
  say(
    `PostgreSQL connections now: Temporal ${connections.temporal} + ${connections.temporalVisibility} ` +
      `(visibility), app ${JSON.stringify(connections.app)}`,
  );
  say('Ready. Ctrl-C stops everything.');
  // A process that dies on its own is reported; the operator decides whether to restart.
  for (const proc of [s.temporal, ...(s.ui ? [s.ui] : []), ...s.workers, ...s.apis]) {
    void proc.exited.then((code) => {
      if (!stopping)
        say(`${proc.name} (pid ${proc.pid}) exited with code ${code}; see ${proc.logFile}`);
    });
  }
} catch (err) {
  starting = false;
  say(`Could not start: ${err instanceof Error ? err.message : String(err)}`);
  await shutdown(1);
}
