// Finds the Go-built tools (Temporal CLI, stripe-mock, mailpit, the Temporal server and its sql
// tool, the Temporal UI server), or builds them once into a cache outside the repo.
import { execFileSync, spawn } from 'node:child_process';
import {
  accessSync,
  chmodSync,
  constants,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface ToolSpec {
  /** Binary name in the cache (and on PATH). */
  binary: string;
  /** The name `go install` gives it, when that is not `binary` (renamed in the cache). */
  installedAs?: string;
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

/**
 * The Temporal UI as its own process, for the production-shaped stack (the CLI's dev server has
 * the same UI built in). The same release as the dev server's UI; `go install` calls it `server`.
 */
export const TEMPORAL_UI: ToolSpec = {
  binary: 'temporal-ui-server',
  installedAs: 'server',
  label: 'Temporal UI server',
  envVar: 'TEMPORAL_UI_SERVER_PATH',
  goPackage: 'github.com/temporalio/ui-server/v2/cmd/server@v2.42.1',
  buildEstimate: 'about 1 minute the first time',
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

/**
 * Runs `go install <packages>` with GOBIN=`bin`, printing a line every 30 s so a long first
 * build does not look hung (and CI logs keep moving).
 */
async function goInstall(
  go: string,
  packages: string[],
  bin: string,
  env: Env,
  label: string,
  log: Log,
): Promise<void> {
  const started = Date.now();
  const ticker = setInterval(() => {
    log(`  still building ${label} (${Math.round((Date.now() - started) / 1000)} s)…`);
  }, 30_000);
  try {
    const output: string[] = [];
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(go, ['install', ...packages], {
        env: { ...env, GOBIN: bin, GOFLAGS: env.GOFLAGS ?? '-mod=mod' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout.on('data', (d: Buffer) => output.push(d.toString()));
      child.stderr.on('data', (d: Buffer) => output.push(d.toString()));
      child.on('error', reject);
      child.on('exit', resolve);
    });
    if (code !== 0) {
      throw new Error(
        `go install ${packages.join(' ')} failed (exit ${code}):\n${output.join('').slice(-4000)}`,
      );
    }
  } finally {
    clearInterval(ticker);
  }
  log(`Built ${label} in ${Math.round((Date.now() - started) / 1000)} s.`);
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
  if (!spec.installedAs || spec.installedAs === spec.binary) {
    await goInstall(go, [spec.goPackage], dir, env, spec.label, log);
    return join(dir, spec.binary);
  }
  // Built under its own name in a folder of its own, then moved into place under ours.
  const staging = join(dir, `.building-${spec.binary}-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  try {
    await goInstall(go, [spec.goPackage], staging, env, spec.label, log);
    renameSync(join(staging, spec.installedAs), join(dir, spec.binary));
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return join(dir, spec.binary);
}

/** Finds the tool or builds it; undefined only when it is absent and Go is not installed. */
export async function ensureTool(spec: ToolSpec, env: Env, log: Log): Promise<string | undefined> {
  return findTool(spec, env) ?? (await buildTool(spec, env, log));
}

/**
 * The Temporal server as production runs it (on PostgreSQL), with the sql tool that sets up its
 * schema and the schema files of the same release. `go install` names the binaries after their
 * package folders (`server`, `sql`); the cache keeps them under clearer names.
 */
export const TEMPORAL_SERVER = {
  label: 'Temporal server and sql tool',
  envVar: 'TEMPORAL_SERVER_DIR',
  module: 'go.temporal.io/server',
  version: 'v1.29.1',
  binaries: {
    server: { installed: 'server', cached: 'temporal-server', goPackage: 'cmd/server' },
    sqlTool: { installed: 'sql', cached: 'temporal-sql-tool', goPackage: 'cmd/tools/sql' },
  },
  /** The module's schema folder for PostgreSQL 12 and later, copied beside the binaries. */
  schema: join('schema', 'postgresql', 'v12'),
  buildEstimate: 'about 6 minutes the first time on 2 cores, seconds once Go has cached the build',
} as const;

/** Where the Temporal server's binaries and schema live; TEMPORAL_SERVER_DIR overrides. */
export interface TemporalServerTools {
  dir: string;
  server: string;
  sqlTool: string;
  /** `schema/postgresql/v12` of the module: `temporal/versioned` and `visibility/versioned`. */
  schemaDir: string;
}

/** The folder for the Temporal server in the tool cache, or TEMPORAL_SERVER_DIR. */
export function temporalServerDir(env: Env): string {
  return (
    env[TEMPORAL_SERVER.envVar] ?? join(toolsDir(env), `temporal-server-${TEMPORAL_SERVER.version}`)
  );
}

function temporalServerTools(dir: string): TemporalServerTools {
  return {
    dir,
    server: join(dir, TEMPORAL_SERVER.binaries.server.cached),
    sqlTool: join(dir, TEMPORAL_SERVER.binaries.sqlTool.cached),
    schemaDir: join(dir, TEMPORAL_SERVER.schema),
  };
}

/** What a folder lacks of the server tools: empty when both binaries and the schema are there. */
export function missingTemporalServerParts(tools: TemporalServerTools): string[] {
  const missing: string[] = [];
  if (!isExecutable(tools.server)) missing.push(tools.server);
  if (!isExecutable(tools.sqlTool)) missing.push(tools.sqlTool);
  for (const part of ['temporal', 'visibility']) {
    const versioned = join(tools.schemaDir, part, 'versioned');
    if (!existsSync(versioned)) missing.push(versioned);
  }
  return missing;
}

/**
 * The server tools in TEMPORAL_SERVER_DIR (which must then be complete) or the tool cache;
 * undefined when the cache has not got them yet.
 */
export function findTemporalServer(env: Env): TemporalServerTools | undefined {
  const tools = temporalServerTools(temporalServerDir(env));
  const missing = missingTemporalServerParts(tools);
  if (missing.length === 0) return tools;
  if (env[TEMPORAL_SERVER.envVar]) {
    throw new Error(
      `${TEMPORAL_SERVER.envVar}=${tools.dir} lacks ${missing.join(', ')}: it must hold ` +
        `${TEMPORAL_SERVER.binaries.server.cached}, ${TEMPORAL_SERVER.binaries.sqlTool.cached} and ` +
        `${TEMPORAL_SERVER.schema} of ${TEMPORAL_SERVER.module}@${TEMPORAL_SERVER.version}.`,
    );
  }
  return undefined;
}

/** Copies a folder out of the read-only Go module cache, leaving the copy writable and removable. */
function copyWritable(from: string, to: string): void {
  cpSync(from, to, { recursive: true });
  const fix = (path: string) => {
    if (statSync(path).isDirectory()) {
      chmodSync(path, 0o755);
      for (const entry of readdirSync(path)) fix(join(path, entry));
    } else {
      chmodSync(path, 0o644);
    }
  };
  fix(to);
}

/**
 * Builds both binaries with one `go install` into a staging folder, copies the module's schema
 * beside them, then moves the folder into place: a build cut short leaves nothing half made.
 * Undefined when Go is not installed.
 */
export async function buildTemporalServer(
  env: Env,
  log: Log,
): Promise<TemporalServerTools | undefined> {
  const go = findGo(env);
  if (!go) return undefined;
  const dir = temporalServerDir(env);
  const staging = `${dir}.building-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const { module, version, binaries } = TEMPORAL_SERVER;
  const packages = Object.values(binaries).map((b) => `${module}/${b.goPackage}@${version}`);
  log(
    `Building the ${TEMPORAL_SERVER.label} with go install ${packages.join(' ')} ` +
      `(${TEMPORAL_SERVER.buildEstimate}; cached in ${dir})…`,
  );
  try {
    await goInstall(go, packages, staging, env, TEMPORAL_SERVER.label, log);
    for (const binary of Object.values(binaries)) {
      renameSync(join(staging, binary.installed), join(staging, binary.cached));
    }
    const modCache = execFileSync(go, ['env', 'GOMODCACHE'], { env, encoding: 'utf8' }).trim();
    const schema = join(modCache, `${module}@${version}`, TEMPORAL_SERVER.schema);
    copyWritable(schema, join(staging, TEMPORAL_SERVER.schema));
    // Another build may have finished first; either copy is as good.
    if (missingTemporalServerParts(temporalServerTools(dir)).length > 0) {
      rmSync(dir, { recursive: true, force: true });
      renameSync(staging, dir);
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return temporalServerTools(dir);
}

/** Finds the server tools or builds them; undefined only when they are absent and Go is not installed. */
export async function ensureTemporalServer(
  env: Env,
  log: Log,
): Promise<TemporalServerTools | undefined> {
  return findTemporalServer(env) ?? (await buildTemporalServer(env, log));
}

/** The error to raise when the server tools are missing: what to run or set. */
export function temporalServerMissingMessage(env: Env): string {
  return (
    `The Temporal server (${TEMPORAL_SERVER.module}@${TEMPORAL_SERVER.version}) is not in ` +
    `${temporalServerDir(env)}: run \`npm run tools\` once (needs Go; ` +
    `${TEMPORAL_SERVER.buildEstimate}), or set ${TEMPORAL_SERVER.envVar} to a folder holding ` +
    `${TEMPORAL_SERVER.binaries.server.cached}, ${TEMPORAL_SERVER.binaries.sqlTool.cached} and ` +
    `${TEMPORAL_SERVER.schema}.`
  );
}
