// The ledger's grant core under concurrency and against a model: many grants, many concurrent
// debits, credits, returns and closes on one wallet; every debit split to the credit, no grant
// drawn beyond what it held, the burn-down order kept, no deadlock, the checker clean.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/client.js';
import { BusinessError } from '../src/errors.js';
import type { GrantShare, NewGrant, WalletDebit } from '../src/ledger/grants.js';
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
  db = testDatabase(30);
  ledger = createLedger(db.sql);
});

afterAll(async () => {
  await expectLedgerConsistent(db);
  await db.close();
});

const DAY = 86_400_000;

/** Credits a grant of `credits` to the wallet; returns the grant's id. */
const grant = (customerId: string, credits: number, newGrant: NewGrant) =>
  postGrant(ledger, customerId, credits, newGrant);

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

// ---------------------------------------------------------------------------------------------
// The model: what the burn-down order says a sequence of debits leaves in each grant.

/** A grant as the model sees it. */
interface ModelGrant {
  id: string;
  remaining: number;
  priority: number;
  category: 'paid' | 'promotional';
  /** Milliseconds since the epoch, null for none. */
  expiresAt: number | null;
  /** Microseconds since the epoch, as PostgreSQL stores it. */
  createdAt: bigint;
  /** Open, effective and not past its expiry now. */
  spendable: boolean;
}

async function modelGrants(customerId: string): Promise<ModelGrant[]> {
  const rows = await db.sql<
    {
      id: string;
      remaining: string;
      priority: number;
      category: 'paid' | 'promotional';
      expires_ms: string | null;
      created_us: string;
      spendable: boolean;
    }[]
  >`
    select id, remaining::text, priority, category,
           (extract(epoch from expires_at) * 1000)::bigint::text as expires_ms,
           (extract(epoch from created_at) * 1000000)::bigint::text as created_us,
           (status = 'open' and effective_at <= now()
            and (expires_at is null or expires_at > now())) as spendable
    from grants where customer_id = ${customerId}`;
  return rows.map((r) => ({
    id: r.id,
    remaining: Number(r.remaining),
    priority: r.priority,
    category: r.category,
    expiresAt: r.expires_ms === null ? null : Number(r.expires_ms),
    createdAt: BigInt(r.created_us),
    spendable: r.spendable,
  }));
}

const cmp = (a: number | bigint | string, b: number | bigint | string) =>
  a < b ? -1 : a > b ? 1 : 0;

/** The documented burn-down order, with the debit's `prefer` list first. */
function burnDown(grants: ModelGrant[], prefer: string[] = []): ModelGrant[] {
  const rank = (g: ModelGrant) => {
    const at = prefer.indexOf(g.id);
    return at < 0 ? Number.MAX_SAFE_INTEGER : at;
  };
  return [...grants].sort(
    (a, b) =>
      cmp(rank(a), rank(b)) ||
      cmp(a.priority, b.priority) ||
      cmp(a.category === 'paid' ? 1 : 0, b.category === 'paid' ? 1 : 0) ||
      cmp(a.expiresAt ?? Number.MAX_SAFE_INTEGER, b.expiresAt ?? Number.MAX_SAFE_INTEGER) ||
      cmp(a.createdAt, b.createdAt) ||
      cmp(a.id, b.id),
  );
}

/** One debit against the model: the draws in order, or null when the spendable credits are short. */
function modelDebit(
  grants: ModelGrant[],
  amount: number,
  prefer: string[] = [],
): Array<{ grantId: string; amount: number }> | null {
  const open = grants.filter((g) => g.spendable && g.remaining > 0);
  if (open.reduce((sum, g) => sum + g.remaining, 0) < amount) return null;
  const draws: Array<{ grantId: string; amount: number }> = [];
  let left = amount;
  for (const g of burnDown(open, prefer)) {
    if (left === 0) break;
    const take = Math.min(g.remaining, left);
    g.remaining -= take;
    left -= take;
    draws.push({ grantId: g.id, amount: -take });
  }
  return draws;
}

