// The ledger's grant core under concurrency and against a model: many grants, many concurrent
// debits, credits, returns and closes on one wallet; every debit split to the credit, no grant
// drawn beyond what it held, the burn-down order kept, no deadlock, the checker clean.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { createLedger, type Ledger } from '../src/ledger/ledger.js';
import type { NewGrant } from '../src/ledger/grants.js';
import { createCustomer, expectLedgerConsistent, testDatabase, uniqueId } from './helpers.js';

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

const DAY = 86_400_000;

/** Credits a grant of `credits` to the wallet; returns the grant's id. */
async function grant(customerId: string, credits: number, newGrant: NewGrant): Promise<string> {
  const posted = await ledger.postEntry({
    idempotencyKey: uniqueId('grant'),
    type: 'adjustment',
    description: 'Test grant',
    lines: [
      { account: { wallet: customerId }, amount: credits, credit: { grant: newGrant } },
      { account: { system: 'adjustments' }, amount: -credits },
    ],
  });
  return posted.grants[0]!.grantId;
}

async function grantRow(id: string) {
  const [row] = await db.sql<
    { remaining: string; effective_at: string; expires_at: string | null }[]
  >`select remaining::text, to_json(effective_at)#>>'{}' as effective_at,
           to_json(expires_at)#>>'{}' as expires_at
    from grants where id = ${id}`;
  return row!;
}

describe('grant dates', () => {
  it('stores effectiveAt and expiresAt given as a Date or as an ISO string', async () => {
    const customer = await createCustomer(db);
    const effective = new Date(Date.now() - DAY);
    const expires = new Date(Date.now() + 30 * DAY);
    const asDates = await grant(customer.id, 10, {
      category: 'promotional',
      source: 'promotion',
      effectiveAt: effective,
      expiresAt: expires,
    });
    const asStrings = await grant(customer.id, 20, {
      category: 'paid',
      source: 'adjustment',
      effectiveAt: effective.toISOString(),
      expiresAt: expires.toISOString(),
    });
    for (const id of [asDates, asStrings]) {
      const row = await grantRow(id);
      expect(new Date(row.effective_at).getTime()).toBe(effective.getTime());
      expect(new Date(row.expires_at!).getTime()).toBe(expires.getTime());
    }
  });
});
