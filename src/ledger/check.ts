// The ledger invariant checker: proves double entry held, from one consistent snapshot.
import type postgres from 'postgres';
import type { Sql } from '../db/client.js';
import { CREDITED_STATUSES } from '../payments/state-machine.js';

export interface Violation {
  invariant:
    | 'entry_not_balanced'
    | 'cached_balance_mismatch'
    | 'balance_after_mismatch'
    | 'negative_wallet'
    | 'negative_balance_after'
    | 'posting_outside_entry_transaction'
    | 'account_owner_changed'
    | 'duplicate_idempotency_key'
    | 'payment_not_credited_once'
    | 'payment_paid_not_credited'
    | 'verification_unsettled'
    | 'order_escrow_left'
    | 'payment_over_refunded'
    | 'refunded_credits_mismatch'
    | 'receivables_mismatch'
    | 'disputes_held_mismatch'
    | 'grant_remaining_mismatch'
    | 'wallet_grants_mismatch'
    | 'grant_split_mismatch'
    | 'grant_over_drawn'
    | 'closed_grant_holds_credits'
    | 'breakage_mismatch';
  detail: string;
}

export interface LedgerReport {
  ok: boolean;
  checkedAt: Date;
  counts: { accounts: number; entries: number; postings: number };
  violations: Violation[];
}

/**
 * Entries that move a payment's credits out of (or back into) the wallet because of a refund; each
 * carries `metadata.paymentId` and its `refunds` line is the credits taken back (negative: put back).
 */
export const PAYMENT_REFUND_ENTRY_TYPES = [
  'refund_clawback',
  'refund_recredit',
  'stripe_refund_clawback',
] as const;

/** How long a paid payment may wait for its credit before the checker reports it. */
const PAID_CREDIT_GRACE = '15 minutes';
/** How long past its deadline a verification or order may take to settle before it is reported. */
const SETTLE_GRACE = '15 minutes';

/** Runs every invariant in one read-only repeatable-read transaction and lists what is wrong. */
export async function checkLedger(sql: Sql): Promise<LedgerReport> {
  return sql.begin('isolation level repeatable read read only', (tx) => runLedgerChecks(tx));
}

