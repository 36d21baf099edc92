// The fence between a forward posting and the compensation that looks for it, raced head on in
// the database: for every step either the posting exists and the compensation saw it, or the
// compensation closed the step and the posting refused. Never a posting nobody compensates.
import { afterAll, describe, expect, it } from 'vitest';
import { StepClosed, closeUnlessPosted } from '../src/ledger/fences.js';
import { createLedger } from '../src/ledger/ledger.js';
import {
  createCustomer,
  eventually,
  expectLedgerConsistent,
  fund,
  testDatabase,
  uniqueId,
} from './helpers.js';

const db = testDatabase(20);
const ledger = createLedger(db.sql);

afterAll(async () => {
  await expectLedgerConsistent(db);
  await db.close();
});

const entry = (customerId: string, key: string) => ({
  idempotencyKey: key,
  fence: key,
  type: 'verification_purchase',
  description: 'fence',
  lines: [
    { account: { wallet: customerId }, amount: -10 },
    { account: { system: 'revenue' }, amount: 10 },
  ],
});

/** Resolves once another connection is waiting for a lock on a fence row. */
async function blockedOnFence() {
  await eventually(
    async () => {
      const [row] = await db.sql<{ n: string }[]>`
      select count(*) as n from pg_stat_activity
      where wait_event_type = 'Lock'
        and (query like '%step_fences%' or query like '%ledger_post_entry%')
        and datname = current_database()`;
      return Number(row?.n) > 0 ? true : undefined;
    },
    { timeoutMs: 10_000, intervalMs: 20 },
  );
}

describe('step fences', () => {
  it('a close that arrives while the posting holds the fence waits, then sees the posting', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 100);
    const key = uniqueId('fence-forward-first');
    let closing: Promise<Awaited<ReturnType<typeof closeUnlessPosted>>> | undefined;
    const posted = await ledger.postEntry(entry(customer.id, key), async () => {
      closing = closeUnlessPosted(db.sql, key, 'test');
      await blockedOnFence();
    });
    expect(await closing).toEqual({ posted: true, entryId: posted.entryId });
    expect(await ledger.walletBalance(customer.id)).toBe(90);
  });

  it('a posting that arrives while the close holds the fence waits, then refuses', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 100);
    const key = uniqueId('fence-close-first');
    let posting: Promise<unknown> | undefined;
    expect(
      await closeUnlessPosted(db.sql, key, 'test', async () => {
        posting = ledger.postEntry(entry(customer.id, key)).catch((err: unknown) => err);
        await blockedOnFence();
      }),
    ).toEqual({ posted: false });
    expect(await posting).toBeInstanceOf(StepClosed);
    expect(await ledger.walletBalance(customer.id)).toBe(100);
  });

  it('postings and closes racing 60 times: each pair agrees on what happened', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 10_000);
    const results = await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        const key = uniqueId('fence-race');
        const post = () =>
          ledger.postEntry(entry(customer.id, key)).then(
            () => true,
            (err: unknown) => {
              if (err instanceof StepClosed) return false;
              throw err;
            },
          );
        const close = () =>
          new Promise((r) => setTimeout(r, i % 4)).then(() =>
            closeUnlessPosted(db.sql, key, 'test'),
          );
        const [postedIt, closing] = await Promise.all([post(), close()]);
        const [row] = await db.sql`select id from entries where idempotency_key = ${key}`;
        return { postedIt, sawPosting: closing.posted, exists: Boolean(row) };
      }),
    );
    for (const r of results) {
      expect(r.sawPosting).toBe(r.exists);
      expect(r.postedIt).toBe(r.exists);
    }
    const posted = results.filter((r) => r.exists).length;
    expect(await ledger.walletBalance(customer.id)).toBe(10_000 - posted * 10);
  });

  it('a closed step refuses its posting for good; a posted step cannot be closed', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 100);
    const closedKey = uniqueId('fence-closed');
    expect(await closeUnlessPosted(db.sql, closedKey, 'test')).toEqual({ posted: false });
    await expect(ledger.postEntry(entry(customer.id, closedKey))).rejects.toBeInstanceOf(
      StepClosed,
    );
    await expect(ledger.postEntry(entry(customer.id, closedKey))).rejects.toBeInstanceOf(
      StepClosed,
    );

    const postedKey = uniqueId('fence-posted');
    const posted = await ledger.postEntry(entry(customer.id, postedKey));
    expect(await closeUnlessPosted(db.sql, postedKey, 'test')).toEqual({
      posted: true,
      entryId: posted.entryId,
    });
    // Still open: a retry of the posting replays it.
    expect((await ledger.postEntry(entry(customer.id, postedKey))).replayed).toBe(true);
    expect(await ledger.walletBalance(customer.id)).toBe(90);
  });
});
