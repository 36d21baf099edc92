// The one-round-trip posting path (the ledger_post_entry SQL function) and wallet events for
// watched wallets only, against a real PostgreSQL.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWalletEventHub, type WalletEvent } from '../src/api/wallet/events.js';
import type { Database } from '../src/db/client.js';
import { BusinessError } from '../src/errors.js';
import { createLedger, type Ledger, type PostEntryInput } from '../src/ledger/ledger.js';
import {
  createCustomer,
  eventually,
  expectLedgerConsistent,
  fund,
  postGrant,
  silentLogger,
  testDatabase,
  uniqueId,
} from './helpers.js';

let db: Database;
let ledger: Ledger;
let statements: Ledger;

beforeAll(() => {
  db = testDatabase(30);
  ledger = createLedger(db.sql);
  statements = createLedger(db.sql, undefined, { path: 'statements' });
});

afterAll(async () => {
  await expectLedgerConsistent(db);
  await db.close();
});

const debit = (customerId: string, amount: number, key = uniqueId('fn-debit')): PostEntryInput => ({
  idempotencyKey: key,
  type: 'test_debit',
  description: 'Test debit',
  lines: [
    { account: { wallet: customerId }, amount: -amount },
    { account: { system: 'revenue' }, amount },
  ],
});

async function entriesWithKey(key: string): Promise<number> {
  const [row] = await db.sql<{ n: string }[]>`
    select count(*) as n from entries where idempotency_key = ${key}`;
  return Number(row!.n);
}

describe('ledger_post_entry', () => {
  it('answers a replay of the same key and content with the first entry, once', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 100);
    const input = debit(customer.id, 30);
    const first = await ledger.postEntry(input);
    const again = await ledger.postEntry(input);
    expect(first.replayed).toBe(false);
    expect(again.replayed).toBe(true);
    expect(again.entryId).toBe(first.entryId);
    expect(again.lines).toEqual(first.lines);
    expect(again.grants).toEqual(first.grants);
    expect(first.lines[0]).toMatchObject({ amount: -30, balanceAfter: 70 });
    expect(await entriesWithKey(input.idempotencyKey)).toBe(1);
    expect(await ledger.walletBalance(customer.id)).toBe(70);
  });

  it('refuses the same key with different content and writes nothing', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 100);
    const key = uniqueId('fn-conflict');
    await ledger.postEntry(debit(customer.id, 10, key));
    await expect(ledger.postEntry(debit(customer.id, 11, key))).rejects.toMatchObject({
      code: 'idempotency_conflict',
    });
    expect(await entriesWithKey(key)).toBe(1);
    expect(await ledger.walletBalance(customer.id)).toBe(90);
  });

  it('refuses a debit beyond the spendable credits with insufficient_credits, leaving no trace', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 25);
    const input = debit(customer.id, 40);
    const err = await ledger.postEntry(input).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusinessError);
    expect(err).toMatchObject({
      code: 'insufficient_credits',
      details: { available: 25, required: 40, shortfall: 15 },
    });
    expect(await entriesWithKey(input.idempotencyKey)).toBe(0);
    expect(await ledger.walletBalance(customer.id)).toBe(25);
  });

  it('lets exactly as many of 40 concurrent debits on one wallet through as it covers', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 100);
    const outcomes = await Promise.allSettled(
      Array.from({ length: 40 }, () => ledger.postEntry(debit(customer.id, 5))),
    );
    const refused = outcomes.filter((o) => o.status === 'rejected');
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(20);
    for (const r of refused) expect(r.reason).toMatchObject({ code: 'insufficient_credits' });
    expect(await ledger.walletBalance(customer.id)).toBe(0);
    const [min] = await db.sql<{ min: string }[]>`
      select min(p.balance_after)::text as min from postings p
      join accounts a on a.id = p.account_id where a.customer_id = ${customer.id}`;
    expect(Number(min!.min)).toBe(0);
  });

  it('splits a debit over grants exactly as the statement path does', async () => {
    const viaFunction = await createCustomer(db);
    const viaStatements = await createCustomer(db);
    const grantsOf = async (customerId: string) => {
      return [
        await postGrant(statements, customerId, 10, { priority: 200 }),
        await postGrant(statements, customerId, 10, { category: 'promotional' }),
        await postGrant(statements, customerId, 10),
        await postGrant(statements, customerId, 10, {
          expiresAt: new Date(Date.now() + 86_400_000),
        }),
      ];
    };
    const a = await grantsOf(viaFunction.id);
    const b = await grantsOf(viaStatements.id);
    const shares = async (l: Ledger, customerId: string, ids: string[]) => {
      const posted = await l.postEntry({
        ...debit(customerId, 27),
        lines: [
          { account: { wallet: customerId }, amount: -27, debit: { prefer: [ids[0]!] } },
          { account: { system: 'revenue' }, amount: 27 },
        ],
      });
      return posted.grants.map((g) => ({ grant: ids.indexOf(g.grantId), amount: g.amount }));
    };
    const split = await shares(ledger, viaFunction.id, a);
    expect(split).toEqual(await shares(statements, viaStatements.id, b));
    // The preferred grant, then promotional before paid, then the soonest expiry.
    expect(split).toEqual([
      { grant: 0, amount: -10 },
      { grant: 1, amount: -10 },
      { grant: 3, amount: -7 },
    ]);
  });

  it('commits an afterPost write with the posting, and rolls both back when it fails', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 50);
    const kept = debit(customer.id, 10);
    const seenBalance: number[] = [];
    await ledger.postEntry(kept, async (tx, entry) => {
      seenBalance.push(entry.lines[0]!.balanceAfter);
      await tx`insert into step_fences (key, closed_at, closed_by)
               values (${`after-${kept.idempotencyKey}`}, now(), 'afterPost')`;
    });
    expect(seenBalance).toEqual([40]);
    const [fence] = await db.sql<{ closed_by: string }[]>`
      select closed_by from step_fences where key = ${`after-${kept.idempotencyKey}`}`;
    expect(fence?.closed_by).toBe('afterPost');

    const dropped = debit(customer.id, 10);
    await expect(
      ledger.postEntry(dropped, () => Promise.reject(new Error('hook failed'))),
    ).rejects.toThrow('hook failed');
    expect(await entriesWithKey(dropped.idempotencyKey)).toBe(0);
    expect(await ledger.walletBalance(customer.id)).toBe(40);
    // A replay runs no hook.
    let hookRuns = 0;
    const replay = await ledger.postEntry(kept, () => {
      hookRuns++;
      return Promise.resolve();
    });
    expect(replay.replayed).toBe(true);
    expect(hookRuns).toBe(0);
  });

  it('answers watched for a wallet with a low-balance alert, before writing anything', async () => {
    const customer = await createCustomer(db);
    await fund(ledger, customer.id, 100);
    await db.sql`insert into low_balance_alerts (customer_id, thresholds, armed, task_queue)
                 values (${customer.id}, '{50}', '{50}', ${uniqueId('queue')})`;
    const [wallet] = await db.sql<{ id: string }[]>`
      select id from accounts where customer_id = ${customer.id}`;
    const key = uniqueId('fn-watched');
    const lines = JSON.stringify([
      { i: 0, a: Number(wallet!.id), k: 'wallet', o: customer.id, n: -60 },
    ]);
    const [row] = await db.sql<{ r: { status: string } }[]>`
      select ledger_post_entry(${key}, 'h', 'test_debit', 'd', null, '{}'::jsonb, null,
                               ${lines}::text::jsonb) as r`;
    expect(row!.r).toEqual({ status: 'watched' });
    expect(await entriesWithKey(key)).toBe(0);
    // Through postEntry the statement path posts it and the alert runs.
    await ledger.postEntry(debit(customer.id, 60, key));
    const [alert] = await db.sql<{ armed: string[] }[]>`
      select armed from low_balance_alerts where customer_id = ${customer.id}`;
    expect(alert!.armed).toEqual([]);
  });
});

