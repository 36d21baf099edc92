// The posting function and the database guards against a real PostgreSQL.
import fc from 'fast-check';
import { randomUUID } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { BusinessError } from '../src/errors.js';
import {
  createLedger,
  type Ledger,
  type PostEntryInput,
  type PostedEntry,
} from '../src/ledger/ledger.js';
import {
  createCustomer,
  expectLedgerConsistent,
  fund,
  seedBalance,
  testDatabase,
  testOwnerDatabase,
  uniqueId,
} from './helpers.js';

let db: Database;
let owner: Database;
let ledger: Ledger;

beforeAll(() => {
  db = testDatabase(30);
  owner = testOwnerDatabase();
  ledger = createLedger(db.sql);
});

afterAll(async () => {
  await expectLedgerConsistent(db);
  await db.close();
  await owner.close();
});

const debit = (customerId: string, amount: number, key = uniqueId('debit')): PostEntryInput => ({
  idempotencyKey: key,
  type: 'test_debit',
  description: 'Test debit',
  lines: [
    { account: { wallet: customerId }, amount: -amount },
    { account: { system: 'revenue' }, amount },
  ],
});

async function entriesWithKey(key: string): Promise<number> {
  const [row] = await db.sql<
    { n: string }[]
  >`select count(*) as n from entries where idempotency_key = ${key}`;
  return Number(row!.n);
}

describe('postEntry', () => {
  it('writes one balanced entry and records the balance after each posting', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 1000);
    const posted = await ledger.postEntry(debit(customer.id, 300));
    expect(posted.replayed).toBe(false);
    expect(posted.lines[0]).toMatchObject({
      account: { wallet: customer.id },
      amount: -300,
      balanceAfter: 700,
    });
    expect(await ledger.walletBalance(customer.id)).toBe(700);
    const postings = await db.sql<
      { amount: string }[]
    >`select amount from postings where entry_id = ${posted.entryId}`;
    expect(postings.map((p) => Number(p.amount)).reduce((a, b) => a + b, 0)).toBe(0);
  });

  it('posts a key sent 20 times concurrently exactly once and returns the first result to all', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 1000);
    const input = debit(customer.id, 10, uniqueId('same-key'));
    const results = await Promise.all(Array.from({ length: 20 }, () => ledger.postEntry(input)));
    expect(new Set(results.map((r) => r.entryId)).size).toBe(1);
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(results.every((r) => r.lines[0]!.balanceAfter === 990)).toBe(true);
    expect(await entriesWithKey(input.idempotencyKey)).toBe(1);
    expect(await ledger.walletBalance(customer.id)).toBe(990);
  });

  it('refuses the same key with different content as a non-retryable idempotency_conflict', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 100);
    const key = uniqueId('conflict');
    await ledger.postEntry(debit(customer.id, 10, key));
    await expect(ledger.postEntry(debit(customer.id, 11, key))).rejects.toMatchObject({
      code: 'idempotency_conflict',
    });
    expect(await ledger.walletBalance(customer.id)).toBe(90);
  });

  it('lets exactly 50 of 100 concurrent debits through a wallet that covers 50, never below zero', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 50 * 7);
    const outcomes = await Promise.allSettled(
      Array.from({ length: 100 }, () => ledger.postEntry(debit(customer.id, 7))),
    );
    const succeeded = outcomes.filter((o) => o.status === 'fulfilled');
    const refused = outcomes.filter((o) => o.status === 'rejected');
    expect(succeeded).toHaveLength(50);
    expect(refused).toHaveLength(50);
    for (const r of refused) {
      expect(r.reason).toBeInstanceOf(BusinessError);
      expect(r.reason).toMatchObject({ code: 'insufficient_credits' });
    }
    expect(await ledger.walletBalance(customer.id)).toBe(0);
    const [row] = await db.sql<{ min: string }[]>`
      select min(p.balance_after) as min from postings p
      join accounts a on a.id = p.account_id where a.customer_id = ${customer.id}`;
    expect(Number(row!.min)).toBe(0);
  });

  it('refuses a debit the wallet cannot cover with insufficient_credits and writes nothing', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 20);
    const input = debit(customer.id, 21);
    await expect(ledger.postEntry(input)).rejects.toMatchObject({
      code: 'insufficient_credits',
      details: { balance: 20, required: 21, shortfall: 1 },
    });
    expect(await entriesWithKey(input.idempotencyKey)).toBe(0);
    expect(await ledger.walletBalance(customer.id)).toBe(20);
  });

  it('rejects malformed entries before touching the database', async () => {
    const customer = await createCustomer(db);
    const base = debit(customer.id, 5);
    const bad: PostEntryInput[] = [
      { ...base, lines: [{ account: { wallet: customer.id }, amount: 5 }] },
      {
        ...base,
        lines: [
          { account: { wallet: customer.id }, amount: 5 },
          { account: { system: 'revenue' }, amount: -4 },
        ],
      },
      {
        ...base,
        lines: [
          { account: { wallet: customer.id }, amount: 0.5 },
          { account: { system: 'revenue' }, amount: -0.5 },
        ],
      },
      { ...base, idempotencyKey: '' },
    ];
    for (const input of bad) {
      await expect(ledger.postEntry(input)).rejects.toMatchObject({ code: 'invalid_posting' });
    }
    await expect(
      ledger.postEntry({
        ...base,
        lines: [
          { account: { wallet: '00000000-0000-4000-8000-000000000000' }, amount: 1 },
          { account: { system: 'revenue' }, amount: -1 },
        ],
      }),
    ).rejects.toMatchObject({ code: 'account_not_found' });
  });
});

