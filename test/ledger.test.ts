// The posting function and the database guards against a real PostgreSQL.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { BusinessError } from '../src/errors.js';
import { runLedgerChecks } from '../src/ledger/check.js';
import { createLedger, type Ledger, type PostEntryInput, type Tx } from '../src/ledger/ledger.js';
import { createCustomer, expectLedgerConsistent, fund, testDatabase, uniqueId } from './helpers.js';

let db: Database;
let ledger: Ledger;

beforeAll(() => {
  db = testDatabase(30);
  ledger = createLedger(db.sql);
});

afterAll(async () => {
  await expectLedgerConsistent(db);
  await db.close();
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
        const [wallet] = await tx<
          { id: string }[]
        >`select id from accounts where customer_id = ${customer.id}`;
        const [system] = await tx<
          { id: string }[]
        >`select id from accounts where code = 'revenue' limit 1`;
        await tx`insert into postings (entry_id, account_id, amount, balance_after)
                 values (${entry!.id}, ${wallet!.id}, 5, 5), (${entry!.id}, ${system!.id}, -4, -4)`;
      }),
    ).rejects.toMatchObject({ code: '23514' });
    expect(await entriesWithKey(key)).toBe(0);
  });

  it('refuses updates and deletes of entries and postings', async () => {
    const customer = await createCustomer(db);
    const posted = await ledger.postEntry({ ...debit(customer.id, -5), type: 'test_credit' });
    await expect(
      db.sql`update entries set description = 'x' where id = ${posted.entryId}`,
    ).rejects.toThrow(/append-only/);
    await expect(db.sql`delete from postings where entry_id = ${posted.entryId}`).rejects.toThrow(
      /append-only/,
    );
  });
});

describe('invariant checker', () => {
  it('reports a cached balance that no longer matches its postings', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 10);
    // Corrupt inside a transaction that is rolled back, so no other test ever sees it.
    const rollback = new Error('rollback');
    let violations: string[] = [];
    await expect(
      db.sql.begin(async (tx) => {
        await tx`update accounts set balance = balance + 1 where customer_id = ${customer.id}`;
        const report = await runLedgerChecks(tx);
        violations = report.violations.map((v) => v.invariant);
        throw rollback;
      }),
    ).rejects.toBe(rollback);
    expect(violations).toContain('cached_balance_mismatch');
    expect(await ledger.walletBalance(customer.id)).toBe(10);
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

describe('payment invariants', () => {
  it('reports a payment paid long ago and never credited', async () => {
    const customer = await createCustomer(db);
    const id = uniqueId('pay');
    const rollback = new Error('rollback');
    let violations: string[] = [];
    await expect(
      db.sql.begin(async (tx) => {
        await tx`
          insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status, updated_at)
          values (${id}, ${`checkout-${id}`}, ${customer.id}, 'small', 100, 500, 'eur', 'paid', now() - interval '1 hour')`;
        violations = (await runLedgerChecks(tx)).violations.map((v) => v.invariant);
        throw rollback;
      }),
    ).rejects.toBe(rollback);
    expect(violations).toContain('payment_paid_not_credited');
  });
});

describe('flow invariants', () => {
  /** Runs the checks on data written inside a transaction that is then rolled back. */
  async function violationsWith(write: (tx: Tx) => Promise<void>) {
    const rollback = new Error('rollback');
    let found: string[] = [];
    await expect(
      db.sql.begin(async (tx) => {
        await write(tx);
        found = (await runLedgerChecks(tx)).violations.map((v) => v.invariant);
        throw rollback;
      }),
    ).rejects.toBe(rollback);
    return found;
  }

  it('reports a verification debited long ago that never settled', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 10);
    const [entry] = await db.sql<{ id: string }[]>`
      select e.id from entries e join postings p on p.entry_id = e.id
      join accounts a on a.id = p.account_id where a.customer_id = ${customer.id} limit 1`;
    const id = uniqueId('ver');
    const found = await violationsWith(async (tx) => {
      await tx`
        insert into verifications (id, workflow_id, customer_id, service, country, price, timeout_seconds,
                                   status, debit_entry_id, created_at)
        values (${id}, ${`verification-${id}`}, ${customer.id}, 'whatsapp', 'US', 10, 60, 'active',
                ${entry!.id}, now() - interval '2 hours')`;
    });
    expect(found).toContain('verification_unsettled');
  });

  it('reports credits an order left in escrow', async () => {
    const workflowId = `order-${uniqueId('o')}`;
    const found = await violationsWith(async (tx) => {
      const [entry] = await tx<{ id: string }[]>`
        insert into entries (idempotency_key, content_hash, type, description, workflow_id, created_at)
        values (${`${workflowId}:debit`}, 'x', 'order_purchase', 'test', ${workflowId}, now() - interval '1 hour')
        returning id`;
      const [escrow] = await tx<
        { id: string }[]
      >`select id from accounts where code = 'order_escrow' limit 1`;
      const [revenue] = await tx<
        { id: string }[]
      >`select id from accounts where code = 'revenue' limit 1`;
      await tx`insert into postings (entry_id, account_id, amount, balance_after)
               values (${entry!.id}, ${escrow!.id}, 50, 50), (${entry!.id}, ${revenue!.id}, -50, -50)`;
    });
    expect(found).toContain('order_escrow_left');
  });
});
