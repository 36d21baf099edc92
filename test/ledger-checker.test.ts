// Every invariant of the ledger checker, shown to fire on a database corrupted on purpose.
// The file works on a database of its own, as its owner, with the guards switched off inside
// transactions that are rolled back: nothing here can disturb another test.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { checkLedger, runLedgerChecks, type Violation } from '../src/ledger/check.js';
import { createLedger, type Ledger, type PostedEntry, type Tx } from '../src/ledger/ledger.js';
import { createCustomer, fund, scratchDatabase, uniqueId, type TestCustomer } from './helpers.js';

let db: Database;
let ledger: Ledger;
let dropDatabase: () => Promise<void>;
let alice: TestCustomer;
let bob: TestCustomer;
let purchase: PostedEntry;

beforeAll(async () => {
  const scratch = await scratchDatabase('checker', { max: 2 });
  db = scratch.db;
  dropDatabase = scratch.drop;
  ledger = createLedger(db.sql);
  alice = await createCustomer(db);
  bob = await createCustomer(db);
  await fund(ledger, alice.id, 100);
  await fund(ledger, bob.id, 100);
  purchase = await ledger.postEntry({
    idempotencyKey: uniqueId('purchase'),
    type: 'test_debit',
    description: 'a purchase',
    lines: [
      { account: { wallet: alice.id }, amount: -30 },
      { account: { system: 'revenue' }, amount: 30 },
    ],
  });
});

afterAll(async () => {
  await dropDatabase?.();
});

/** Applies a corruption with every trigger off, runs the checker in the same transaction, rolls back. */
async function violationsAfter(corrupt: (tx: Tx) => Promise<unknown>): Promise<Violation[]> {
  const rollback = new Error('rollback');
  let found: Violation[] = [];
  await expect(
    db.sql.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      await corrupt(tx);
      found = (await runLedgerChecks(tx)).violations;
      throw rollback;
    }),
  ).rejects.toBe(rollback);
  // Rolled back: the database is clean again for the next test.
  expect((await checkLedger(db.sql)).violations).toEqual([]);
  return found;
}

const invariants = (found: Violation[]) => found.map((v) => v.invariant);

const walletId = async (tx: Tx, customerId: string) => {
  const [row] = await tx<
    { id: string }[]
  >`select id from accounts where customer_id = ${customerId}`;
  return row!.id;
};