describe('database guards', () => {
  it('refuses a raw SQL update that would make a wallet negative', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 10);
    await expect(
      db.sql`update accounts set balance = -1 where customer_id = ${customer.id}`,
    ).rejects.toMatchObject({ code: '23514', constraint_name: 'accounts_wallet_not_negative' });
    expect(await ledger.walletBalance(customer.id)).toBe(10);
  });

  it('refuses at commit an entry whose postings do not sum to zero', async () => {
    const customer = await createCustomer(db);
    const key = uniqueId('unbalanced');
    await expect(
      db.sql.begin(async (tx) => {
        const [entry] = await tx<{ id: string }[]>`
          insert into entries (idempotency_key, content_hash, type, description)
          values (${key}, 'x', 'raw', 'unbalanced') returning id`;
        // Each account moved and recorded correctly; only the entry's sum is wrong.
        const [wallet] = await tx<{ id: string; balance: string }[]>`
          update accounts set balance = balance + 5 where customer_id = ${customer.id}
          returning id, balance`;
        const [system] = await tx<{ id: string; balance: string }[]>`
          update accounts set balance = balance - 4
          where id = (select id from accounts where code = 'revenue' order by shard limit 1)
          returning id, balance`;
        await tx`insert into postings (entry_id, account_id, amount, balance_after)
                 values (${entry!.id}, ${wallet!.id}, 5, ${wallet!.balance}),
                        (${entry!.id}, ${system!.id}, -4, ${system!.balance})`;
      }),
    ).rejects.toMatchObject({ code: '23514', constraint_name: 'entries_balanced' });
    expect(await entriesWithKey(key)).toBe(0);
  });

  it('refuses updates and deletes of entries and postings, even to the owner', async () => {
    const customer = await createCustomer(db);
    const posted = await ledger.postEntry({ ...debit(customer.id, -5), type: 'test_credit' });
    for (const sql of [db.sql, owner.sql]) {
      await expect(
        sql`update entries set description = 'x' where id = ${posted.entryId}`,
      ).rejects.toMatchObject({ code: '42501' });
      await expect(
        sql`delete from postings where entry_id = ${posted.entryId}`,
      ).rejects.toMatchObject({ code: '42501' });
    }
    // The app role is stopped by its grants; the owner by the append-only triggers.
    await expect(
      owner.sql`delete from postings where entry_id = ${posted.entryId}`,
    ).rejects.toThrow(/append-only/);
  });

  it('refuses a posting added to an entry another transaction wrote', async () => {
    const customer = await createCustomer(db);
    const posted = await ledger.postEntry({ ...debit(customer.id, -5), type: 'test_credit' });
    const wallet = posted.lines[0]!;
    await expect(
      db.sql.begin(async (tx) => {
        // A chain-correct pair on the same accounts, so only the transaction rule can refuse it.
        const [w] = await tx<{ balance: string }[]>`
          update accounts set balance = balance + 1 where id = ${wallet.accountId} returning balance`;
        const [r] = await tx<{ balance: string }[]>`
          update accounts set balance = balance - 1 where id = ${posted.lines[1]!.accountId}
          returning balance`;
        await tx`insert into postings (entry_id, account_id, amount, balance_after)
                 values (${posted.entryId}, ${wallet.accountId}, 1, ${w!.balance}),
                        (${posted.entryId}, ${posted.lines[1]!.accountId}, -1, ${r!.balance})`;
      }),
    ).rejects.toMatchObject({ code: '23514', constraint_name: 'postings_same_transaction' });
    expect(await ledger.walletBalance(customer.id)).toBe(5);
  });

  it('refuses a balance that moves without a posting, at commit', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 10);
    await expect(
      db.sql`update accounts set balance = balance + 1000 where customer_id = ${customer.id}`,
    ).rejects.toMatchObject({ code: '23514', constraint_name: 'accounts_balance_posted' });
    expect(await ledger.walletBalance(customer.id)).toBe(10);
  });

  it('never lets an account change its owner or kind, even for the owner of the database', async () => {
    const customer = await createCustomer(db);
    const other = await createCustomer(db);
    const newcomer = uniqueId('nobody');
    await owner.sql`insert into customers (email) values (${`${newcomer}@example.test`})`;
    for (const change of [
      owner.sql`update accounts set customer_id = (select id from customers where email = ${`${newcomer}@example.test`})
                where customer_id = ${customer.id}`,
      owner.sql`update accounts set kind = 'system', customer_id = null where customer_id = ${other.id}`,
      owner.sql`update accounts set code = 'refunds' where id = (select id from accounts where code = 'revenue' order by shard limit 1)`,
    ]) {
      await expect(change).rejects.toThrow(/cannot change its kind, owner, code or shard/);
    }
    // The app role may not even name those columns.
    await expect(
      db.sql`update accounts set customer_id = ${other.id} where customer_id = ${customer.id}`,
    ).rejects.toMatchObject({ code: '42501' });
  });
});

