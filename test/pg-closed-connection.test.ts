// A connection whose PostgreSQL backend dies must fail its queries with a catchable error, never
// take the process down nor cost the pool a connection. postgres.js 3.4.9 throws from a timer
// when it flushes a buffered write to a socket that has closed (porsager/postgres#1208), and a
// transaction that goes on after its connection closed parks that connection for good;
// scripts/patch-deps.js guards both at install. Without it the child below exits 1 with
// "Cannot read properties of null (reading 'write')".
import { spawnSync } from 'node:child_process';
import { describe, expect, inject, it } from 'vitest';
import { projectRoot } from '../src/paths.js';

const script = String.raw`
import postgres from 'postgres';
const url = process.argv[1];
const quiet = { onnotice: () => {} };
const admin = postgres(url, { max: 1, ...quiet });
const pause = (ms) => new Promise((r) => setTimeout(r, ms));
const kill = (pid) => admin${'`'}select pg_terminate_backend(${'${pid}'})${'`'};
const within = (p, ms = 10_000) => Promise.race([p, pause(ms).then(() => 'hung')]);
/** Every connection of the pool still serves: as many concurrent queries as it has, twice over. */
const serves = (sql, max) =>
  within(
    Promise.all(
      Array.from({ length: max * 2 }, (_, i) => sql${'`'}select pg_sleep(0.05), ${'${i}'}::int as i${'`'}),
    ).then((rows) => rows.length),
  );
const out = {};

// A reserved connection whose backend is terminated, then used and released.
{
  const sql = postgres(url, { max: 2, ...quiet });
  const reserved = await sql.reserve();
  const [{ pid }] = await reserved${'`'}select pg_backend_pid() as pid${'`'};
  await kill(pid);
  await pause(300);
  out.reserved = await within(reserved${'`'}select 1${'`'}.then(() => 'answered', (e) => e.code));
  reserved.release();
  out.reservedPool = await serves(sql, 2);
  await sql.end({ timeout: 1 });
}

// Transactions whose backend dies while they wait on other work; the next statement is
// parameterised (not yet prepared) and the rollback follows. On a fresh pool, three times over a
// pool of two, so a connection lost to the pool would show.
{
  const sql = postgres(url, { max: 2, ...quiet });
  out.transactions = [];
  for (let round = 0; round < 3; round++) {
    // The transaction ends (rejected) as soon as its connection closes, but its callback runs on:
    // wait until its next statement has been answered before the next round.
    let settled;
    const next = new Promise((resolve) => (settled = resolve));
    const outcome = await within(
      sql
        .begin(async (tx) => {
          const [{ pid }] = await tx${'`'}select pg_backend_pid() as pid${'`'};
          await kill(pid);
          await pause(300);
          try {
            await tx${'`'}select ${'${round}'}::int as round, ${'${"x"}'}::text as t${'`'};
          } finally {
            settled();
          }
        })
        .then(() => 'committed', (e) => e.code),
    );
    out.transactions.push([outcome, await within(next.then(() => 'settled'))]);
  }
  out.transactionPool = await serves(sql, 2);
  await sql.end({ timeout: 1 });
}
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
      reservedPool: 4,
      transactions: [
        ['CONNECTION_CLOSED', 'settled'],
        ['CONNECTION_CLOSED', 'settled'],
        ['CONNECTION_CLOSED', 'settled'],
      ],
      transactionPool: 4,
    });
  });
});
