// One OS process of the production-shaped stack (Temporal server, a worker, an API): started,
// watched until ready, killed, stopped and restarted from the outside, its output kept in a file.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, rmSync, type WriteStream } from 'node:fs';
import { writePidRecord } from './orphans.js';
import { createInterface } from 'node:readline';

export interface ProcessSpec {
  /** What messages call it: "worker 1", "Temporal server". */
  name: string;
  command: string;
  args: string[];
  env: Record<string, string | undefined>;
  cwd: string;
  /** Where stdout and stderr go (appended, across restarts). */
  logFile: string;
  /**
   * Resolves once the process serves; polled until `readyTimeoutMs`. Gets the lines the
   * current run has printed so far.
   */
  ready: (lines: readonly string[]) => Promise<boolean>;
  readyTimeoutMs: number;
  /** How long stop() waits after SIGTERM before SIGKILL. */
  stopGraceMs: number;
  /**
   * Where the current run's pid is recorded while it runs (with this process's pid as its
   * owner), so a later start can stop what a killed owner left running (`reapOrphans`).
   */
  pidFile?: string;
}

/** What a pid file records. */
export interface PidRecord {
  name: string;
  pid: number;
  /** The process that started it; when that is gone, the run is an orphan. */
  ownerPid: number;
  command: string;
  startedAt: string;
  /** When the process started, in clock ticks since boot (tells a reused pid apart). */
  startTicks?: string | undefined;
}

/** What a caller holds on to: the current run's pid and exit, and the controls. */
export interface StackProcess {
  readonly name: string;
  /** The current run's pid (a restart changes it). */
  readonly pid: number;
  /** Settles with the current run's exit code (null when a signal ended it). */
  readonly exited: Promise<number | null>;
  readonly logFile: string;
  /** Sends a signal to the current run, e.g. SIGKILL to play a crash. */
  kill: (signal?: NodeJS.Signals) => void;
  /** SIGTERM, then SIGKILL after the grace period; resolves once it has exited. */
  stop: () => Promise<void>;
  /** Stops the current run if it is alive, starts a new one and waits until it is ready. */
  restart: () => Promise<void>;
  /** The last lines the current run printed (for error messages). */
  tail: (lines?: number) => string;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Children still running when this process exits (a crash, an uncaught error, process.exit)
 * are killed with it rather than left running without anyone to stop them.
 */
const alive = new Set<ChildProcess>();
let exitHook = false;
function track(child: ChildProcess): void {
  alive.add(child);
  child.once('exit', () => alive.delete(child));
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const running of alive) running.kill('SIGKILL');
    });
  }
}

class ManagedProcess implements StackProcess {
  private child!: ChildProcess;
  private lines: string[] = [];
  private exit!: Promise<number | null>;
  private readonly log: WriteStream;

  constructor(private readonly spec: ProcessSpec) {
    this.log = createWriteStream(spec.logFile, { flags: 'a' });
    // Handles get passed around as plain objects ({ stop } = worker): keep `this` bound.
    this.kill = this.kill.bind(this);
    this.stop = this.stop.bind(this);
    this.restart = this.restart.bind(this);
    this.tail = this.tail.bind(this);
    this.close = this.close.bind(this);
  }

  get name() {
    return this.spec.name;
  }
  get pid() {
    return this.child.pid ?? -1;
  }
  get exited() {
    return this.exit;
  }
  get logFile() {
    return this.spec.logFile;
  }

  /** Spawns a run and waits until it is ready; a run that exits or never gets ready fails. */
  async start(): Promise<void> {
    const { spec } = this;
    const lines: string[] = [];
    this.lines = lines;
    this.log.write(`\n--- ${spec.name} started ${new Date().toISOString()}\n`);
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // A process group of its own: a Ctrl-C reaches the stack's owner only, which then stops
      // the processes in order (APIs, workers, Temporal) instead of all at once.
      detached: true,
    });
    this.child = child;
    track(child);
    const { pidFile } = spec;
    if (pidFile && child.pid !== undefined) {
      writePidRecord(pidFile, { name: spec.name, pid: child.pid, command: spec.command });
      child.once('exit', () => rmSync(pidFile, { force: true }));
    }
    this.exit = new Promise((resolve) => {
      child.once('exit', (code) => resolve(code));
      child.once('error', () => resolve(child.exitCode ?? -1));
    });
    for (const stream of [child.stdout, child.stderr]) {
      stream?.pipe(this.log, { end: false });
      if (stream) {
        createInterface({ input: stream }).on('line', (line) => {
          lines.push(line);
          if (lines.length > 2_000) lines.splice(0, 1_000);
        });
      }
    }
    const deadline = Date.now() + spec.readyTimeoutMs;
    let exited = false;
    void this.exit.then(() => (exited = true));
    for (;;) {
      if (exited) {
        throw new Error(
          `${spec.name} exited (code ${child.exitCode}) before it was ready; its output:\n${this.tail()}`,
        );
      }
      if (await spec.ready(lines).catch(() => false)) return;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        await this.exit;
        throw new Error(
          `${spec.name} was not ready within ${spec.readyTimeoutMs / 1000} s; its output:\n${this.tail()}`,
        );
      }
      await pause(150);
    }
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), this.spec.stopGraceMs);
    try {
      await this.exit;
    } finally {
      clearTimeout(timer);
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  tail(count = 40): string {
    return this.lines.slice(-count).join('\n');
  }

  /** Closes the log file once the process is gone for good. */
  async close(): Promise<void> {
    await this.stop();
    await new Promise<void>((resolve) => this.log.end(() => resolve()));
  }
}

/** Starts the process and waits until it is ready; the handle restarts it the same way. */
export async function startProcess(
  spec: ProcessSpec,
): Promise<StackProcess & { close: () => Promise<void> }> {
  const managed = new ManagedProcess(spec);
  try {
    await managed.start();
  } catch (err) {
    await managed.close();
    throw err;
  }
  return managed;
}