describe('property: random posting sequences keep every invariant', () => {
  it('matches a simple model of balances and never lets a wallet go negative', async () => {
    const customers = await Promise.all([
      createCustomer(db),
      createCustomer(db),
      createCustomer(db),
    ]);
    const model = new Map(customers.map((c) => [c.id, 0]));
    const systems = ['revenue', 'adjustments', 'refunds'];

    const operation = fc.record({
      from: fc.integer({ min: 0, max: 5 }),
      to: fc.integer({ min: 0, max: 5 }),
      amount: fc.integer({ min: 1, max: 500 }),
      replay: fc.boolean(),
    });

    let step = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(operation, { minLength: 1, maxLength: 15 }), async (ops) => {
        let lastKey: PostEntryInput | undefined;
        for (const op of ops) {
          const account = (i: number) =>
            i < 3 ? { wallet: customers[i]!.id } : { system: systems[i - 3]! };
          if (op.from === op.to) continue;
          const input: PostEntryInput = {
            idempotencyKey: uniqueId(`prop-${step++}`),
            type: 'transfer',
            description: 'property test',
            lines: [
              { account: account(op.from), amount: -op.amount },
              { account: account(op.to), amount: op.amount },
            ],
          };
          const retry = op.replay && lastKey ? lastKey : input;
          const fromWallet = 'wallet' in account(op.from) ? customers[op.from]!.id : undefined;
          const isReplay = retry !== input;
          try {
            const posted = await ledger.postEntry(retry);
            expect(posted.replayed).toBe(isReplay);
            if (!isReplay) {
              if (fromWallet) model.set(fromWallet, model.get(fromWallet)! - op.amount);
              if (op.to < 3)
                model.set(customers[op.to]!.id, model.get(customers[op.to]!.id)! + op.amount);
              lastKey = input;
            }
          } catch (err) {
            expect(err).toMatchObject({ code: 'insufficient_credits' });
            expect(isReplay).toBe(false);
            expect(model.get(fromWallet!)!).toBeLessThan(op.amount);
          }
        }
        for (const c of customers) {
          const balance = await ledger.walletBalance(c.id);
          expect(balance).toBe(model.get(c.id));
          expect(balance).toBeGreaterThanOrEqual(0);
        }
      }),
      { numRuns: 25 },
    );
    await expectLedgerConsistent(db);
  });
});

