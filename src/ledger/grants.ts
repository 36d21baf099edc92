// Grants: how a wallet posting is split over the credits a wallet holds, inside the posting
// transaction. A debit draws from effective grants in burn-down order; a credit creates a grant or
// gives a purchase's credits back to the grants they came from.
import { BusinessError } from '../errors.js';
import type { Tx } from './ledger.js';

export const GRANT_CATEGORIES = ['paid', 'promotional'] as const;
export type GrantCategory = (typeof GRANT_CATEGORIES)[number];

export const GRANT_SOURCES = [
  'topup',
  'auto_topup',
  'adjustment',
  'promotion',
  'refund',
  'sale',
  'opening',
] as const;
export type GrantSource = (typeof GRANT_SOURCES)[number];

export const GRANT_STATUSES = ['open', 'expired', 'voided'] as const;
export type GrantStatus = (typeof GRANT_STATUSES)[number];

export const DEFAULT_GRANT_PRIORITY = 100;
export const MAX_GRANT_PRIORITY = 1000;

export type GrantPostingKind =
  'grant' | 'draw' | 'return' | 'breakage' | 'expiry' | 'void' | 'opening';

/** A grant a credit creates. */
export interface NewGrant {
  /** Chosen by the caller when it must know the id before posting (admin grants); else random. */
  id?: string;
  category: GrantCategory;
  source: GrantSource;
  /** Lower is drawn first (0..1000, default 100). */
  priority?: number;
  /** Not spendable before this instant (default: now). */
  effectiveAt?: Date | string;
  expiresAt?: Date | string | null;
  reason?: string;
  metadata?: Record<string, unknown>;
}

/**
 * What a positive wallet line is: a new grant, or credits given back to the grants the entry
 * with key `returnTo` drew from (what exceeds that draw becomes a `fallback` grant).
 */
export type WalletCredit = { grant: NewGrant } | { returnTo: string; fallback?: NewGrant };

/** How a negative wallet line draws: `only` one grant, or grants in `prefer` first, then burn-down. */
export interface WalletDebit {
  prefer?: string[];
  only?: string;
}

/** One grant's share of an entry's wallet posting. */
export interface GrantShare {
  grantId: string;
  customerId: string;
  amount: number;
  kind: GrantPostingKind;
}

/**
 * The burn-down order, as SQL over a `grants` row: priority (lower first), promotional before
 * paid, soonest expiry (none last), oldest, then id so the order is total.
 */
export const BURN_DOWN_ORDER =
  "priority asc, (category = 'paid') asc, expires_at asc nulls last, created_at asc, id asc";

/** Where an effective, spendable grant is: open, with credits left, effective, not expired. */
export const SPENDABLE = `status = 'open' and remaining > 0 and effective_at <= now()
  and (expires_at is null or expires_at > now())`;

/** The default grant for a credit that names none, by entry type. */
export function defaultGrantFor(entryType: string): NewGrant {
  if (entryType === 'topup') return { category: 'paid', source: 'topup' };
  if (entryType === 'sale') return { category: 'paid', source: 'sale' };
  if (entryType === 'adjustment') return { category: 'paid', source: 'adjustment' };
  return { category: 'paid', source: 'refund' };
}

const toDateValue = (value: Date | string) => (value instanceof Date ? value : new Date(value));

/** Refuses a grant that cannot exist, before anything is written. */
export function validateNewGrant(
  grant: NewGrant,
  idempotencyKey: string,
  /** Only when it is being created: a replay of an old posting may name a past expiry. */
  creating = false,
): void {
  const fail = (message: string) => {
    throw new BusinessError('invalid_grant', message, { idempotencyKey });
  };
  if (!GRANT_CATEGORIES.includes(grant.category)) fail(`unknown grant category ${grant.category}`);
  if (!GRANT_SOURCES.includes(grant.source)) fail(`unknown grant source ${grant.source}`);
  const priority = grant.priority ?? DEFAULT_GRANT_PRIORITY;
  if (!Number.isInteger(priority) || priority < 0 || priority > MAX_GRANT_PRIORITY) {
    fail(`grant priority is an integer 0..${MAX_GRANT_PRIORITY}`);
  }
  const effective = grant.effectiveAt ? toDateValue(grant.effectiveAt) : undefined;
  const expires = grant.expiresAt ? toDateValue(grant.expiresAt) : undefined;
  if (effective && Number.isNaN(effective.getTime())) fail('grant effectiveAt is not a date');
  if (expires && Number.isNaN(expires.getTime())) fail('grant expiresAt is not a date');
  if (effective && expires && expires.getTime() <= effective.getTime()) {
    fail('a grant expires after it becomes effective');
  }
  if (creating && !effective && expires && expires.getTime() <= Date.now()) {
    fail('a grant effective now expires in the future');
  }
}