describe('wallet events for watched wallets only', () => {
  it('delivers a posting to a live stream listener, and unregisters when it closes', async () => {
    const hub = createWalletEventHub(db.sql, silentLogger);
    const customer = await createCustomer(db);
    const events: WalletEvent[] = [];
    try {
      const unsubscribe = await hub.subscribe(customer.id, (e) => events.push(e));
      const [registered] = await db.sql<{ n: string }[]>`
        select count(*) as n from wallet_event_listeners where customer_id = ${customer.id}`;
      expect(Number(registered!.n)).toBe(1);
      await fund(ledger, customer.id, 40);
      const posted = await ledger.postEntry(debit(customer.id, 15));
      await eventually(() => Promise.resolve(events.length >= 2 ? true : undefined));
      expect(events.map((e) => e.balance)).toEqual([40, 25]);
      expect(events[1]).toMatchObject({
        customerId: customer.id,
        entry: { id: posted.entryId, type: 'test_debit', amount: -15 },
      });
      unsubscribe();
      await eventually(async () => {
        const [row] = await db.sql<{ n: string }[]>`
          select count(*) as n from wallet_event_listeners where customer_id = ${customer.id}`;
        return Number(row!.n) === 0 ? true : undefined;
      });
    } finally {
      await hub.close();
    }
  });

  it('sends no NOTIFY for a wallet nobody listens to', async () => {
    const quiet = await createCustomer(db);
    const watched = await createCustomer(db);
    const hubId = uniqueId('hub');
    await db.sql`insert into wallet_event_listeners (customer_id, hub_id)
                 values (${watched.id}, ${hubId})`;
    const seen: string[] = [];
    const listener = await db.sql.listen('wallet_events', (payload) => {
      seen.push((JSON.parse(payload) as WalletEvent).customerId);
    });
    try {
      // Notifications arrive in commit order: once the watched wallet's is in, the quiet one's
      // would have been too.
      await fund(ledger, quiet.id, 10);
      await fund(statements, quiet.id, 10);
      await fund(ledger, watched.id, 10);
      await eventually(() => Promise.resolve(seen.includes(watched.id) ? true : undefined));
      expect(seen).not.toContain(quiet.id);
      expect(seen.filter((id) => id === watched.id)).toHaveLength(1);
    } finally {
      await listener.unlisten();
      await db.sql`delete from wallet_event_listeners where hub_id = ${hubId}`;
    }
  });
});
