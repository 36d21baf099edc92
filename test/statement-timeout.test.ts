// The worker's connections carry a statement timeout below the activities' start-to-close, so a
// stuck statement is ended by the database before a retry of its activity can overlap it.
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createDatabase } from '../src/db/client.js';
import { loadConfig } from '../src/config.js';
import { DB_STEP_START_TO_CLOSE_MS } from '../src/workflows/timeouts.js';

const timeoutMs = loadConfig({}).workerStatementTimeoutMs;
const db = createDatabase(inject('databaseUrl'), {
  max: 1,
  applicationName: 'creditflow-test',
  statementTimeoutMs: 300,
});
const worker = createDatabase(inject('databaseUrl'), {
  max: 1,
  applicationName: 'creditflow-test',
  statementTimeoutMs: timeoutMs,
});

afterAll(async () => {
  await db.close();
  await worker.close();
});

describe('statement timeout', () => {
  it('is set on every connection of the pool, below the activity timeout', async () => {
    const [row] = await worker.sql<{ ms: string }[]>`
      select setting as ms from pg_settings where name = 'statement_timeout'`;
    expect(Number(row?.ms)).toBe(timeoutMs);
    expect(Number(row?.ms)).toBeLessThan(DB_STEP_START_TO_CLOSE_MS);
  });

  it('ends a statement that runs past it (a retryable error, 57014)', async () => {
    await expect(db.sql`select pg_sleep(2)`).rejects.toMatchObject({ code: '57014' });
  });
});