/** What the grant phase of a posting did to one wallet line. */
export interface WalletSplit {
  shares: GrantShare[];
  /** Of a positive line: the part whose grant had closed, posted to breakage instead. */
  breakage: number;
  /** Credits spendable now after this line, once computed (debits know it without a query). */
  availableAfter?: bigint;
}

/** The wallet's spendable credits now, inside the posting transaction. */
export async function spendable(tx: Tx, customerId: string): Promise<bigint> {
  const [row] = await tx.unsafe<{ available: string }[]>(
    `select coalesce(sum(remaining), 0)::text as available from grants
     where customer_id = $1 and ${SPENDABLE}`,
    [customerId],
  );
  return BigInt(row?.available ?? '0');
}

/**
 * Draws `-amount` credits for one negative wallet line. The caller holds the wallet's row lock,
 * which every writer of this wallet's grants takes first, so the read below is stable.
 */
export async function drawFromGrants(
  tx: Tx,
  input: { customerId: string; amount: number; entryId: number; type: string; debit?: WalletDebit },
): Promise<WalletSplit> {
  const need = BigInt(-input.amount);
  const kind: GrantPostingKind =
    input.type === 'grant_expiry' ? 'expiry' : input.type === 'grant_void' ? 'void' : 'draw';
  let taken: Array<{ id: string; take: bigint }>;
  let availableAfter: bigint | undefined;
  if (input.debit?.only) {
    const [grant] = await tx<{ remaining: string; status: string }[]>`
      select remaining::text, status from grants
      where id = ${input.debit.only}::uuid and customer_id = ${input.customerId}::uuid`;
    if (!grant || grant.status !== 'open' || BigInt(grant.remaining) < need) {
      throw new BusinessError(
        'insufficient_credits',
        `grant ${input.debit.only} cannot give ${need} credits`,
        { grantId: input.debit.only, required: Number(need) },
      );
    }
    taken = [{ id: input.debit.only, take: need }];
  } else {
    const prefer = input.debit?.prefer ?? [];
    // Only the grants the draw reaches: those whose running total before them is short of it.
    const rows = await tx.unsafe<{ id: string; remaining: string; total: string }[]>(
      `select id, remaining::text, total::text from (
         select id, remaining,
                sum(remaining) over (order by array_position($2::uuid[], id) asc nulls last, ${BURN_DOWN_ORDER}
                                     rows between unbounded preceding and 1 preceding) as before,
                sum(remaining) over () as total
         from grants
         where customer_id = $1 and ${SPENDABLE}
       ) g
       where coalesce(before, 0) < $3::numeric
       order by coalesce(before, 0)`,
      [input.customerId, prefer, need.toString()],
    );
    const available = BigInt(rows[0]?.total ?? '0');
    if (available < need) {
      throw insufficientSpendable(available, need);
    }
    taken = [];
    let left = need;
    for (const row of rows) {
      if (left === 0n) break;
      const remaining = BigInt(row.remaining);
      const take = remaining < left ? remaining : left;
      taken.push({ id: row.id, take });
      left -= take;
    }
    availableAfter = available - need;
  }
  await tx`
    update grants g set remaining = g.remaining - v.take, updated_at = now()
    from unnest(${taken.map((t) => t.id)}::uuid[], ${taken.map((t) => t.take.toString())}::bigint[]) as v(id, take)
    where g.id = v.id`;
  const shares = taken.map<GrantShare>((t) => ({
    grantId: t.id,
    customerId: input.customerId,
    amount: -Number(t.take),
    kind,
  }));
  await insertShares(tx, input.entryId, shares);
  const split: WalletSplit = { shares, breakage: 0 };
  if (availableAfter !== undefined) split.availableAfter = availableAfter;
  return split;
}