describe('ledger checker', () => {
  it('finds nothing wrong with a ledger written through postEntry', async () => {
    const report = await checkLedger(db.sql);
    expect(report.violations).toEqual([]);
    expect(report.counts.entries).toBe(3);
  });

  it('reports an entry whose postings do not sum to zero, or that has fewer than two', async () => {
    const unbalanced = await violationsAfter(async (tx) => {
      await tx`update postings set amount = amount + 1 where id = (
                 select min(id) from postings where entry_id = ${purchase.entryId})`;
    });
    expect(invariants(unbalanced)).toContain('entry_not_balanced');
    expect(unbalanced.find((v) => v.invariant === 'entry_not_balanced')!.detail).toContain(
      `entry ${purchase.entryId}: 2 posting(s) summing to 1`,
    );

    const empty = await violationsAfter(async (tx) => {
      await tx`insert into entries (idempotency_key, content_hash, type, description)
               values (${uniqueId('empty')}, 'x', 'raw', 'no postings')`;
    });
    expect(invariants(empty)).toEqual(['entry_not_balanced']);
  });

  it('reports a cached balance that no longer matches its postings', async () => {
    const found = await violationsAfter(async (tx) => {
      await tx`update accounts set balance = balance + 1 where customer_id = ${bob.id}`;
    });
    // The wallet no longer holds what its grants hold either.
    expect(invariants(found)).toEqual(['cached_balance_mismatch', 'wallet_grants_mismatch']);
  });

  it("reports a posting whose balance_after breaks its account's running sum", async () => {
    const found = await violationsAfter(async (tx) => {
      await tx`update postings set balance_after = balance_after + 1 where id = (
                 select min(id) from postings where entry_id = ${purchase.entryId})`;
    });
    expect(invariants(found)).toContain('balance_after_mismatch');
  });

  it('reports a wallet below zero', async () => {
    const found = await violationsAfter(async (tx) => {
      await tx`alter table accounts drop constraint accounts_wallet_not_negative`;
      const id = await walletId(tx, bob.id);
      // Balanced and chained, so only the negative balance itself is wrong.
      const [entry] = await tx<{ id: string }[]>`
        insert into entries (idempotency_key, content_hash, type, description)
        values (${uniqueId('overdraw')}, 'x', 'raw', 'overdraw') returning id`;
      const [revenue] = await tx<{ id: string; balance: string }[]>`
        update accounts set balance = balance + 150
        where id = (select id from accounts where code = 'revenue' order by shard limit 1)
        returning id, balance`;
      await tx`update accounts set balance = -50 where id = ${id}`;
      await tx`insert into postings (entry_id, account_id, amount, balance_after)
               values (${entry!.id}, ${id}, -150, -50), (${entry!.id}, ${revenue!.id}, 150, ${revenue!.balance})`;
    });
    expect(invariants(found).sort()).toEqual([
      'negative_balance_after',
      'negative_wallet',
      'wallet_grants_mismatch',
    ]);
  });

  it('reports a wallet whose history went below zero even though it is back above it', async () => {
    const found = await violationsAfter(async (tx) => {
      const id = await walletId(tx, bob.id);
      const [revenue] = await tx<{ id: string }[]>`
        select id from accounts where code = 'revenue' order by shard limit 1`;
      const [a] = await tx<{ id: string }[]>`
        insert into entries (idempotency_key, content_hash, type, description)
        values (${uniqueId('dip')}, 'x', 'raw', 'dip') returning id`;
      const [b] = await tx<{ id: string }[]>`
        insert into entries (idempotency_key, content_hash, type, description)
        values (${uniqueId('back')}, 'x', 'raw', 'back') returning id`;
      // -150 then +150: the cached balance ends where it started, the history dipped to -50.
      await tx`insert into postings (entry_id, account_id, amount, balance_after)
               values (${a!.id}, ${id}, -150, -50), (${a!.id}, ${revenue!.id}, 150, 0),
                      (${b!.id}, ${id}, 150, 100), (${b!.id}, ${revenue!.id}, -150, 0)`;
    });
    // The revenue shard's balance_after values are made up, so its chain is reported too.
    expect(invariants(found)).toContain('negative_balance_after');
    expect(invariants(found)).not.toContain('negative_wallet');
    expect(invariants(found)).not.toContain('cached_balance_mismatch');
  });

  it('reports two entries with one idempotency key', async () => {
    const found = await violationsAfter(async (tx) => {
      await tx`drop index entries_idempotency_key_key`;
      await tx`insert into entries (idempotency_key, content_hash, type, description, xact_id)
               select idempotency_key, content_hash, type, description, xact_id
               from entries where id = ${purchase.entryId}`;
      // The copy needs balanced postings to be reported for its key alone.
      const [copy] = await tx<{ id: string }[]>`
        select max(id) as id from entries where idempotency_key = ${purchase.idempotencyKey}`;
      await tx`insert into postings (entry_id, account_id, amount, balance_after, xact_id)
               select ${copy!.id}, account_id, amount, balance_after, xact_id
               from postings where entry_id = ${purchase.entryId}`;
    });
    expect(invariants(found)).toContain('duplicate_idempotency_key');
  });

  it('reports a posting added to an entry by a later transaction', async () => {
    const found = await violationsAfter(async (tx) => {
      // Amount and balance chosen so that sums and running balances still hold.
      const id = await walletId(tx, bob.id);
      await tx`insert into postings (entry_id, account_id, amount, balance_after)
               values (${purchase.entryId}, ${id}, 1, 101),
                      (${purchase.entryId}, ${id}, -1, 100)`;
    });
    expect(invariants(found)).toEqual([
      'posting_outside_entry_transaction',
      'posting_outside_entry_transaction',
    ]);
  });

  it('reports an account that changed hands', async () => {
    const found = await violationsAfter(async (tx) => {
      await tx`update accounts set customer_id = null, kind = 'system', code = 'revenue', shard = 99
               where customer_id = ${bob.id}`;
    });
    // Bob's grants still say credits went to a wallet that is no longer his.
    expect(invariants(found)).toEqual(['account_owner_changed', 'grant_split_mismatch']);

    const moved = await violationsAfter(async (tx) => {
      // Alice's wallet handed to a customer who never had one.
      const [carol] = await tx<{ id: string }[]>`
        insert into customers (email) values (${`${uniqueId('carol')}@example.test`}) returning id`;
      await tx`update accounts set customer_id = ${carol!.id} where customer_id = ${alice.id}`;
    });
    // The grants still name alice: carol's wallet holds credits no grant of hers explains.
    expect(new Set(invariants(moved))).toEqual(
      new Set(['account_owner_changed', 'wallet_grants_mismatch', 'grant_split_mismatch']),
    );
  });

  it('reports a credited payment without exactly one topup entry', async () => {
    const id = uniqueId('pay');
    const found = await violationsAfter(async (tx) => {
      await tx`
        insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status)
        values (${id}, ${`checkout-${id}`}, ${alice.id}, 'small', 100, 500, 'eur', 'credited')`;
    });
    expect(invariants(found)).toEqual(['payment_not_credited_once']);
  });

  it('reports a payment paid long ago and never credited', async () => {
    const id = uniqueId('pay');
    const found = await violationsAfter(async (tx) => {
      await tx`
        insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status, updated_at)
        values (${id}, ${`checkout-${id}`}, ${alice.id}, 'small', 100, 500, 'eur', 'paid', now() - interval '1 hour')`;
    });
    expect(invariants(found)).toEqual(['payment_paid_not_credited']);
  });

  it('reports a verification debited long ago that never settled', async () => {
    const id = uniqueId('ver');
    const found = await violationsAfter(async (tx) => {
      await tx`
        insert into verifications (id, workflow_id, customer_id, service, country, price, timeout_seconds,
                                   status, debit_entry_id, created_at)
        values (${id}, ${`verification-${id}`}, ${alice.id}, 'whatsapp', 'US', 30, 60, 'active',
                ${purchase.entryId}, now() - interval '2 hours')`;
    });
    expect(invariants(found)).toEqual(['verification_unsettled']);
  });

  it('reports credits an order left in escrow', async () => {
    const workflowId = `order-${uniqueId('o')}`;
    const found = await violationsAfter(async (tx) => {
      const [entry] = await tx<{ id: string }[]>`
        insert into entries (idempotency_key, content_hash, type, description, workflow_id, created_at)
        values (${`${workflowId}:debit`}, 'x', 'order_purchase', 'test', ${workflowId}, now() - interval '1 hour')
        returning id`;
      const [escrow] = await tx<{ id: string }[]>`
        update accounts set balance = balance + 50
        where id = (select id from accounts where code = 'order_escrow' order by shard limit 1)
        returning id`;
      const id = await walletId(tx, bob.id);
      await tx`update accounts set balance = balance - 50 where id = ${id}`;
      await tx`insert into postings (entry_id, account_id, amount, balance_after)
               values (${entry!.id}, ${escrow!.id}, 50, 50), (${entry!.id}, ${id}, -50, 50)`;
    });
    expect(invariants(found)).toEqual(['order_escrow_left', 'wallet_grants_mismatch']);
  });

  it('reports a grant whose remaining is not the sum of its shares', async () => {
    const found = await violationsAfter(async (tx) => {
      await tx`update grants set remaining = remaining - 1
               where id = (select grant_id from grant_postings where customer_id = ${bob.id} limit 1)`;
    });
    expect(invariants(found)).toEqual(['grant_remaining_mismatch', 'wallet_grants_mismatch']);
  });

  it('reports a closed grant that still holds credits', async () => {
    const found = await violationsAfter(async (tx) => {
      await tx`update grants set status = 'expired', closed_at = now()
               where customer_id = ${bob.id}`;
    });
    expect(invariants(found)).toEqual(['closed_grant_holds_credits']);
  });

  it('reports a grant drawn below zero or above what it granted', async () => {
    const found = await violationsAfter(async (tx) => {
      await tx`alter table grants drop constraint grants_amounts_check`;
      await tx`update grants set credits = remaining - 1 where customer_id = ${bob.id}`;
    });
    expect(invariants(found)).toEqual(['grant_over_drawn']);
  });

  it('reports a wallet posting not split over grants to the credit', async () => {
    const found = await violationsAfter(async (tx) => {
      // The split moved between alice's two shares of the purchase: the grant totals still
      // hold for the wallet, but the entry's split no longer matches its posting.
      await tx`update grant_postings set amount = amount - 1
               where entry_id = ${purchase.entryId} and customer_id = ${alice.id}`;
      await tx`update grants set remaining = remaining - 1
               where id = (select grant_id from grant_postings
                           where entry_id = ${purchase.entryId} and customer_id = ${alice.id})`;
      const [other] = await tx<{ id: string }[]>`
        insert into grants (customer_id, category, source, credits, remaining)
        values (${alice.id}, 'promotional', 'adjustment', 1, 1) returning id`;
      await tx`insert into grant_postings (entry_id, grant_id, customer_id, amount, kind)
               values (null, ${other!.id}, ${alice.id}, 1, 'opening')`;
    });
    expect(invariants(found)).toEqual(['grant_split_mismatch']);
  });

  it('reports breakage that does not match what expiries sent it', async () => {
    const found = await violationsAfter(async (tx) => {
      const [revenue] = await tx<{ id: string; balance: string }[]>`
        update accounts set balance = balance - 5
        where id = (select id from accounts where code = 'revenue' order by shard limit 1)
        returning id, balance`;
      const [breakage] = await tx<{ id: string; balance: string }[]>`
        update accounts set balance = balance + 5
        where id = (select id from accounts where code = 'breakage' order by shard limit 1)
        returning id, balance`;
      const [entry] = await tx<{ id: string }[]>`
        insert into entries (idempotency_key, content_hash, type, description)
        values (${uniqueId('leak')}, 'x', 'raw', 'revenue to breakage') returning id`;
      await tx`insert into postings (entry_id, account_id, amount, balance_after)
               values (${entry!.id}, ${revenue!.id}, -5, ${revenue!.balance}),
                      (${entry!.id}, ${breakage!.id}, 5, ${breakage!.balance})`;
    });
    expect(invariants(found)).toEqual(['breakage_mismatch']);
  });
});