describe('posting edge cases', () => {
  it('keeps refusals and replays clean when the database defaults to REPEATABLE READ', async () => {
    const rr = postgres(inject('databaseUrl'), {
      max: 20,
      onnotice: () => undefined,
      connection: { default_transaction_isolation: 'repeatable read' },
    });
    try {
      const [level] = await rr.begin(
        (tx) => tx<{ transaction_isolation: string }[]>`show transaction_isolation`,
      );
      expect(level!.transaction_isolation).toBe('repeatable read');
      const rrLedger = createLedger(rr);
      const customer = await createCustomer(db);
      await fund(ledger, customer.id, 30 * 7);
      const outcomes = await Promise.allSettled(
        Array.from({ length: 60 }, () => rrLedger.postEntry(debit(customer.id, 7))),
      );
      const refused = outcomes.filter((o) => o.status === 'rejected');
      expect(refused).toHaveLength(30);
      for (const r of refused) expect(r.reason).toMatchObject({ code: 'insufficient_credits' });
      expect(await ledger.walletBalance(customer.id)).toBe(0);

      const payee = await createCustomer(db);
      const input = { ...debit(payee.id, -5, uniqueId('rr-same-key')), type: 'test_credit' };
      const replays = await Promise.allSettled(
        Array.from({ length: 20 }, () => rrLedger.postEntry(input)),
      );
      expect(replays.filter((r) => r.status === 'rejected')).toEqual([]);
      const results = replays.map((r) => (r as PromiseFulfilledResult<PostedEntry>).value);
      expect(results.filter((r) => !r.replayed)).toHaveLength(1);
      expect(new Set(results.map((r) => r.entryId)).size).toBe(1);
      expect(await ledger.walletBalance(payee.id)).toBe(5);
    } finally {
      await rr.end();
    }
  });

  it('stores and reports balances above 2^53 exactly as the database computed them', async () => {
    const customer = await createCustomer(db);
    await seedBalance(db, customer.id, 2n ** 53n + 3n);
    const posted = await ledger.postEntry(debit(customer.id, 2));
    const wallet = posted.lines[0]!;
    expect(wallet.balanceAfterExact).toBe('9007199254740993');
    const [stored] = await db.sql<{ balance_after: string }[]>`
      select balance_after from postings where entry_id = ${posted.entryId} and account_id = ${wallet.accountId}`;
    expect(stored!.balance_after).toBe('9007199254740993');
    expect(await ledger.walletBalanceExact(customer.id)).toBe('9007199254740993');
    // A replay reads the same exact value back.
    const again = await ledger.postEntry(debit(customer.id, 2, posted.idempotencyKey));
    expect(again.replayed).toBe(true);
    expect(again.lines[0]!.balanceAfterExact).toBe('9007199254740993');
  });

  it('refuses a posting that would overflow a balance as a final balance_out_of_range', async () => {
    const customer = await createCustomer(db);
    const nearMax = 2n ** 63n - 10n;
    await seedBalance(db, customer.id, nearMax);
    const err = await ledger.postEntry(debit(customer.id, -100)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusinessError);
    expect(err).toMatchObject({ code: 'balance_out_of_range' });
    expect(await ledger.walletBalanceExact(customer.id)).toBe(nearMax.toString());
  });

  it('accepts a customer id in any letter case and treats it as the same wallet', async () => {
    const customer = await createCustomer(db);
    const upper = customer.id.toUpperCase();
    const key = uniqueId('upper');
    const first = await ledger.postEntry({ ...debit(upper, -40, key), type: 'test_credit' });
    expect(first.lines[0]!.account).toEqual({ wallet: customer.id });
    const replay = await ledger.postEntry({ ...debit(customer.id, -40, key), type: 'test_credit' });
    expect(replay).toMatchObject({ replayed: true, entryId: first.entryId });
    expect(await ledger.walletBalance(upper)).toBe(40);
  });

  it('refuses a wallet id that is not a uuid as account_not_found, not a database error', async () => {
    for (const bad of ['not-a-uuid', `${randomUUID()}x`, "x' or 1=1--"]) {
      const err = await ledger.postEntry(debit(bad, -1)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BusinessError);
      expect(err).toMatchObject({ code: 'account_not_found' });
      await expect(ledger.walletBalance(bad)).rejects.toMatchObject({ code: 'account_not_found' });
    }
  });

  it('answers account_not_found for a cached wallet whose row is gone, and finds a new one', async () => {
    const customer = await createCustomer(db);
    // A refused debit fills the cache with the wallet's id and writes nothing.
    await expect(ledger.postEntry(debit(customer.id, 5))).rejects.toMatchObject({
      code: 'insufficient_credits',
    });
    await owner.sql`delete from accounts where customer_id = ${customer.id}`;
    const err = await ledger.postEntry(debit(customer.id, -5)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusinessError);
    expect(err).toMatchObject({ code: 'account_not_found' });

    // Re-seeded under a new id: the next posting finds it.
    await owner.sql`insert into accounts (kind, customer_id, code) values ('wallet', ${customer.id}, 'wallet')`;
    await expect(ledger.postEntry(debit(customer.id, 5))).rejects.toMatchObject({
      code: 'insufficient_credits',
    });
    await owner.sql`delete from accounts where customer_id = ${customer.id}`;
    await owner.sql`insert into accounts (kind, customer_id, code) values ('wallet', ${customer.id}, 'wallet')`;
    const posted = await ledger.postEntry({ ...debit(customer.id, -5), type: 'test_credit' });
    expect(posted.lines[0]!.balanceAfter).toBe(5);
  });

  it('re-reads system shards when the cached ones were re-seeded', async () => {
    const code = uniqueId('test_system');
    const seed = () =>
      owner.sql`insert into accounts (kind, code, shard) select 'system', ${code}, s from generate_series(0, 3) s`;
    await seed();
    const customer = await createCustomer(db);
    const toSystem = (amount: number): PostEntryInput => ({
      idempotencyKey: uniqueId('to-system'),
      type: 'test_debit',
      description: 'test',
      lines: [
        { account: { wallet: customer.id }, amount: -amount },
        { account: { system: code }, amount },
      ],
    });
    // Fills the shard cache (refused: the wallet is empty, nothing written).
    await expect(ledger.postEntry(toSystem(3))).rejects.toMatchObject({
      code: 'insufficient_credits',
    });
    await owner.sql`delete from accounts where kind = 'system' and code = ${code}`;
    await seed();
    await fund(ledger, customer.id, 3);
    const posted = await ledger.postEntry(toSystem(3));
    expect(posted.lines[1]!.balanceAfter).toBe(3);
    expect(await ledger.systemBalance(code)).toBe(3);
  });

  it('turns permanent database errors into final invalid_data refusals and writes nothing', async () => {
    const customer = await createCustomer(db);
    const input = { ...debit(customer.id, -5), type: 'test_credit', description: 'bad\u0000text' };
    const err = await ledger.postEntry(input).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusinessError);
    expect(err).toMatchObject({ code: 'invalid_data', details: { sqlState: '22021' } });

    const key = uniqueId('fk');
    const fk = await ledger
      .postEntry({ ...debit(customer.id, -5, key), type: 'test_credit' }, async (tx) => {
        await tx`insert into notifications (idempotency_key, customer_id, kind, title, body)
                 values (${key}, ${randomUUID()}, 'x', 'x', 'x')`;
      })
      .catch((e: unknown) => e);
    expect(fk).toMatchObject({ code: 'invalid_data', details: { sqlState: '23503' } });
    expect(await entriesWithKey(key)).toBe(0);
    expect(await ledger.walletBalance(customer.id)).toBe(0);
  });

  it(
    'never deadlocks: 400 opposite-direction transfers between two wallets all commit',
    { timeout: 180_000 },
    async () => {
      const a = await createCustomer(db);
      const b = await createCustomer(db);
      await fund(ledger, a.id, 1000);
      await fund(ledger, b.id, 1000);
      const transfer = (from: string, to: string): PostEntryInput => ({
        idempotencyKey: uniqueId('swap'),
        type: 'transfer',
        description: 'opposite-direction transfer',
        lines: [
          { account: { wallet: from }, amount: -1 },
          { account: { wallet: to }, amount: 1 },
        ],
      });
      const outcomes = await Promise.allSettled(
        Array.from({ length: 400 }, (_, i) =>
          ledger.postEntry(i % 2 === 0 ? transfer(a.id, b.id) : transfer(b.id, a.id)),
        ),
      );
      // With the accounts locked in any but one fixed order, PostgreSQL reports deadlocks (40P01).
      const failures = outcomes.flatMap((o) =>
        o.status === 'rejected' ? [(o.reason as { code?: string }).code ?? String(o.reason)] : [],
      );
      expect(failures).toEqual([]);
      expect(await ledger.walletBalance(a.id)).toBe(1000);
      expect(await ledger.walletBalance(b.id)).toBe(1000);
    },
  );
});