/** Credits `amount` for one positive wallet line: a new grant, or back to the source grants. */
export async function creditToGrants(
  tx: Tx,
  input: {
    customerId: string;
    amount: number;
    entryId: number;
    type: string;
    idempotencyKey: string;
    credit?: WalletCredit;
  },
): Promise<WalletSplit> {
  const credit = input.credit;
  if (!credit || 'grant' in credit) {
    const grant = credit?.grant ?? defaultGrantFor(input.type);
    const share = await createGrant(tx, input, grant, BigInt(input.amount));
    return { shares: [share], breakage: 0 };
  }
  const [original] = await tx<{ id: string }[]>`
    select id from entries where idempotency_key = ${credit.returnTo}`;
  const shares: GrantShare[] = [];
  const returns: Array<{ id: string; give: bigint }> = [];
  let left = BigInt(input.amount);
  let breakage = 0n;
  if (original) {
    const drawn = await tx.unsafe<{ id: string; returnable: string; live: boolean }[]>(
      `select g.id, (d.drawn - coalesce(r.returned, 0))::text as returnable,
              (g.status = 'open' and (g.expires_at is null or g.expires_at > now())) as live
       from (select grant_id, -sum(amount) as drawn from grant_postings
             where entry_id = $1 and customer_id = $2 and kind = 'draw' group by grant_id) d
       join grants g on g.id = d.grant_id
       left join (select grant_id, sum(amount) as returned from grant_postings
                  where returns_entry_id = $1 and customer_id = $2 and kind = 'return'
                  group by grant_id) r on r.grant_id = d.grant_id
       where d.drawn - coalesce(r.returned, 0) > 0
       order by ${BURN_DOWN_ORDER}`,
      [original.id, input.customerId],
    );
    for (const row of drawn) {
      if (left === 0n) break;
      const returnable = BigInt(row.returnable);
      const give = returnable < left ? returnable : left;
      left -= give;
      shares.push({
        grantId: row.id,
        customerId: input.customerId,
        amount: Number(give),
        kind: 'return',
      });
      if (row.live) {
        returns.push({ id: row.id, give });
      } else {
        // The grant closed meanwhile: its share is breakage at once, never spendable again.
        shares.push({
          grantId: row.id,
          customerId: input.customerId,
          amount: -Number(give),
          kind: 'breakage',
        });
        breakage += give;
      }
    }
  }
  if (returns.length > 0) {
    await tx`
      update grants g set remaining = g.remaining + v.give, updated_at = now()
      from unnest(${returns.map((r) => r.id)}::uuid[], ${returns.map((r) => r.give.toString())}::bigint[]) as v(id, give)
      where g.id = v.id`;
  }
  await insertShares(tx, input.entryId, shares, original ? Number(original.id) : null);
  if (left > 0n) {
    const fallback = credit.fallback ?? defaultGrantFor(input.type);
    shares.push(await createGrant(tx, input, fallback, left));
  }
  return { shares, breakage: Number(breakage) };
}

async function createGrant(
  tx: Tx,
  input: { customerId: string; entryId: number; idempotencyKey: string },
  grant: NewGrant,
  credits: bigint,
): Promise<GrantShare> {
  validateNewGrant(grant, input.idempotencyKey, true);
  // As ISO text: the driver's date handling differs between pools, text never does.
  const effectiveAt = grant.effectiveAt ? toDateValue(grant.effectiveAt).toISOString() : null;
  const expiresAt = grant.expiresAt ? toDateValue(grant.expiresAt).toISOString() : null;
  const [row] = await tx<{ id: string }[]>`
    insert into grants (id, customer_id, category, source, credits, remaining, priority,
                        effective_at, expires_at, entry_id, reason, metadata)
    values (coalesce(${grant.id ?? null}::uuid, gen_random_uuid()), ${input.customerId}::uuid,
            ${grant.category}, ${grant.source}, ${credits.toString()}::bigint,
            ${credits.toString()}::bigint, ${grant.priority ?? DEFAULT_GRANT_PRIORITY},
            coalesce(${effectiveAt}::timestamptz, now()), ${expiresAt}::timestamptz,
            ${input.entryId}, ${grant.reason ?? null},
            ${JSON.stringify(grant.metadata ?? {})}::jsonb)
    returning id`;
  const share: GrantShare = {
    grantId: row!.id,
    customerId: input.customerId,
    amount: Number(credits),
    kind: 'grant',
  };
  await insertShares(tx, input.entryId, [share]);
  return share;
}

async function insertShares(
  tx: Tx,
  entryId: number,
  shares: GrantShare[],
  returnsEntryId: number | null = null,
): Promise<void> {
  if (shares.length === 0) return;
  await tx`
    insert into grant_postings ${tx(
      shares.map((s) => ({
        entry_id: entryId,
        grant_id: s.grantId,
        customer_id: s.customerId,
        amount: s.amount,
        kind: s.kind,
        returns_entry_id: s.kind === 'return' || s.kind === 'breakage' ? returnsEntryId : null,
      })),
    )}`;
}

/** The grant shares an entry posted, in the order they were written. */
export async function sharesOf(tx: Tx | import('../db/client.js').Sql, entryId: number) {
  const rows = await tx<
    { grant_id: string; customer_id: string; amount: string; kind: GrantPostingKind }[]
  >`select grant_id, customer_id, amount, kind from grant_postings where entry_id = ${entryId} order by id`;
  return rows.map<GrantShare>((r) => ({
    grantId: r.grant_id,
    customerId: r.customer_id,
    amount: Number(r.amount),
    kind: r.kind,
  }));
}

/** The refusal when the wallet's spendable grants hold less than a debit needs. */
export function insufficientSpendable(available: bigint, need: bigint): BusinessError {
  return new BusinessError(
    'insufficient_credits',
    `insufficient credits: the wallet holds ${available} spendable, this needs ${need} (short by ${need - available})`,
    {
      balance: Number(available),
      available: Number(available),
      required: Number(need),
      shortfall: Number(need - available),
    },
  );
}
