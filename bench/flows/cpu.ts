// CPU time by process of the benchmark's stack, read from /proc (Linux), so a run can say where
// a flow's extra cost goes: the Temporal server, the API, the workers, PostgreSQL or the driver.
import { readFileSync, readdirSync } from 'node:fs';

export type CpuByPart = Record<string, number>;

const TICKS_PER_SECOND = 100;

interface Proc {
  pid: number;
  ppid: number;
  /** utime + stime, in seconds. */
  cpu: number;
  args: string;
}

function readProc(pid: number): Proc | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces; the fields after it are fixed.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    return {
      pid,
      ppid: Number(fields[1]),
      cpu: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND,
      args,
    };
  } catch {
    return undefined;
  }
}

function part(args: string): string {
  if (args.includes('temporal server')) return 'temporal';
  if (args.includes('src/server.ts')) return 'api';
  if (args.includes('bare-worker.ts')) return 'baseline worker';
  if (args.includes('src/worker.ts')) return 'workers';
  if (args.includes('stripe-mock')) return 'stripe-mock';
  if (args.startsWith('postgres')) return 'postgresql';
  return 'other';
}

/**
 * CPU seconds so far of this process ('driver'), its descendants, and the PostgreSQL backends
 * whose pids are given; undefined where /proc cannot be read.
 */
export function cpuSnapshot(postgresPids: number[]): CpuByPart | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return undefined;
  }
  const procs = new Map<number, Proc>();
  for (const e of entries) {
    const p = readProc(Number(e));
    if (p) procs.set(p.pid, p);
  }
  const self = procs.get(process.pid);
  if (!self) return undefined;
  const mine = (p: Proc) => {
    for (let at: Proc | undefined = p; at; at = procs.get(at.ppid)) {
      if (at.pid === process.pid) return true;
      if (at.ppid === at.pid || at.ppid === 0) return false;
    }
    return false;
  };
  const out: CpuByPart = { driver: self.cpu };
  for (const p of procs.values()) {
    if (p.pid === process.pid) continue;
    const name = postgresPids.includes(p.pid) ? 'postgresql' : mine(p) ? part(p.args) : undefined;
    if (!name || name === 'other' || name === 'stripe-mock') continue;
    out[name] = (out[name] ?? 0) + p.cpu;
  }
  return out;
}

/** after − before, per part. */
export function cpuSpent(before: CpuByPart, after: CpuByPart): CpuByPart {
  const out: CpuByPart = {};
  for (const [k, v] of Object.entries(after)) out[k] = v - (before[k] ?? 0);
  return out;
}
