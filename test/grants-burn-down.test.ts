// Burn-down and give-back rules of grants, on the ledger itself: which grants a debit draws from
// (one test per rule), a debit spanning grants, a refused debit, and refunds that give credits back
// to the grants they came from (a share whose grant closed meanwhile is breakage at once).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { BusinessError } from '../src/errors.js';
import type { NewGrant, WalletCredit, WalletDebit } from '../src/ledger/grants.js';
import { createLedger, type Ledger, type PostedEntry } from '../src/ledger/ledger.js';
import {
  createCustomer,
  expectLedgerConsistent,
  postGrant,
  testDatabase,
  uniqueId,
} from './helpers.js';

let db: Database;
let ledger: Ledger;

beforeAll(() => {
  db = testDatabase();
  ledger = createLedger(db.sql);
});

afterEach(async () => {
  await expectLedgerConsistent(db);
});

afterAll(async () => {
  await db?.close();
});

const DAY = 24 * 60 * 60 * 1000;
const inDays = (days: number) => new Date(Date.now() + days * DAY);

/** A customer with a wallet and no grants. */
async function customer(): Promise<string> {
  return (await createCustomer(db)).id;
}

/** Credits a grant of `credits` (an admin adjustment), answering its id. */
const grant = (customerId: string, credits: number, options: Partial<NewGrant> = {}) =>
  postGrant(ledger, customerId, credits, options);

/** A purchase of `credits` (wallet → revenue), drawing as `debit` says. */
function spend(
  customerId: string,
  credits: number,
  key = uniqueId('purchase'),
  debit?: WalletDebit,
): Promise<PostedEntry> {
  return ledger.postEntry({
    idempotencyKey: key,
    type: 'verification_purchase',
    description: 'test purchase',
    lines: [
      { account: { wallet: customerId }, amount: -credits, ...(debit ? { debit } : {}) },
      { account: { system: 'revenue' }, amount: credits },
    ],
  });
}

/** A refund of `credits` (revenue → wallet) that gives back what the entry `returnTo` drew. */
function giveBack(customerId: string, credits: number, returnTo: string, key = uniqueId('refund')) {
  const credit: WalletCredit = { returnTo };
  return ledger.postEntry({
    idempotencyKey: key,
    type: 'verification_refund',
    description: 'test refund',
    lines: [
      { account: { wallet: customerId }, amount: credits, credit },
      { account: { system: 'revenue' }, amount: -credits },
    ],
  });
}

/** Remaining credits and status of grants, by id. */
async function grantsNow(ids: string[]) {
  const rows = await db.sql<{ id: string; remaining: string; status: string }[]>`
    select id, remaining, status from grants where id = any(${ids}::uuid[])`;
  return Object.fromEntries(
    ids.map((id) => {
      const row = rows.find((r) => r.id === id)!;
      return [id, { remaining: Number(row.remaining), status: row.status }];
    }),
  );
}

const remainingOf = async (ids: string[]) =>
  Object.fromEntries(Object.entries(await grantsNow(ids)).map(([id, g]) => [id, g.remaining]));

/** The draw shares an entry posted, as {grantId: credits drawn}, from the entry's result. */
const drawn = (entry: PostedEntry) =>
  Object.fromEntries(
    entry.grants.filter((g) => g.kind === 'draw').map((g) => [g.grantId, -g.amount]),
  );

/** The grant postings stored for an entry, in the order they were written. */
async function storedShares(entryId: number) {
  const rows = await db.sql<{ grant_id: string; amount: string; kind: string }[]>`
    select grant_id, amount, kind from grant_postings where entry_id = ${entryId} order by id`;
  return rows.map((r) => ({ grantId: r.grant_id, amount: Number(r.amount), kind: r.kind }));
}

