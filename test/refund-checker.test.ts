// The ledger checker's refund invariants, shown to fire on a database corrupted on purpose (the
// style of ledger-checker.test.ts): a database of its own, as its owner, every corruption inside a
// transaction that is rolled back.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { checkLedger, runLedgerChecks, type Violation } from '../src/ledger/check.js';
import { createLedger, type Ledger, type Tx } from '../src/ledger/ledger.js';
import { createCustomer, fund, scratchDatabase, uniqueId, type TestCustomer } from './helpers.js';

let db: Database;
let ledger: Ledger;
let dropDatabase: () => Promise<void>;
let alice: TestCustomer;
/** Alice's credited top-up of 100 credits for 500, 40 of them refunded through the API. */
let paymentId: string;

beforeAll(async () => {
  const scratch = await scratchDatabase('refund_checker', { max: 2 });
  db = scratch.db;
  dropDatabase = scratch.drop;
  ledger = createLedger(db.sql);
  alice = await createCustomer(db);
  await fund(ledger, alice.id, 10);

  // A top-up and a partial refund of it, written the way the flows write them.
  paymentId = `pay_${randomBytes(8).toString('hex')}`;
  await db.sql`
    insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status, payment_intent_id)
    values (${paymentId}, ${`checkout-${paymentId}`}, ${alice.id}, 'small', 100, 500, 'eur', 'paid', 'pi_checker')`;
  await ledger.postEntry(
    {
      idempotencyKey: `topup:pi_checker:${paymentId}`,
      type: 'topup',
      description: 'top-up',
      metadata: { paymentId },
      lines: [
        { account: { system: 'stripe_clearing' }, amount: -100 },
        { account: { wallet: alice.id }, amount: 100 },
      ],
    },
    async (tx, entry) => {
      await tx`update payments set status = 'credited', topup_entry_id = ${entry.entryId} where id = ${paymentId}`;
    },
  );
  await ledger.postEntry(
    {
      idempotencyKey: uniqueId('refund-clawback'),
      type: 'refund_clawback',
      description: 'refund',
      metadata: { paymentId },
      lines: [
        { account: { wallet: alice.id }, amount: -40 },
        { account: { system: 'refunds' }, amount: 40 },
      ],
    },
    async (tx) => {
      await tx`
        update payments set refunded_credits = 40, refunded_amount = 200, status = 'partially_refunded'
        where id = ${paymentId}`;
    },
  );
  // A debt of 30, settled 10 by a later top-up.
  const debt = await ledger.postEntry(
    {
      idempotencyKey: uniqueId('debt'),
      type: 'test_debt',
      description: 'owed',
      lines: [
        { account: { system: 'receivables' }, amount: -30 },
        { account: { system: 'adjustments' }, amount: 30 },
      ],
    },
    async (tx, entry) => {
      await tx`
        insert into customer_debts (customer_id, source, credits, entry_id)
        values (${alice.id}, ${entry.idempotencyKey}, 30, ${entry.entryId})`;
    },
  );
  await ledger.postEntry(
    {
      idempotencyKey: uniqueId('settle'),
      type: 'test_settle',
      description: 'settled in part',
      lines: [
        { account: { system: 'stripe_clearing' }, amount: -10 },
        { account: { system: 'receivables' }, amount: 10 },
      ],
    },
    async (tx) => {
      await tx`update customer_debts set settled_credits = 10 where entry_id = ${debt.entryId}`;
    },
  );
});

afterAll(async () => {
  await dropDatabase?.();
});

/** Applies a corruption with every trigger and these CHECKs off, runs the checker, rolls back. */
async function violationsAfter(corrupt: (tx: Tx) => Promise<unknown>): Promise<Violation[]> {
  const rollback = new Error('rollback');
  let found: Violation[] = [];
  await expect(
    db.sql.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      await tx`alter table payments drop constraint payments_refunded_credits_check`;
      await tx`alter table payments drop constraint payments_refunded_amount_check`;
      await corrupt(tx);
      found = (await runLedgerChecks(tx)).violations;
      throw rollback;
    }),
  ).rejects.toBe(rollback);
  expect((await checkLedger(db.sql)).violations).toEqual([]);
  return found;
}

const invariants = (found: Violation[]) => found.map((v) => v.invariant).sort();

describe('refund invariants of the ledger checker', () => {
  it('finds nothing wrong with refunds, debts and settlements written by the flows', async () => {
    expect((await checkLedger(db.sql)).violations).toEqual([]);
  });

  it('reports a payment refunded beyond what was paid', async () => {
    const found = await violationsAfter(async (tx) => {
      await tx`update payments set refunded_amount = 501 where id = ${paymentId}`;
    });
    expect(invariants(found)).toEqual(['payment_over_refunded']);
    expect(found[0]!.detail).toContain(paymentId);
  });

  it('reports refunded_credits that its refund entries do not add up to', async () => {
    const found = await violationsAfter(async (tx) => {
      await tx`update payments set refunded_credits = 50 where id = ${paymentId}`;
    });
    expect(invariants(found)).toEqual(['refunded_credits_mismatch']);
    expect(found[0]!.detail).toContain('refunded_credits 50, refund entries took back 40');
  });

  it('counts a re-credit and a claw-back of the Stripe refund flow by metadata.paymentId', async () => {
    const found = await violationsAfter(async (tx) => {
      const [entry] = await tx<{ id: string }[]>`
        insert into entries (idempotency_key, content_hash, type, description, metadata)
        values (${uniqueId('stripe-refund')}, 'x', 'stripe_refund_clawback', 'test',
                ${JSON.stringify({ paymentId })}::jsonb)
        returning id`;
      const [refunds] = await tx<{ id: string; balance: string }[]>`
        update accounts set balance = balance + 5
        where id = (select id from accounts where code = 'refunds' order by shard desc limit 1)
        returning id, balance`;
      const [receivables] = await tx<{ id: string; balance: string }[]>`
        update accounts set balance = balance - 5
        where id = (select id from accounts where code = 'receivables' order by shard desc limit 1)
        returning id, balance`;
      await tx`insert into postings (entry_id, account_id, amount, balance_after)
               values (${entry!.id}, ${refunds!.id}, 5, ${refunds!.balance}),
                      (${entry!.id}, ${receivables!.id}, -5, ${receivables!.balance})`;
      // The payment was not told: 45 taken back, 40 recorded. The debt row is missing too.
    });
    expect(invariants(found)).toEqual(['receivables_mismatch', 'refunded_credits_mismatch']);
  });

  it('reports receivables that do not match what customers owe', async () => {
    const found = await violationsAfter(async (tx) => {
      await tx`update customer_debts set settled_credits = 20 where customer_id = ${alice.id}`;
    });
    expect(invariants(found)).toEqual(['receivables_mismatch']);
    expect(found[0]!.detail).toContain('receivables hold -20; customers owe 10');
  });
});