const draws = (shares: GrantShare[]) =>
  shares.map((s) => {
    expect(s.kind).toBe('draw');
    return { grantId: s.grantId, amount: s.amount };
  });

// ---------------------------------------------------------------------------------------------

const debitEntry = (customerId: string, amount: number, debit?: WalletDebit) => ({
  idempotencyKey: uniqueId('spend'),
  type: 'test_debit',
  description: 'Test spend',
  lines: [
    { account: { wallet: customerId }, amount: -amount, ...(debit ? { debit } : {}) },
    { account: { system: 'revenue' }, amount },
  ],
});

const spend = (customerId: string, amount: number, debit?: WalletDebit) =>
  ledger.postEntry(debitEntry(customerId, amount, debit));

/** A debit's outcome: posted, or refused for want of credits (anything else fails the test). */
async function trySpend(customerId: string, amount: number): Promise<PostedEntry | null> {
  try {
    return await spend(customerId, amount);
  } catch (err) {
    expect(err).toBeInstanceOf(BusinessError);
    expect((err as BusinessError).code).toBe('insufficient_credits');
    return null;
  }
}

/**
 * A wallet with `count` grants of varied priority, category, expiry and size, plus one not yet
 * effective and one already past its expiry (never drawn). Returns the spendable total.
 */
async function walletWithManyGrants(count: number) {
  const customer = await createCustomer(db);
  const now = Date.now();
  let spendableTotal = 0;
  for (let i = 0; i < count; i++) {
    const credits = 5 + ((i * 13) % 31);
    spendableTotal += credits;
    await grant(customer.id, credits, {
      category: i % 3 === 0 ? 'paid' : 'promotional',
      source: i % 3 === 0 ? 'adjustment' : 'promotion',
      priority: [0, 50, 100, 100, 200][i % 5]!,
      expiresAt: i % 4 === 0 ? null : new Date(now + (1 + ((i * 7) % 20)) * DAY),
    });
  }
  const future = await grant(customer.id, 40, {
    category: 'promotional',
    source: 'promotion',
    priority: 0,
    effectiveAt: new Date(now + DAY),
  });
  const lapsed = await grant(customer.id, 40, {
    category: 'promotional',
    source: 'promotion',
    priority: 0,
    effectiveAt: new Date(now - 2 * DAY),
    expiresAt: new Date(now - DAY),
  });
  return { customer, spendableTotal, unspendable: [future, lapsed] };
}

/** Every posted debit's shares as the database holds them, and as the posting reported them. */
async function expectSharesStored(entries: PostedEntry[]) {
  for (const entry of entries) {
    const stored = await db.sql<{ grant_id: string; amount: string; kind: string }[]>`
      select grant_id, amount::text, kind from grant_postings where entry_id = ${entry.entryId} order by id`;
    expect(
      stored.map((r) => ({ grantId: r.grant_id, amount: Number(r.amount), kind: r.kind })),
    ).toEqual(entry.grants.map((g) => ({ grantId: g.grantId, amount: g.amount, kind: g.kind })));
  }
}

/** Checks concurrent debits of one wallet against the model, in the order they took the lock. */
async function expectModelFollowed(
  before: ModelGrant[],
  amounts: number[],
  outcomes: Array<PostedEntry | null>,
  customerId: string,
) {
  const posted = outcomes.filter((o): o is PostedEntry => o !== null);
  // One wallet: each debit lowers its balance, so the balance after orders them as they ran.
  const ran = [...posted].sort((a, b) => b.lines[0]!.balanceAfter - a.lines[0]!.balanceAfter);
  expect(new Set(ran.map((e) => e.lines[0]!.balanceAfter)).size).toBe(ran.length);
  const model = before.map((g) => ({ ...g }));
  for (const entry of ran) {
    const amount = -entry.lines[0]!.amount;
    expect(draws(entry.grants).reduce((sum, d) => sum + d.amount, 0)).toBe(-amount);
    expect(draws(entry.grants)).toEqual(modelDebit(model, amount));
  }
  const after = new Map((await modelGrants(customerId)).map((g) => [g.id, g.remaining]));
  for (const g of model) expect(after.get(g.id), `grant ${g.id}`).toBe(g.remaining);
  // A refused debit asked for more than was left when it ran, so more than is left at the end.
  const left = model.filter((g) => g.spendable).reduce((sum, g) => sum + g.remaining, 0);
  outcomes.forEach((o, i) => {
    if (o === null) expect(amounts[i]).toBeGreaterThan(left);
  });
  await expectSharesStored(posted);
}