/** The checks themselves, on a transaction the caller controls. */
export async function runLedgerChecks(tx: postgres.TransactionSql): Promise<LedgerReport> {
  {
    const violations: Violation[] = [];

    const unbalanced = await tx<{ id: string; total: string; lines: string }[]>`
      select e.id, coalesce(sum(p.amount), 0) as total, count(p.id) as lines
      from entries e left join postings p on p.entry_id = e.id
      group by e.id
      having coalesce(sum(p.amount), 0) <> 0 or count(p.id) < 2`;
    for (const r of unbalanced) {
      violations.push({
        invariant: 'entry_not_balanced',
        detail: `entry ${r.id}: ${r.lines} posting(s) summing to ${r.total}`,
      });
    }

    const mismatched = await tx<{ id: string; code: string; balance: string; sum: string }[]>`
      select a.id, a.code, a.balance, coalesce(s.sum, 0) as sum
      from accounts a
      left join (select account_id, sum(amount) as sum from postings group by account_id) s
        on s.account_id = a.id
      where a.balance <> coalesce(s.sum, 0)`;
    for (const r of mismatched) {
      violations.push({
        invariant: 'cached_balance_mismatch',
        detail: `account ${r.id} (${r.code}): cached balance ${r.balance}, postings sum to ${r.sum}`,
      });
    }

    const chain = await tx<
      { id: string; account_id: string; balance_after: string; running: string }[]
    >`
      select id, account_id, balance_after, running from (
        select id, account_id, balance_after,
               sum(amount) over (partition by account_id order by id) as running
        from postings
      ) p where balance_after <> running
      limit 100`;
    for (const r of chain) {
      violations.push({
        invariant: 'balance_after_mismatch',
        detail: `posting ${r.id} on account ${r.account_id}: balance_after ${r.balance_after}, running sum ${r.running}`,
      });
    }

    const negative = await tx<{ id: string; customer_id: string; balance: string }[]>`
      select id, customer_id, balance from accounts where kind = 'wallet' and balance < 0`;
    for (const r of negative) {
      violations.push({
        invariant: 'negative_wallet',
        detail: `wallet ${r.id} of customer ${r.customer_id} holds ${r.balance}`,
      });
    }

    // Not only today's balance: no wallet was ever below zero at any point of its history.
    const dipped = await tx<{ id: string; account_id: string; balance_after: string }[]>`
      select p.id, p.account_id, p.balance_after
      from postings p join accounts a on a.id = p.account_id
      where a.kind = 'wallet' and p.balance_after < 0
      order by p.id
      limit 100`;
    for (const r of dipped) {
      violations.push({
        invariant: 'negative_balance_after',
        detail: `posting ${r.id} left wallet ${r.account_id} at ${r.balance_after}`,
      });
    }

    // An entry and its postings are written by one transaction; a posting added later is not
    // part of the event the entry records.
    const strays = await tx<{ id: string; entry_id: string }[]>`
      select p.id, p.entry_id from postings p join entries e on e.id = p.entry_id
      where p.xact_id <> e.xact_id
      order by p.id
      limit 100`;
    for (const r of strays) {
      violations.push({
        invariant: 'posting_outside_entry_transaction',
        detail: `posting ${r.id} was added to entry ${r.entry_id} by another transaction`,
      });
    }

    // Every account is still what it was opened as (owner, kind, code, shard).
    const changed = await tx<
      {
        id: string;
        kind: string;
        customer_id: string | null;
        code: string;
        opened: string | null;
      }[]
    >`
      select a.id, a.kind, a.customer_id, a.code,
             case when i.account_id is null then null
                  else i.kind || ' ' || coalesce(i.customer_id::text, i.code) end as opened
      from accounts a left join account_identities i on i.account_id = a.id
      where i.account_id is null
         or (a.kind, a.customer_id, a.code, a.shard)
            is distinct from (i.kind, i.customer_id, i.code, i.shard)
      order by a.id
      limit 100`;
    for (const r of changed) {
      violations.push({
        invariant: 'account_owner_changed',
        detail: `account ${r.id} is now ${r.kind} ${r.customer_id ?? r.code}; it was opened as ${r.opened ?? 'nothing on record'}`,
      });
    }

    const duplicates = await tx<{ idempotency_key: string; n: string }[]>`
      select idempotency_key, count(*) as n from entries group by idempotency_key having count(*) > 1`;
    for (const r of duplicates) {
      violations.push({
        invariant: 'duplicate_idempotency_key',
        detail: `idempotency key ${r.idempotency_key} used by ${r.n} entries`,
      });
    }

    // A payment's topup entry and its move to `credited` commit in one transaction, so in any
    // snapshot: credited (or later) ⇔ exactly one topup entry, and it is the one recorded.
    const payments = await tx<
      {
        id: string;
        status: string;
        topup_entry_id: string | null;
        topups: string;
        first: string | null;
      }[]
    >`
      select p.id, p.status, p.topup_entry_id, count(e.id) as topups, min(e.id) as first
      from payments p
      left join entries e on e.type = 'topup' and e.metadata->>'paymentId' = p.id
      group by p.id
      having (p.status = any(${CREDITED_STATUSES}::text[])
              and (count(e.id) <> 1 or p.topup_entry_id is distinct from min(e.id)))
          or (p.status <> all(${CREDITED_STATUSES}::text[]) and count(e.id) > 0)
      limit 100`;
    for (const r of payments) {
      violations.push({
        invariant: 'payment_not_credited_once',
        detail: `payment ${r.id} (${r.status}): ${r.topups} topup entries, recorded entry ${r.topup_entry_id ?? 'none'}`,
      });
    }

    // Paid at Stripe but still not credited well after: a workflow is stuck or an event was lost.
    const stuck = await tx<{ id: string; updated_at: Date | string }[]>`
      select id, updated_at from payments
      where status = 'paid' and updated_at < now() - ${PAID_CREDIT_GRACE}::interval`;
    for (const r of stuck) {
      violations.push({
        invariant: 'payment_paid_not_credited',
        detail: `payment ${r.id} has been paid since ${String(r.updated_at)} and is not credited`,
      });
    }

    // Debited but neither completed nor refunded long after its own timeout: its workflow was
    // terminated or is stuck, and the credits are in limbo.
    const unsettled = await tx<{ id: string; status: string }[]>`
      select id, status from verifications
      where status in ('pending', 'active') and debit_entry_id is not null
        and created_at + make_interval(secs => timeout_seconds) < now() - ${SETTLE_GRACE}::interval`;
    for (const r of unsettled) {
      violations.push({
        invariant: 'verification_unsettled',
        detail: `verification ${r.id} is still ${r.status} long after its timeout`,
      });
    }

    // An order that has finished (or should have) leaves nothing in escrow.
    const escrow = await tx<{ workflow_id: string; held: string }[]>`
      select e.workflow_id, sum(p.amount) as held
      from entries e
      join postings p on p.entry_id = e.id
      join accounts a on a.id = p.account_id and a.kind = 'system' and a.code = 'order_escrow'
      left join orders o on o.workflow_id = e.workflow_id
      where e.workflow_id like 'order-%'
      group by e.workflow_id, o.status, o.updated_at
      having sum(p.amount) <> 0
        and max(e.created_at) < now() - ${SETTLE_GRACE}::interval
        and (o.status is distinct from 'processing' or o.updated_at < now() - ${SETTLE_GRACE}::interval)`;
    for (const r of escrow) {
      violations.push({
        invariant: 'order_escrow_left',
        detail: `order workflow ${r.workflow_id} left ${r.held} credits in escrow`,
      });
    }

    // Never more back than was paid, whatever the CHECKs on payments say today.
    const overRefunded = await tx<
      {
        id: string;
        credits: string;
        amount: string;
        refunded_credits: string;
        refunded_amount: string;
      }[]
    >`
      select id, credits, amount, refunded_credits, refunded_amount from payments
      where refunded_credits > credits or refunded_amount > amount
         or refunded_credits < 0 or refunded_amount < 0
      limit 100`;
    for (const r of overRefunded) {
      violations.push({
        invariant: 'payment_over_refunded',
        detail: `payment ${r.id}: ${r.refunded_credits} of ${r.credits} credits and ${r.refunded_amount} of ${r.amount} refunded`,
      });
    }

    // What a payment says is refunded is what its refund entries took back, net of re-credits.
    const refundedMismatch = await tx<{ id: string; recorded: string; posted: string }[]>`
      with posted as (
        select e.metadata->>'paymentId' as payment_id, sum(p.amount) as credits
        from entries e
        join postings p on p.entry_id = e.id
        join accounts a on a.id = p.account_id and a.kind = 'system' and a.code = 'refunds'
        where e.type = any(${PAYMENT_REFUND_ENTRY_TYPES}::text[])
        group by 1
      )
      select coalesce(pay.id, posted.payment_id) as id,
             coalesce(pay.refunded_credits, 0) as recorded,
             coalesce(posted.credits, 0) as posted
      from payments pay
      full join posted on posted.payment_id = pay.id
      where coalesce(pay.refunded_credits, 0) <> coalesce(posted.credits, 0)
      limit 100`;
    for (const r of refundedMismatch) {
      violations.push({
        invariant: 'refunded_credits_mismatch',
        detail: `payment ${r.id ?? '(none)'}: refunded_credits ${r.recorded}, refund entries took back ${r.posted}`,
      });
    }

    // The receivables accounts hold exactly what customers still owe (as a negative balance).
    const [receivables] = await tx<{ balance: string; owed: string }[]>`
      select (select coalesce(sum(balance), 0) from accounts
              where kind = 'system' and code = 'receivables') as balance,
             (select coalesce(sum(credits - settled_credits), 0) from customer_debts) as owed`;
    if (receivables && BigInt(receivables.balance) !== -BigInt(receivables.owed)) {
      violations.push({
        invariant: 'receivables_mismatch',
        detail: `receivables hold ${receivables.balance}; customers owe ${receivables.owed} (expected -${receivables.owed})`,
      });
    }

    // Credits held for disputes are exactly what the open disputes say they hold: a hold and its
    // dispute row commit together, and so do a release or write-off and the dispute's close.
    const [held] = await tx<{ balance: string; open_held: string }[]>`
      select (select coalesce(sum(balance), 0) from accounts
              where kind = 'system' and code = 'disputes_held') as balance,
             (select coalesce(sum(held_credits), 0) from disputes where status = 'open') as open_held`;
    if (held && BigInt(held.balance) !== BigInt(held.open_held)) {
      violations.push({
        invariant: 'disputes_held_mismatch',
        detail: `disputes_held holds ${held.balance} credits; open disputes hold ${held.open_held}`,
      });
    }

    // Each grant's remaining is the sum of its shares; it never goes below zero nor above what
    // it granted (the table's CHECK), and a closed grant holds nothing.
    const grantDrift = await tx<{ id: string; remaining: string; sum: string }[]>`
      select g.id, g.remaining, coalesce(s.sum, 0) as sum
      from grants g
      left join (select grant_id, sum(amount) as sum from grant_postings group by grant_id) s
        on s.grant_id = g.id
      where g.remaining <> coalesce(s.sum, 0)`;
    for (const r of grantDrift) {
      violations.push({
        invariant: 'grant_remaining_mismatch',
        detail: `grant ${r.id}: remaining ${r.remaining}, its shares sum to ${r.sum}`,
      });
    }
    const closedHolding = await tx<{ id: string; status: string; remaining: string }[]>`
      select id, status, remaining from grants where status <> 'open' and remaining <> 0`;
    for (const r of closedHolding) {
      violations.push({
        invariant: 'closed_grant_holds_credits',
        detail: `grant ${r.id} is ${r.status} but still holds ${r.remaining}`,
      });
    }
    const overDrawn = await tx<{ id: string; remaining: string; credits: string }[]>`
      select id, remaining, credits from grants where remaining < 0 or remaining > credits`;
    for (const r of overDrawn) {
      violations.push({
        invariant: 'grant_over_drawn',
        detail: `grant ${r.id}: remaining ${r.remaining} of ${r.credits}`,
      });
    }

    // A wallet holds exactly what its grants hold, and each wallet posting is split over grants
    // to the credit: the grants say where every credit in the wallet came from.
    const walletDrift = await tx<{ customer_id: string; balance: string; grants: string }[]>`
      select a.customer_id, a.balance, coalesce(g.sum, 0) as grants
      from accounts a
      left join (select customer_id, sum(remaining) as sum from grants group by customer_id) g
        on g.customer_id = a.customer_id
      where a.kind = 'wallet' and a.balance <> coalesce(g.sum, 0)`;
    for (const r of walletDrift) {
      violations.push({
        invariant: 'wallet_grants_mismatch',
        detail: `wallet of ${r.customer_id}: balance ${r.balance}, its grants hold ${r.grants}`,
      });
    }
    const splitDrift = await tx<
      { entry_id: string; customer_id: string; posted: string; split: string }[]
    >`
      with split as (
        select entry_id, customer_id, sum(amount) as split from grant_postings
        where entry_id is not null group by entry_id, customer_id
      ), posted as (
        select p.entry_id, a.customer_id, sum(p.amount) as posted
        from postings p join accounts a on a.id = p.account_id
        where a.kind = 'wallet' and p.entry_id in (select entry_id from split)
        group by p.entry_id, a.customer_id
      )
      select coalesce(s.entry_id, p.entry_id) as entry_id,
             coalesce(s.customer_id, p.customer_id) as customer_id,
             coalesce(p.posted, 0) as posted, coalesce(s.split, 0) as split
      from split s full join posted p on p.entry_id = s.entry_id and p.customer_id = s.customer_id
      where coalesce(p.posted, 0) <> coalesce(s.split, 0)`;
    for (const r of splitDrift) {
      violations.push({
        invariant: 'grant_split_mismatch',
        detail: `entry ${r.entry_id}, wallet of ${r.customer_id}: posted ${r.posted}, split over grants ${r.split}`,
      });
    }
    // Breakage holds exactly what expiries, voids and closed-grant returns sent it.
    const [broken] = await tx<{ balance: string; shares: string }[]>`
      select (select coalesce(sum(balance), 0) from accounts
              where kind = 'system' and code = 'breakage') as balance,
             (select coalesce(-sum(amount), 0) from grant_postings
              where kind in ('expiry', 'void', 'breakage')) as shares`;
    if (broken && BigInt(broken.balance) !== BigInt(broken.shares)) {
      violations.push({
        invariant: 'breakage_mismatch',
        detail: `breakage holds ${broken.balance} credits; expiries, voids and closed-grant returns sent ${broken.shares}`,
      });
    }

    const [counts] = await tx<{ accounts: string; entries: string; postings: string }[]>`
      select (select count(*) from accounts) as accounts,
             (select count(*) from entries) as entries,
             (select count(*) from postings) as postings`;
    return {
      ok: violations.length === 0,
      checkedAt: new Date(),
      counts: {
        accounts: Number(counts?.accounts ?? 0),
        entries: Number(counts?.entries ?? 0),
        postings: Number(counts?.postings ?? 0),
      },
      violations,
    };
  }
}
