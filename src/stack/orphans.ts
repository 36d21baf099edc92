// What a production-shaped stack leaves behind when the process that started it is killed
// outright (SIGKILL, a test run cut short): its processes run on, holding ports and PostgreSQL
// connections, and its databases stay. Each stack records its processes' pids and its databases
// under its folder; the next start finds the records whose owner is gone, stops those
// processes (only if each is still the program that was started) and drops the databases of a
// stack that was meant to be thrown away.
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import type { PidRecord } from './process.js';
import type { Log } from './tools.js';

/** What a stack records about itself while its owner runs (`stack.json` in its folder). */
export interface StackRecord {
  name: string;
  ownerPid: number;
  /** host:port of the PostgreSQL server its databases are on (no credentials). */
  server: string;
  databases: string[];
  appRole: string;
  /** The owner drops the databases when it stops; a later start drops them for a killed owner. */
  ephemeral: boolean;
}

export const STACK_RECORD = 'stack.json';
export const PIDS_DIR = 'pids';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * When `pid` started, in clock ticks since boot (Linux /proc/<pid>/stat, field 22): with the pid
 * it names one process for good, even after the pid is reused. Undefined when it cannot be read.
 */
export function processStartTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses) start at field 3.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * Whether `record` still names the process that was started: same pid, same start time and
 * the same program. False when it cannot be told (no /proc): then nothing is stopped.
 */
function stillRuns(record: PidRecord): boolean {
  if (record.pid === process.pid || !record.startTicks) return false;
  if (processStartTicks(record.pid) !== record.startTicks) return false;
  try {
    const argv = readFileSync(`/proc/${record.pid}/cmdline`, 'utf8').split('\0');
    return argv[0] === record.command;
  } catch {
    return false;
  }
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

export function writeStackRecord(dir: string, record: StackRecord): void {
  writeFileSync(join(dir, STACK_RECORD), `${JSON.stringify(record, null, 2)}\n`);
}

/** Records a process this process started (its start time read now, to tell a reused pid). */
export function writePidRecord(
  file: string,
  record: Pick<PidRecord, 'name' | 'pid' | 'command'>,
): void {
  const full: PidRecord = {
    ...record,
    ownerPid: process.pid,
    startedAt: new Date().toISOString(),
    startTicks: processStartTicks(record.pid),
  };
  writeFileSync(file, `${JSON.stringify(full)}\n`);
}

export function removeStackRecord(dir: string): void {
  rmSync(join(dir, STACK_RECORD), { force: true });
}

/** Stops one orphaned process group: SIGTERM, then SIGKILL after `graceMs`. */
async function stopOrphan(record: PidRecord, graceMs: number): Promise<void> {
  const signal = (sig: NodeJS.Signals) => {
    try {
      // Each stack process leads a process group of its own.
      process.kill(-record.pid, sig);
    } catch {
      try {
        process.kill(record.pid, sig);
      } catch {
        // already gone
      }
    }
  };
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(record.pid) && Date.now() < deadline) await pause(100);
  if (isAlive(record.pid)) signal('SIGKILL');
}

/**
 * Stops the processes and drops the throw-away databases of every stack under `root` whose
 * owner is gone. `serverUrl` (with credentials) is used to drop databases recorded on the same
 * host:port; those on another server are only reported.
 */
export async function reapOrphans(
  root: string,
  serverUrl: string,
  log: Log,
  graceMs = 10_000,
): Promise<{ processes: number; stacks: number }> {
  let processes = 0;
  let stacks = 0;
  if (!existsSync(root)) return { processes, stacks };
  const server = new URL(serverUrl);
  for (const name of readdirSync(root)) {
    const dir = join(root, name);
    const pidsDir = join(dir, PIDS_DIR);
    const stack = readJson<StackRecord>(join(dir, STACK_RECORD));
    if (stack && isAlive(stack.ownerPid)) continue;
    if (existsSync(pidsDir)) {
      // In the order a stop takes: APIs, workers, then Temporal, its UI and stripe-mock.
      const rank = (file: string) =>
        file.startsWith('api') ? 0 : file.startsWith('worker') ? 1 : 2;
      const files = readdirSync(pidsDir).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
      for (const file of files) {
        const record = readJson<PidRecord>(join(pidsDir, file));
        if (!record || isAlive(record.ownerPid)) continue;
        if (isAlive(record.pid) && stillRuns(record)) {
          log(
            `Stopping ${record.name} (pid ${record.pid}) of stack ${name}, left running by a ` +
              `start (pid ${record.ownerPid}) that was killed.`,
          );
          await stopOrphan(record, graceMs);
          processes++;
        }
        rmSync(join(pidsDir, file), { force: true });
      }
    }
    if (!stack) continue;
    stacks++;
    const sameServer = stack.server === `${server.hostname}:${server.port || '5432'}`;
    if (stack.ephemeral && sameServer) {
      const sql = postgres(serverUrl, { max: 1, onnotice: () => undefined });
      try {
        for (const db of stack.databases) {
          await sql.unsafe(`drop database if exists "${db.replace(/"/g, '""')}" with (force)`);
        }
        await sql.unsafe(`drop role if exists "${stack.appRole.replace(/"/g, '""')}"`);
        log(`Dropped ${stack.databases.join(', ')} of stack ${name}, whose start was killed.`);
      } catch (err) {
        log(`Could not drop the databases of stack ${name}: ${(err as Error).message}`);
        continue;
      } finally {
        await sql.end({ timeout: 5 });
      }
    } else {
      log(
        `Stack ${name} was stopped by killing its start; its databases ` +
          `${stack.databases.join(', ')} on ${stack.server} remain (kept, as a stop without ` +
          '--drop keeps them).',
      );
    }
    removeStackRecord(dir);
  }
  return { processes, stacks };
}
