// stripe-mock for local runs and tests: Stripe's own API mock, found or built like the Temporal CLI.
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort, waitForPort } from './ports.js';
import { STRIPE_MOCK, ensureTool, type Log } from './tools.js';

export interface RunningStripeMock {
  apiBase: string;
  pid: number;
  binary: string;
  stop: () => Promise<void>;
}

/** Starts stripe-mock on a free port; undefined when it is absent and cannot be built. */
export async function startStripeMock(
  env: Record<string, string | undefined>,
  log: Log,
  preferredPort = 12111,
): Promise<RunningStripeMock | undefined> {
  const binary = await ensureTool(STRIPE_MOCK, env, log);
  if (!binary) return undefined;
  // A free port can be taken by another process between the check and the bind: try again.
  // stripe-mock also serves HTTPS, on 12112 unless told otherwise, which would collide with any
  // other instance; it gets a free port of its own.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort(attempt === 1 ? preferredPort : 0);
    const httpsPort = await freePort(0);
    const child = spawn(
      binary,
      ['-http-addr', `127.0.0.1:${port}`, '-https-addr', `127.0.0.1:${httpsPort}`],
      { stdio: 'ignore' },
    );
    try {
      await waitForPort(port, child, 'stripe-mock', 15_000);
      return running(child, port, binary);
    } catch (err) {
      child.kill('SIGKILL');
      if (attempt >= 3) throw err;
      log(`stripe-mock could not listen on ${port}; trying another port`);
    }
  }
}

function running(child: ChildProcess, port: number, binary: string): RunningStripeMock {
  return {
    apiBase: `http://127.0.0.1:${port}`,
    pid: child.pid ?? -1,
    binary,
    stop: () =>
      new Promise<void>((resolve) => {
        // Gone already (a Ctrl-C reaches the whole process group): its exit event has fired.
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
