// Finds the Go-built tools (Temporal CLI, stripe-mock, mailpit), or builds them once into a cache outside the repo.
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface ToolSpec {
  /** Binary name, as installed by `go install`. */
  binary: string;
  /** What the progress lines call it. */
  label: string;
  /** Environment variable that points at an existing binary. */
  envVar: string;
  goPackage: string;
  /** Rough first-build time, printed so nobody thinks the start is hung. */
  buildEstimate: string;
}

export const TEMPORAL_CLI: ToolSpec = {
  binary: 'temporal',
  label: 'Temporal CLI',
  envVar: 'TEMPORAL_CLI_PATH',
  // v1.5.1 is the newest release whose go.mod has no `replace`, so `go install` accepts it.
  goPackage: 'github.com/temporalio/cli/cmd/temporal@v1.5.1',
  buildEstimate: 'about 3 minutes the first time',
};

export const STRIPE_MOCK: ToolSpec = {
  binary: 'stripe-mock',
  label: 'stripe-mock',
  envVar: 'STRIPE_MOCK_PATH',
  goPackage: 'github.com/stripe/stripe-mock@v0.197.0',
  buildEstimate: 'about 10 seconds',
};

/** The local mail catcher: an SMTP server with a web UI and an API to read what arrived. */
export const MAILPIT: ToolSpec = {
  binary: 'mailpit',
  label: 'mailpit',
  envVar: 'MAILPIT_PATH',
  goPackage: 'github.com/axllent/mailpit@v1.33.1',
  buildEstimate: 'about 35 seconds',
};

type Env = Record<string, string | undefined>;
export type Log = (message: string) => void;

/** The per-user tool cache: survives fresh clones, so CI and new checkouts build nothing. */
export function toolsDir(env: Env): string {
  if (env.CREDITFLOW_TOOLS_DIR) return env.CREDITFLOW_TOOLS_DIR;
  const cacheHome = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(cacheHome, 'creditflow', 'bin');
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Looks in order: the tool's env variable, PATH, the tool cache. */
export function findTool(spec: ToolSpec, env: Env): string | undefined {
  const explicit = env[spec.envVar];
  if (explicit) {
    if (!isExecutable(explicit)) {
      throw new Error(`${spec.envVar}=${explicit} is not an executable file.`);
    }
    return explicit;
  }
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir && isExecutable(join(dir, spec.binary))) return join(dir, spec.binary);
  }
  const cached = join(toolsDir(env), spec.binary);
  return isExecutable(cached) ? cached : undefined;
}

function findGo(env: Env): string | undefined {
  for (const dir of [...(env.PATH ?? '').split(delimiter), '/usr/local/go/bin']) {
    if (dir && isExecutable(join(dir, 'go'))) return join(dir, 'go');
  }
  return undefined;
}

/** Builds the tool with `go install` into the cache; undefined when Go is not installed. */
export async function buildTool(spec: ToolSpec, env: Env, log: Log): Promise<string | undefined> {
  const go = findGo(env);
  if (!go) return undefined;
  const dir = toolsDir(env);
  mkdirSync(dir, { recursive: true });
  log(
    `Building ${spec.label} with go install ${spec.goPackage} (${spec.buildEstimate}; cached in ${dir})…`,
  );
  const started = Date.now();
  const ticker = setInterval(() => {
    log(`  still building ${spec.label} (${Math.round((Date.now() - started) / 1000)} s)…`);
  }, 30_000);
  try {
    const output: string[] = [];
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(go, ['install', spec.goPackage], {
        env: { ...env, GOBIN: dir, GOFLAGS: env.GOFLAGS ?? '-mod=mod' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout.on('data', (d: Buffer) => output.push(d.toString()));
      child.stderr.on('data', (d: Buffer) => output.push(d.toString()));
      child.on('error', reject);
      child.on('exit', resolve);
    });
    if (code !== 0) {
      throw new Error(
        `go install ${spec.goPackage} failed (exit ${code}):\n${output.join('').slice(-4000)}`,
      );
    }
  } finally {
    clearInterval(ticker);
  }
  log(`Built ${spec.label} in ${Math.round((Date.now() - started) / 1000)} s.`);
  return join(dir, spec.binary);
}

/** Finds the tool or builds it; undefined only when it is absent and Go is not installed. */
export async function ensureTool(spec: ToolSpec, env: Env, log: Log): Promise<string | undefined> {
  return findTool(spec, env) ?? (await buildTool(spec, env, log));
}
