// Read queries over grants for the API: a wallet's spendable credits and open grants, the grants
// each transaction drew from, and an admin's view of one grant or a customer's grants.
import { toDate, type Sql } from '../db/client.js';
import {
  BURN_DOWN_ORDER,
  SPENDABLE as SPENDABLE_NOW,
  type GrantCategory,
  type GrantPostingKind,
} from '../ledger/grants.js';
import { jsonBalance } from '../ledger/ledger.js';

/** Credits as the API shows them: a number while exact, else a decimal string. */
type Credits = number | string;

export interface WalletGrant {
  id: string;
  category: GrantCategory;
  source: string;
  remaining: Credits;
  priority: number;
  effectiveAt: string;
  expiresAt: string | null;
  /** False while it is not effective yet, or past its expiry and not yet closed. */
  spendable: boolean;
}

export interface WalletCredits {
  available: Credits;
  byCategory: { paid: Credits; promotional: Credits };
  /** Open grants with credits left, in the order a debit draws them. */
  grants: WalletGrant[];
}

/** One customer's spendable credits and open grants, in one query. */
export async function walletCredits(sql: Sql, customerId: string): Promise<WalletCredits> {
  const rows = await sql.unsafe<
    {
      id: string;
      category: GrantCategory;
      source: string;
      remaining: string;
      priority: number;
      effective_at: Date | string;
      expires_at: Date | string | null;
      spendable: boolean;
    }[]
  >(
    `select id, category, source, remaining::text, priority, effective_at, expires_at,
            (${SPENDABLE_NOW}) as spendable
     from grants
     where customer_id = $1 and status = 'open' and remaining > 0
     order by (${SPENDABLE_NOW}) desc, ${BURN_DOWN_ORDER}`,
    [customerId],
  );
  const sums = { paid: 0n, promotional: 0n };
  for (const r of rows) {
    if (r.spendable) sums[r.category] += BigInt(r.remaining);
  }
  return {
    available: jsonBalance(sums.paid + sums.promotional),
    byCategory: { paid: jsonBalance(sums.paid), promotional: jsonBalance(sums.promotional) },
    grants: rows.map((r) => ({
      id: r.id,
      category: r.category,
      source: r.source,
      remaining: jsonBalance(r.remaining),
      priority: r.priority,
      effectiveAt: toDate(r.effective_at).toISOString(),
      expiresAt: r.expires_at === null ? null : toDate(r.expires_at).toISOString(),
      spendable: r.spendable,
    })),
  };
}

export interface EntryGrantShare {
  grantId: string;
  amount: Credits;
  kind: GrantPostingKind;
}

/** The customer's grant shares of each entry on a page of transactions, in one query. */
export async function sharesByEntry(
  sql: Sql,
  customerId: string,
  entryIds: number[],
): Promise<Map<number, EntryGrantShare[]>> {
  const byEntry = new Map<number, EntryGrantShare[]>();
  if (entryIds.length === 0) return byEntry;
  const rows = await sql<
    { entry_id: string; grant_id: string; amount: string; kind: GrantPostingKind }[]
  >`
    select entry_id, grant_id, amount, kind from grant_postings
    where entry_id = any(${entryIds}::bigint[]) and customer_id = ${customerId}::uuid
    order by id`;
  for (const r of rows) {
    const list = byEntry.get(Number(r.entry_id)) ?? [];
    list.push({ grantId: r.grant_id, amount: jsonBalance(r.amount), kind: r.kind });
    byEntry.set(Number(r.entry_id), list);
  }
  return byEntry;
}

/** A grant as the admin API shows it. */
export interface GrantRecord {
  id: string;
  customerId: string;
  category: string;
  source: string;
  credits: Credits;
  remaining: Credits;
  priority: number;
  effectiveAt: string;
  expiresAt: string | null;
  status: 'open' | 'expired' | 'voided';
  reason: string | null;
  entryId: number | null;
  createdAt: string;
  closedAt: string | null;
  /** The hash of the admin request that created it (admin grants only). */
  requestHash: string | null;
}

export interface GrantHistoryItem {
  entryId: number | null;
  entryType: string | null;
  kind: GrantPostingKind;
  amount: Credits;
  createdAt: string;
}

interface GrantRow {
  id: string;
  customer_id: string;
  category: string;
  source: string;
  credits: string;
  remaining: string;
  priority: number;
  effective_at: Date | string;
  expires_at: Date | string | null;
  status: GrantRecord['status'];
  reason: string | null;
  entry_id: string | null;
  created_at: Date | string;
  closed_at: Date | string | null;
  metadata: Record<string, unknown> | null;
}

const GRANT_COLUMNS = `id, customer_id, category, source, credits::text, remaining::text, priority,
  effective_at, expires_at, status, reason, entry_id, created_at, closed_at, metadata`;

function recordOf(r: GrantRow): GrantRecord {
  const hash = r.metadata?.['requestHash'];
  return {
    id: r.id,
    customerId: r.customer_id,
    category: r.category,
    source: r.source,
    credits: jsonBalance(r.credits),
    remaining: jsonBalance(r.remaining),
    priority: r.priority,
    effectiveAt: toDate(r.effective_at).toISOString(),
    expiresAt: r.expires_at === null ? null : toDate(r.expires_at).toISOString(),
    status: r.status,
    reason: r.reason,
    entryId: r.entry_id === null ? null : Number(r.entry_id),
    createdAt: toDate(r.created_at).toISOString(),
    closedAt: r.closed_at === null ? null : toDate(r.closed_at).toISOString(),
    requestHash: typeof hash === 'string' ? hash : null,
  };
}

/** One grant by id (a uuid), or undefined. */
export async function grantById(sql: Sql, id: string): Promise<GrantRecord | undefined> {
  const [row] = await sql.unsafe<GrantRow[]>(
    `select ${GRANT_COLUMNS} from grants where id = $1::uuid`,
    [id],
  );
  return row ? recordOf(row) : undefined;
}

/** Every share of one grant, oldest first: granted, drawn, returned, expired or voided. */
export async function grantHistory(sql: Sql, id: string): Promise<GrantHistoryItem[]> {
  const rows = await sql<
    {
      entry_id: string | null;
      type: string | null;
      kind: GrantPostingKind;
      amount: string;
      created_at: Date | string;
    }[]
  >`
    select gp.entry_id, e.type, gp.kind, gp.amount::text, gp.created_at
    from grant_postings gp left join entries e on e.id = gp.entry_id
    where gp.grant_id = ${id}::uuid
    order by gp.id
    limit 500`;
  return rows.map((r) => ({
    entryId: r.entry_id === null ? null : Number(r.entry_id),
    entryType: r.type,
    kind: r.kind,
    amount: jsonBalance(r.amount),
    createdAt: toDate(r.created_at).toISOString(),
  }));
}

/** A customer's grants, newest first (at most `limit`). */
export async function grantsOfCustomer(
  sql: Sql,
  customerId: string,
  options: { status?: GrantRecord['status'] | undefined; limit: number },
): Promise<GrantRecord[]> {
  const rows = await sql.unsafe<GrantRow[]>(
    `select ${GRANT_COLUMNS} from grants
     where customer_id = $1::uuid and ($2::text is null or status = $2)
     order by created_at desc, id desc limit $3`,
    [customerId, options.status ?? null, options.limit],
  );
  return rows.map(recordOf);
}