describe('burn-down order: which grants a debit draws from', () => {
  it('draws the lower priority first, ahead of category, expiry and age', async () => {
    const c = await customer();
    // Everything but priority says "draw me first": promotional, expiring soon, oldest.
    const late = await grant(c, 50, {
      category: 'promotional',
      priority: 200,
      expiresAt: inDays(1),
    });
    const early = await grant(c, 50, { category: 'paid', priority: 10 });
    const entry = await spend(c, 30);
    expect(drawn(entry)).toEqual({ [early]: 30 });
    expect(await remainingOf([late, early])).toEqual({ [late]: 50, [early]: 20 });
  });

  it('draws promotional before paid at the same priority, ahead of expiry and age', async () => {
    const c = await customer();
    const paid = await grant(c, 40, { category: 'paid', expiresAt: inDays(1) });
    const promo = await grant(c, 40, { category: 'promotional', expiresAt: inDays(30) });
    const entry = await spend(c, 25);
    expect(drawn(entry)).toEqual({ [promo]: 25 });
    expect(await remainingOf([paid, promo])).toEqual({ [paid]: 40, [promo]: 15 });
  });

  it('draws the soonest expiry first and grants that never expire last, ahead of age', async () => {
    const c = await customer();
    const never = await grant(c, 10);
    const later = await grant(c, 10, { expiresAt: inDays(20) });
    const sooner = await grant(c, 10, { expiresAt: inDays(10) });
    const entry = await spend(c, 15);
    expect(entry.grants.map((g) => [g.grantId, g.amount])).toEqual([
      [sooner, -10],
      [later, -5],
    ]);
    expect(await remainingOf([never, later, sooner])).toEqual({
      [never]: 10,
      [later]: 5,
      [sooner]: 0,
    });
  });

  it('draws the oldest first when priority, category and expiry are equal', async () => {
    const c = await customer();
    const older = await grant(c, 10, { category: 'promotional' });
    const newer = await grant(c, 10, { category: 'promotional' });
    const entry = await spend(c, 12);
    expect(entry.grants.map((g) => [g.grantId, g.amount])).toEqual([
      [older, -10],
      [newer, -2],
    ]);
  });

  it('draws a grant the debit prefers first, then the burn-down order', async () => {
    const c = await customer();
    const promo = await grant(c, 10, { category: 'promotional' });
    const paid = await grant(c, 10);
    const entry = await spend(c, 15, uniqueId('prefer'), { prefer: [paid] });
    expect(entry.grants.map((g) => [g.grantId, g.amount])).toEqual([
      [paid, -10],
      [promo, -5],
    ]);
  });

  it('spans several grants in one entry: the postings say which grants, and add up to the debit', async () => {
    const c = await customer();
    const a = await grant(c, 10, { category: 'promotional' });
    const b = await grant(c, 20, { expiresAt: inDays(5) });
    const d = await grant(c, 30);
    const entry = await spend(c, 45);
    const expected = [
      { grantId: a, amount: -10, kind: 'draw' },
      { grantId: b, amount: -20, kind: 'draw' },
      { grantId: d, amount: -15, kind: 'draw' },
    ];
    expect(entry.grants).toEqual(expected.map((s) => ({ ...s, customerId: c })));
    expect(await storedShares(entry.entryId)).toEqual(expected);
    const wallet = entry.lines.find((l) => 'wallet' in l.account)!;
    expect(wallet.amount).toBe(-45);
    expect(wallet.balanceAfter).toBe(15);
    expect(await remainingOf([a, b, d])).toEqual({ [a]: 0, [b]: 0, [d]: 15 });

    // A replay answers the same split, and moves nothing again.
    const again = await spend(c, 45, entry.idempotencyKey);
    expect(again.replayed).toBe(true);
    expect(again.grants).toEqual(entry.grants);
    expect(await ledger.walletBalance(c)).toBe(15);
  });

  it('refuses a debit beyond the spendable credits and changes no grant', async () => {
    const c = await customer();
    const a = await grant(c, 10, { category: 'promotional' });
    const b = await grant(c, 20);
    // In the balance but not spendable yet: it must not cover the debit.
    const future = await grant(c, 100, { effectiveAt: inDays(1) });
    expect(await ledger.walletBalance(c)).toBe(130);
    const key = uniqueId('refused');
    const refused = await spend(c, 31, key).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(BusinessError);
    expect(refused).toMatchObject({
      code: 'insufficient_credits',
      details: { available: 30, required: 31, shortfall: 1 },
    });
    expect(await remainingOf([a, b, future])).toEqual({ [a]: 10, [b]: 20, [future]: 100 });
    expect(await db.sql`select id from entries where idempotency_key = ${key}`).toHaveLength(0);
    const shares = await db.sql`
      select 1 from grant_postings where grant_id = any(${[a, b, future]}::uuid[]) and kind <> 'grant'`;
    expect(shares).toHaveLength(0);
    expect(await ledger.walletBalance(c)).toBe(130);
  });

  it('refuses a grant that expired before it was created, yet replays one whose expiry has passed since', async () => {
    const c = await customer();
    const credit = (key: string, expiresAt: Date) =>
      ledger.postEntry({
        idempotencyKey: key,
        type: 'adjustment',
        description: 'expiring grant',
        lines: [
          {
            account: { wallet: c },
            amount: 10,
            credit: { grant: { category: 'paid', source: 'adjustment', expiresAt } },
          },
          { account: { system: 'adjustments' }, amount: -10 },
        ],
      });
    const late = await credit(uniqueId('late'), new Date(Date.now() - 1000)).catch(
      (err: unknown) => err,
    );
    expect(late).toMatchObject({ code: 'invalid_grant' });
    expect(await ledger.walletBalance(c)).toBe(0);

    const key = uniqueId('soon');
    const first = await credit(key, new Date(Date.now() + 300));
    await new Promise((r) => setTimeout(r, 400));
    const again = await credit(key, new Date(Date.now() - 1000));
    expect(again).toMatchObject({ replayed: true, entryId: first.entryId });
  });
});

