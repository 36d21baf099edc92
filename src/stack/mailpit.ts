// mailpit for local runs and tests: catches every e-mail over SMTP and shows it in a web UI (and an
// API the tests read), found or built like the other Go tools.
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort, waitForPort } from './ports.js';
import { MAILPIT, ensureTool, type Log } from './tools.js';

export interface RunningMailpit {
  /** What SMTP_URL is set to, e.g. smtp://127.0.0.1:1025. */
  smtpUrl: string;
  /** The web UI; its API is under /api/v1. */
  webUrl: string;
  stop: () => Promise<void>;
}

export interface MailpitOptions {
  /** Keeps the messages in this file across restarts; unset: a temporary store, gone at stop. */
  database?: string;
  /** Preferred ports (npm start), else any free ones. */
  smtpPort?: number;
  webPort?: number;
  /** Messages kept before the oldest go; mailpit's default is 500. */
  maxMessages?: number;
}

/** Starts mailpit on free loopback ports; undefined when it is absent and cannot be built. */
export async function startMailpit(
  env: Record<string, string | undefined>,
  log: Log,
  options: MailpitOptions = {},
): Promise<RunningMailpit | undefined> {
  const binary = await ensureTool(MAILPIT, env, log);
  if (!binary) return undefined;
  // A free port can be taken by another process between the check and the bind: try again.
  for (let attempt = 1; ; attempt++) {
    const smtpPort = await freePort(attempt === 1 ? (options.smtpPort ?? 0) : 0);
    const webPort = await freePort(attempt === 1 ? (options.webPort ?? 0) : 0);
    const args = [
      '--smtp',
      `127.0.0.1:${smtpPort}`,
      '--listen',
      `127.0.0.1:${webPort}`,
      // Any SMTP user and password, with or without TLS, as a production server's URL may carry.
      '--smtp-auth-accept-any',
      '--smtp-auth-allow-insecure',
      '--smtp-disable-rdns',
      '--disable-version-check',
      '--max',
      String(options.maxMessages ?? 500),
      '--quiet',
      ...(options.database ? ['--database', options.database] : []),
    ];
    const child = spawn(binary, args, { stdio: 'ignore' });
    try {
      await waitForPort(smtpPort, child, 'mailpit', 15_000);
      await waitForPort(webPort, child, 'mailpit', 15_000);
      return running(child, smtpPort, webPort);
    } catch (err) {
      child.kill('SIGKILL');
      if (attempt >= 3) throw err;
      log(`mailpit could not listen on ${smtpPort} and ${webPort}; trying other ports`);
    }
  }
}

function running(child: ChildProcess, smtpPort: number, webPort: number): RunningMailpit {
  return {
    smtpUrl: `smtp://127.0.0.1:${smtpPort}`,
    webUrl: `http://127.0.0.1:${webPort}`,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
