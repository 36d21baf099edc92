// PostgreSQL for local runs and tests: DATABASE_URL when given, else an embedded real server.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import postgres from 'postgres';
import { compiled, projectRoot, siblingModule } from '../paths.js';
import { freePort } from './ports.js';

export interface RunningPostgres {
  url: string;
  embedded: boolean;
  stop: () => Promise<void>;
}

const childScript = siblingModule('./embedded-postgres-process', import.meta.url);
// The sources need tsx to run; the build runs on plain node.
const childLoader = compiled ? [] : ['--import', 'tsx'];

/**
 * Starts an embedded PostgreSQL whose data lives in `dir` (kept across restarts unless
 * `ephemeral`), in a child process that stops the server when this process goes away.
 */
export async function startEmbeddedPostgres(
  dir: string,
  options: { ephemeral?: boolean; log?: (m: string) => void } = {},
): Promise<RunningPostgres> {
  const port = await freePort(54329);
  const child = spawn(
    process.execPath,
    [...childLoader, childScript, dir, String(port), options.ephemeral ? '1' : '0'],
    { cwd: projectRoot, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  child.stderr.on('data', (d: Buffer) => options.log?.(d.toString().trim()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const first = await new Promise<{ url?: string; error?: string }>((resolve) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      try {
        resolve(JSON.parse(line) as { url?: string; error?: string });
      } catch {
        resolve({ error: line });
      }
    });
    child.once('exit', (code) =>
      resolve({ error: `embedded PostgreSQL exited with code ${code}` }),
    );
  });
  if (!first.url) {
    child.kill('SIGKILL');
    throw new Error(
      `Could not start the embedded PostgreSQL in ${dir}: ${first.error}. ` +
        'As root it runs as an unprivileged user, which needs to reach both that folder and ' +
        `this project's node_modules (every parent folder executable by others, e.g. chmod o+x). ` +
        'Or set DATABASE_URL to a PostgreSQL server you run.',
    );
  }
  return {
    url: first.url,
    embedded: true,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The PostgreSQL many development machines run: local, trust auth, user postgres. */
export const LOCAL_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/** True when a server answers at `url` within a couple of seconds. */
export async function isReachable(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, connect_timeout: 2, onnotice: () => undefined });
  try {
    await sql`select 1`;
    return true;
  } catch {
    return false;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** Creates `name` on the server at `serverUrl` if missing; returns its URL. */
export async function ensureDatabase(serverUrl: string, name: string): Promise<string> {
  const sql = postgres(serverUrl, { max: 1, onnotice: () => undefined });
  try {
    const [exists] = await sql`select 1 from pg_database where datname = ${name}`;
    if (!exists) await sql.unsafe(`create database "${name.replace(/"/g, '""')}"`);
  } finally {
    await sql.end({ timeout: 1 });
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Fails with a message that says what to do when the database cannot be reached. */
export async function assertReachable(url: string): Promise<void> {
  const sql = postgres(url, { max: 1, connect_timeout: 5, onnotice: () => undefined });
  try {
    await sql`select 1`;
  } catch (err) {
    const where = url.replace(/\/\/[^@]*@/, '//');
    throw new Error(
      `PostgreSQL at ${where} is not reachable (${(err as Error).message}). ` +
        'Start it, fix DATABASE_URL, or unset DATABASE_URL to use an embedded PostgreSQL.',
      { cause: err },
    );
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** The role migrations grant the API's and worker's rights to (drizzle/0004_ledger_hardening.sql). */
export const APP_ROLE = 'creditflow_app';

/**
 * Creates (or updates) a login role that is a member of the app role, so the API and worker
 * connect without the owner's rights: no DDL, no trigger control, no rewriting the ledger.
 * Runs as the owner after migrations (the app role exists from then on); returns its URL for
 * the same database.
 */
export async function ensureAppLogin(
  ownerUrl: string,
  login: { role: string; password: string },
): Promise<string> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(login.role)) {
    throw new Error(`"${login.role}" is not a plain role name (lower-case letters, digits, _)`);
  }
  const sql = postgres(ownerUrl, { max: 1, onnotice: () => undefined });
  try {
    const [exists] = await sql`select 1 from pg_roles where rolname = ${login.role}`;
    // Role statements take no bind parameters; the name is checked above, the password quoted.
    const password = `'${login.password.replace(/'/g, "''")}'`;
    await sql.unsafe(
      `${exists ? 'alter' : 'create'} role "${login.role}" with login inherit nosuperuser ` +
        `nocreatedb nocreaterole noreplication nobypassrls password ${password}`,
    );
    await sql.unsafe(`grant "${APP_ROLE}" to "${login.role}"`);
  } finally {
    await sql.end({ timeout: 1 });
  }
  const url = new URL(ownerUrl);
  url.username = login.role;
  url.password = login.password;
  return url.toString();
}

/** Drops a login role made by ensureAppLogin (after its database is gone). */
export async function dropLogin(serverUrl: string, role: string): Promise<void> {
  const sql = postgres(serverUrl, { max: 1, onnotice: () => undefined });
  try {
    await sql.unsafe(`drop role if exists "${role.replace(/"/g, '""')}"`);
  } finally {
    await sql.end({ timeout: 1 });
  }
}