describe('refunds give credits back to the grants they came from', () => {
  it('gives a whole refund back to the grants drawn: 30 promotional + 20 paid', async () => {
    const c = await customer();
    const promo = await grant(c, 30, { category: 'promotional' });
    const paid = await grant(c, 100);
    const purchase = await spend(c, 50);
    expect(drawn(purchase)).toEqual({ [promo]: 30, [paid]: 20 });

    const refund = await giveBack(c, 50, purchase.idempotencyKey);
    expect(refund.grants.map((g) => [g.grantId, g.amount, g.kind])).toEqual([
      [promo, 30, 'return'],
      [paid, 20, 'return'],
    ]);
    expect(await remainingOf([promo, paid])).toEqual({ [promo]: 30, [paid]: 100 });
    expect(await ledger.walletBalance(c)).toBe(130);
    // No new grant: the credits are the ones the customer had.
    expect(await db.sql`select 1 from grants where customer_id = ${c}`).toHaveLength(2);
  });

  it('gives partial refunds back share by share, never more to a grant than it gave', async () => {
    const c = await customer();
    const promo = await grant(c, 30, { category: 'promotional' });
    const paid = await grant(c, 20);
    const purchase = await spend(c, 50);

    // Each part goes back in the source grants' burn-down order, up to what each gave.
    const first = await giveBack(c, 20, purchase.idempotencyKey);
    expect(first.grants.map((g) => [g.grantId, g.amount])).toEqual([[promo, 20]]);
    const second = await giveBack(c, 20, purchase.idempotencyKey);
    expect(second.grants.map((g) => [g.grantId, g.amount])).toEqual([
      [promo, 10],
      [paid, 10],
    ]);
    expect(await remainingOf([promo, paid])).toEqual({ [promo]: 30, [paid]: 10 });

    // More than is left of the draw: the source grants get what they gave, the rest is a new grant.
    const third = await giveBack(c, 20, purchase.idempotencyKey);
    expect(third.grants.map((g) => [g.grantId, g.amount, g.kind])).toEqual([
      [paid, 10, 'return'],
      [expect.any(String), 10, 'grant'],
    ]);
    expect(await remainingOf([promo, paid])).toEqual({ [promo]: 30, [paid]: 20 });
    const [extra] = await db.sql<{ category: string; source: string; remaining: string }[]>`
      select category, source, remaining from grants where id = ${third.grants[1]!.grantId}`;
    expect(extra).toEqual({ category: 'paid', source: 'refund', remaining: '10' });

    // Per grant: what came back never exceeds what was drawn.
    const back = await db.sql<{ grant_id: string; returned: string }[]>`
      select grant_id, sum(amount) as returned from grant_postings
      where returns_entry_id = ${purchase.entryId} and kind = 'return' group by grant_id`;
    const drew = drawn(purchase);
    for (const row of back) expect(Number(row.returned)).toBeLessThanOrEqual(drew[row.grant_id]!);
    expect(await ledger.walletBalance(c)).toBe(60);
  });

  it('turns the share of a grant that expired meanwhile into breakage at once; the wallet gets the live share', async () => {
    const c = await customer();
    const promo = await grant(c, 30, { category: 'promotional', expiresAt: inDays(1) });
    const paid = await grant(c, 20);
    const purchase = await spend(c, 50);
    expect(drawn(purchase)).toEqual({ [promo]: 30, [paid]: 20 });

    // The promotional grant expires (its timer fires early here): nothing is left in it to move.
    const closed = await ledger.closeGrant({ grantId: promo, kind: 'expiry' });
    expect(closed).toMatchObject({ status: 'expired', credits: 0, closedNow: true });
    const breakageBefore = await ledger.systemBalance('breakage');

    const refund = await giveBack(c, 50, purchase.idempotencyKey);
    expect(refund.grants.map((g) => [g.grantId, g.amount, g.kind])).toEqual([
      [promo, 30, 'return'],
      [promo, -30, 'breakage'],
      [paid, 20, 'return'],
    ]);
    const amounts = Object.fromEntries(
      refund.lines.map((l) => ['wallet' in l.account ? 'wallet' : l.account.system, l.amount]),
    );
    expect(amounts).toEqual({ wallet: 20, revenue: -50, breakage: 30 });
    expect(await ledger.walletBalance(c)).toBe(20);
    expect(await ledger.systemBalance('breakage')).toBe(breakageBefore + 30);
    expect(await grantsNow([promo, paid])).toEqual({
      [promo]: { remaining: 0, status: 'expired' },
      [paid]: { remaining: 20, status: 'open' },
    });
    // The expired credits can never be spent again.
    await expect(spend(c, 21)).rejects.toMatchObject({ code: 'insufficient_credits' });
  });

  it('turns the share of a voided grant into breakage, and a replay of the refund moves nothing', async () => {
    const c = await customer();
    const promo = await grant(c, 40, { category: 'promotional' });
    const paid = await grant(c, 40);
    const purchase = await spend(c, 50);
    expect(drawn(purchase)).toEqual({ [promo]: 40, [paid]: 10 });
    await ledger.closeGrant({ grantId: paid, kind: 'void', reason: 'test void' });

    const key = uniqueId('refund');
    const refund = await giveBack(c, 50, purchase.idempotencyKey, key);
    expect(refund.lines.find((l) => 'wallet' in l.account)!.amount).toBe(40);
    const again = await giveBack(c, 50, purchase.idempotencyKey, key);
    expect(again.replayed).toBe(true);
    expect(again.grants).toEqual(refund.grants);
    expect(await remainingOf([promo, paid])).toEqual({ [promo]: 40, [paid]: 0 });
    expect(await ledger.walletBalance(c)).toBe(40);
  });
});
