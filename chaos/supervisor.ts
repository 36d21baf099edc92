// What a process supervisor does in production (docker-compose's `restart: unless-stopped`, a
// Kubernetes restart policy): an API, worker or Temporal process that exits on its own is started
// again. Each such exit is recorded as a crash and reported with the scenario, never hidden: the
// faults kill processes on purpose and restart them themselves, and those are not crashes.
import type { StackProcess } from '../src/stack/process.js';
import type { Say } from './faults.js';

export interface Crash {
  process: string;
  pid: number;
  at: string;
  /** The last lines the process printed. */
  log: string;
}

export class Supervisor {
  readonly crashes: Crash[] = [];
  private readonly deliberate = new Set<StackProcess>();
  private stopped = false;

  constructor(
    processes: StackProcess[],
    private readonly say: Say,
  ) {
    for (const process of processes) this.watch(process);
  }

  private watch(process: StackProcess) {
    const pid = process.pid;
    void process.exited.then(async () => {
      if (this.stopped || this.deliberate.has(process) || process.pid !== pid) return;
      this.crashes.push({
        process: process.name,
        pid,
        at: new Date().toISOString(),
        log: process.tail(8),
      });
      this.say(`${process.name} (pid ${pid}) exited on its own; restarting it`);
      try {
        await process.restart();
      } catch (err) {
        this.say(`${process.name} did not come back: ${(err as Error).message}`);
        return;
      }
      this.watch(process);
    });
  }

  /** Runs a fault that kills and restarts `process` itself; its exit is not a crash. */
  async deliberately<T>(process: StackProcess, fault: () => Promise<T>): Promise<T> {
    this.deliberate.add(process);
    try {
      return await fault();
    } finally {
      this.deliberate.delete(process);
      this.watch(process);
    }
  }

  private taken = 0;

  /** Crashes not yet taken: each crash is counted once, by whoever takes it first. */
  takeCrashes(): Crash[] {
    const fresh = this.crashes.slice(this.taken);
    this.taken = this.crashes.length;
    return fresh;
  }

  /** The stack is being stopped: exits from now on are expected. */
  stop() {
    this.stopped = true;
  }
}