describe('many grants, many concurrent debits', () => {
  it('120 equal debits over 30 grants: exactly the covered number succeed, in burn-down order', async () => {
    const { customer, spendableTotal, unspendable } = await walletWithManyGrants(30);
    const before = await modelGrants(customer.id);
    const amount = 7;
    const amounts = Array.from({ length: 120 }, () => amount);
    const outcomes = await Promise.all(amounts.map((a) => trySpend(customer.id, a)));
    const covered = Math.floor(spendableTotal / amount);
    expect(covered).toBeLessThan(amounts.length);
    expect(outcomes.filter((o) => o !== null)).toHaveLength(covered);
    expect(await ledger.walletBalance(customer.id)).toBe(spendableTotal + 80 - covered * amount);
    await expectModelFollowed(before, amounts, outcomes, customer.id);
    for (const id of unspendable) expect((await grantRow(id)).remaining).toBe('40');
    const [over] = await db.sql`
      select id from grants where customer_id = ${customer.id}
        and (remaining < 0 or remaining > credits)`;
    expect(over).toBeUndefined();
    await expectLedgerConsistent(db);
  });

  it('120 debits of varied amounts: each split to the credit, as the model says in the order they ran', async () => {
    const { customer } = await walletWithManyGrants(30);
    const before = await modelGrants(customer.id);
    const amounts = Array.from({ length: 120 }, (_, i) => 1 + ((i * 11) % 17));
    const outcomes = await Promise.all(amounts.map((a) => trySpend(customer.id, a)));
    // Both sides happened: debits that spanned several grants, and refusals at the end.
    expect(outcomes.some((o) => o !== null && o.grants.length > 1)).toBe(true);
    expect(outcomes.some((o) => o === null)).toBe(true);
    await expectModelFollowed(before, amounts, outcomes, customer.id);
    await expectLedgerConsistent(db);
  });
});

describe('the burn-down model (property)', () => {
  const grantSpec = fc.record({
    credits: fc.integer({ min: 1, max: 40 }),
    priority: fc.constantFrom(0, 1, 100, 1000),
    category: fc.constantFrom('paid' as const, 'promotional' as const),
    /** Days from now; null for no expiry. */
    expiresInDays: fc.option(fc.integer({ min: 1, max: 3 }), { nil: null }),
    state: fc.constantFrom('live', 'live', 'live', 'future', 'lapsed'),
  });
  const debitSpec = fc.record({
    amount: fc.integer({ min: 1, max: 60 }),
    /** Indexes of grants to draw first. */
    prefer: fc.array(fc.nat(), { maxLength: 2 }),
  });

  it('every debit draws what the model draws, and leaves what it leaves', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(grantSpec, { minLength: 1, maxLength: 8 }),
        fc.array(debitSpec, { minLength: 1, maxLength: 8 }),
        async (specs, debits) => {
          const customer = await createCustomer(db);
          const now = Date.now();
          const ids: string[] = [];
          for (const g of specs) {
            const expiresAt =
              g.state === 'lapsed'
                ? new Date(now - DAY)
                : g.expiresInDays === null
                  ? null
                  : new Date(now + g.expiresInDays * DAY);
            ids.push(
              await grant(customer.id, g.credits, {
                category: g.category,
                source: g.category === 'paid' ? 'adjustment' : 'promotion',
                priority: g.priority,
                effectiveAt: new Date(now + (g.state === 'future' ? DAY / 2 : -2 * DAY)),
                expiresAt,
              }),
            );
          }
          const model = await modelGrants(customer.id);
          for (const d of debits) {
            const prefer = [...new Set(d.prefer.map((i) => ids[i % ids.length]!))];
            const expected = modelDebit(model, d.amount, prefer);
            const debit = prefer.length > 0 ? { prefer } : undefined;
            if (expected === null) {
              await expect(spend(customer.id, d.amount, debit)).rejects.toMatchObject({
                code: 'insufficient_credits',
              });
            } else {
              const posted = await spend(customer.id, d.amount, debit);
              expect(draws(posted.grants)).toEqual(expected);
            }
          }
          const after = new Map((await modelGrants(customer.id)).map((g) => [g.id, g.remaining]));
          for (const g of model) expect(after.get(g.id)).toBe(g.remaining);
        },
      ),
      { numRuns: 25 },
    );
    await expectLedgerConsistent(db);
  });
});

