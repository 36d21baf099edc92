// A connection whose PostgreSQL backend dies must fail its queries with a catchable error, never
// take the process down. postgres.js 3.4.9 throws from a timer when it flushes a buffered write to
// a socket that has closed (porsager/postgres#1208); scripts/patch-deps.js guards it at install.
// Without the guard the child below exits 1 with "Cannot read properties of null (reading 'write')".
import { spawnSync } from 'node:child_process';
import { describe, expect, inject, it } from 'vitest';
import { projectRoot } from '../src/paths.js';

const script = String.raw`
import postgres from 'postgres';
const url = process.argv[1];
const sql = postgres(url, { max: 2, onnotice: () => {} });
const admin = postgres(url, { max: 1, onnotice: () => {} });
const pause = (ms) => new Promise((r) => setTimeout(r, ms));
const kill = (pid) => admin${'`'}select pg_terminate_backend(${'${pid}'})${'`'};
const out = {};

// A reserved connection (what a transaction holds) whose backend is terminated, then used.
const reserved = await sql.reserve();
const [{ pid }] = await reserved${'`'}select pg_backend_pid() as pid${'`'};
await kill(pid);
await pause(300);
out.reserved = await reserved${'`'}select 1${'`'}.then(() => 'answered', (e) => e.code);
reserved.release();

// A transaction whose backend dies between two statements: its ROLLBACK is written to the dead socket.
out.transaction = await sql
  .begin(async (tx) => {
    const [{ pid }] = await tx${'`'}select pg_backend_pid() as pid${'`'};
    await kill(pid);
    await pause(300);
    await tx${'`'}select 1${'`'};
  })
  .then(() => 'committed', (e) => e.code);

// The pool reconnects cleanly afterwards.
const [{ one }] = await sql${'`'}select 1 as one${'`'};
out.after = one;
await sql.end({ timeout: 1 });
await admin.end({ timeout: 1 });
console.log(JSON.stringify(out));
`;

describe('a PostgreSQL connection dropped under a query', () => {
  it('rejects the query with CONNECTION_CLOSED and the process carries on', () => {
    const run = spawnSync(
      process.execPath,
      ['--input-type=module', '-e', script, inject('databaseUrl')],
      { cwd: projectRoot, encoding: 'utf8', timeout: 30_000 },
    );
    expect(run.stderr).not.toContain("reading 'write'");
    expect(run.status).toBe(0);
    const out = JSON.parse(run.stdout.trim().split('\n').pop() ?? '{}');
    expect(out).toEqual({
      reserved: 'CONNECTION_CLOSED',
      transaction: 'CONNECTION_CLOSED',
      after: 1,
    });
  });
});
