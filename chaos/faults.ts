// The faults the scenarios inject into the running stack while the load runs. Each returns how
// many times it struck; each stops early when `stop()` says the scenario is over.
import type postgres from 'postgres';
import type { ProdStack } from '../src/stack/prod.js';
import type { Supervisor } from './supervisor.js';

export type Say = (message: string) => void;

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * SIGKILLs a worker every `everyMs` (taking turns), waits for it to die and restarts it, `times`
 * times. The other worker keeps polling, so the flows move over to it while one is down.
 */
export async function killWorkers(
  stack: ProdStack,
  supervisor: Supervisor,
  options: { times: number; everyMs: number; say: Say },
): Promise<number> {
  let kills = 0;
  for (let i = 0; i < options.times; i++) {
    await pause(options.everyMs);
    const worker = stack.workers[i % stack.workers.length]!;
    await supervisor.deliberately(worker, async () => {
      worker.kill('SIGKILL');
      await worker.exited;
      kills++;
      await worker.restart();
    });
    options.say(`worker ${worker.index} SIGKILLed and restarted (${kills}/${options.times})`);
  }
  return kills;
}

/** SIGKILLs the Temporal server after `afterMs` and starts it again `downMs` later. */
export async function killTemporal(
  stack: ProdStack,
  supervisor: Supervisor,
  options: { afterMs: number; downMs: number; say: Say },
): Promise<number> {
  await pause(options.afterMs);
  await supervisor.deliberately(stack.temporal, async () => {
    stack.temporal.kill('SIGKILL');
    await stack.temporal.exited;
    options.say('Temporal server SIGKILLed');
    await pause(options.downMs);
    await stack.temporal.restart();
  });
  options.say('Temporal server restarted');
  return 1;
}

/**
 * Terminates every PostgreSQL backend of the app (API and workers) and of the Temporal server,
 * `rounds` times, `everyMs` apart; the driver's own connection is left alone.
 */
export async function terminateBackends(
  stack: ProdStack,
  sql: postgres.Sql,
  options: { rounds: number; everyMs: number; say: Say },
): Promise<number> {
  const databases = [
    stack.postgres.database,
    stack.temporal.databases.default,
    stack.temporal.databases.visibility,
  ];
  let terminated = 0;
  for (let i = 0; i < options.rounds; i++) {
    await pause(options.everyMs);
    const rows = await sql<{ ok: boolean }[]>`
      select pg_terminate_backend(pid) as ok from pg_stat_activity
      where datname = any(${databases}) and pid <> pg_backend_pid()
        and application_name <> 'creditflow-chaos'`;
    const n = rows.filter((r) => r.ok).length;
    terminated += n;
    options.say(`terminated ${n} PostgreSQL backends (round ${i + 1}/${options.rounds})`);
  }
  return terminated;
}