describe('debits, credits, returns and closes racing on one wallet', () => {
  it('debits, new grants, voids and expiries at once: no deadlock, each grant closed once', async () => {
    const { customer } = await walletWithManyGrants(30);
    const grants = await modelGrants(customer.id);
    const closable = grants.filter((g) => g.spendable).slice(0, 12);
    const toClose = closable.map((g, i): { grantId: string; kind: 'expiry' | 'void' } => ({
      grantId: g.id,
      kind: g.expiresAt !== null && i % 2 === 0 ? 'expiry' : 'void',
    }));
    type Op =
      | { op: 'debit'; amount: number }
      | { op: 'credit'; amount: number; priority: number }
      | { op: 'close'; grantId: string; kind: 'expiry' | 'void' };
    const ops: Op[] = [
      ...Array.from({ length: 90 }, (_, i) => ({ op: 'debit' as const, amount: 3 + (i % 9) })),
      ...Array.from({ length: 20 }, (_, i) => ({
        op: 'credit' as const,
        amount: 10 + i,
        priority: [0, 100, 500][i % 3]!,
      })),
      // Each close twice at once: one closes, the other finds it closed.
      ...toClose.flatMap((c) => [
        { op: 'close' as const, ...c },
        { op: 'close' as const, ...c },
      ]),
    ];
    // Interleaved deterministically, so closes and credits start among the debits.
    const order = ops.map((o, i) => ({ o, k: (i * 7919) % ops.length })).sort((a, b) => a.k - b.k);
    const settled = await Promise.allSettled(
      order.map(({ o }) => {
        if (o.op === 'debit') return trySpend(customer.id, o.amount);
        if (o.op === 'credit') {
          return grant(customer.id, o.amount, {
            category: 'paid',
            source: 'adjustment',
            priority: o.priority,
          });
        }
        return ledger.closeGrant({ grantId: o.grantId, kind: o.kind, reason: 'test race' });
      }),
    );
    const failures = settled.filter((s) => s.status === 'rejected');
    expect(failures.map((f) => String(f.reason))).toEqual([]);
    const values = settled.map((s) => (s as PromiseFulfilledResult<unknown>).value);
    const closes = values.filter(
      (v): v is { grantId: string; closedNow: boolean; credits: number } =>
        typeof v === 'object' && v !== null && 'closedNow' in v,
    );
    expect(closes).toHaveLength(toClose.length * 2);
    for (const c of toClose) {
      const mine = closes.filter((r) => r.grantId === c.grantId);
      expect(mine.map((r) => r.closedNow).sort()).toEqual([false, true]);
    }
    // The race happened: debits drew both before and after closes, from grants closed later.
    const postings = await db.sql<{ id: string; grant_id: string; kind: string }[]>`
      select id, grant_id, kind from grant_postings where customer_id = ${customer.id} order by id`;
    const closedAt = new Map(
      postings
        .filter((p) => p.kind === 'expiry' || p.kind === 'void')
        .map((p) => [p.grant_id, Number(p.id)]),
    );
    const debitIds = postings.filter((p) => p.kind === 'draw').map((p) => Number(p.id));
    const closeIds = [...closedAt.values()];
    expect(debitIds.some((id) => id < Math.max(...closeIds))).toBe(true);
    expect(debitIds.some((id) => id > Math.min(...closeIds))).toBe(true);
    // Nothing was drawn from a grant after it closed, and a closed grant holds nothing.
    for (const p of postings) {
      const closed = closedAt.get(p.grant_id);
      if (p.kind === 'draw' && closed !== undefined) expect(Number(p.id)).toBeLessThan(closed);
    }
    const rows = await db.sql<{ id: string; status: string; remaining: string }[]>`
      select id, status, remaining::text from grants
      where id = any(${toClose.map((c) => c.grantId)}::uuid[])`;
    for (const r of rows) {
      expect(r.status).toBe(
        toClose.find((c) => c.grantId === r.id)!.kind === 'expiry' ? 'expired' : 'voided',
      );
      expect(r.remaining).toBe('0');
    }
    await expectLedgerConsistent(db);
  });

  it('returns racing debits and a void give back exactly what each purchase drew, once', async () => {
    const customer = await createCustomer(db);
    const a = await grant(customer.id, 50, {
      category: 'promotional',
      source: 'promotion',
      priority: 0,
    });
    const b = await grant(customer.id, 50, {
      category: 'paid',
      source: 'adjustment',
      priority: 10,
    });
    await grant(customer.id, 200, { category: 'paid', source: 'adjustment', priority: 20 });
    const first = await spend(customer.id, 60); // a 50, b 10
    const second = await spend(customer.id, 30); // b 30
    expect(draws(first.grants)).toEqual([
      { grantId: a, amount: -50 },
      { grantId: b, amount: -10 },
    ]);
    expect(draws(second.grants)).toEqual([{ grantId: b, amount: -30 }]);

    const giveBack = (purchase: PostedEntry, amount: number) =>
      ledger.postEntry({
        idempotencyKey: uniqueId('give-back'),
        type: 'test_refund',
        description: 'Purchase refunded',
        lines: [
          {
            account: { wallet: customer.id },
            amount,
            credit: {
              returnTo: purchase.idempotencyKey,
              fallback: { category: 'paid', source: 'refund', priority: 30 },
            },
          },
          { account: { system: 'revenue' }, amount: -amount },
        ],
      });
    const results = await Promise.all([
      giveBack(first, 60),
      giveBack(second, 20),
      giveBack(second, 20), // together with the one above, 10 more than the purchase drew
      ledger.closeGrant({ grantId: b, kind: 'void', reason: 'test race' }),
      ...Array.from({ length: 40 }, (_, i) => trySpend(customer.id, 2 + (i % 5))),
    ]);
    const spent = results.slice(4) as Array<PostedEntry | null>;
    expect(spent.some((s) => s !== null)).toBe(true);

    // Per purchase and grant: what came back, to the grant or straight to breakage.
    const back = await db.sql<{ returns_entry_id: string; grant_id: string; given: string }[]>`
      select returns_entry_id, grant_id, sum(amount)::text as given from grant_postings
      where customer_id = ${customer.id} and kind = 'return'
      group by returns_entry_id, grant_id order by returns_entry_id, grant_id`;
    const given = (entry: PostedEntry, grantId: string) =>
      Number(
        back.find((r) => r.returns_entry_id === String(entry.entryId) && r.grant_id === grantId)
          ?.given ?? 0,
      );
    expect(given(first, a)).toBe(50);
    expect(given(first, b)).toBe(10);
    expect(given(second, b)).toBe(30);
    const fallbacks = await db.sql<{ credits: string }[]>`
      select credits::text from grants where customer_id = ${customer.id} and source = 'refund'`;
    expect(fallbacks).toEqual([{ credits: '10' }]);

    // b's returned shares went back to b before its void (and to breakage with it), or straight
    // to breakage after it: either way b ends closed and empty, and the checker balances breakage.
    const [bRow] = await db.sql<{ status: string; remaining: string }[]>`
      select status, remaining::text from grants where id = ${b}`;
    expect(bRow).toEqual({ status: 'voided', remaining: '0' });
    await expectLedgerConsistent(db);
  });
});
