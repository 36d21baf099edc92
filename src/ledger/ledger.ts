// The one posting function every money movement goes through: idempotent, double-entry, atomic.
import { createHash } from 'node:crypto';
import type postgres from 'postgres';
import { toDate, type Sql } from '../db/client.js';
import { BusinessError } from '../errors.js';
import { assertFenceOpen } from './fences.js';

/** System accounts. Each is split into shards (rows) so customers do not queue on one lock. */
export const SYSTEM_ACCOUNTS = [
  'adjustments',
  'stripe_clearing',
  'revenue',
  'refunds',
  'seller_payouts',
  'order_escrow',
] as const;
export type SystemAccount = (typeof SYSTEM_ACCOUNTS)[number];

export type AccountRef = { wallet: string } | { system: string };

/** Largest absolute amount of one posting line; far above any real pack, far below 2^53. */
export const MAX_POSTING_AMOUNT = 1_000_000_000_000;

export interface PostingLine {
  account: AccountRef;
  /** Signed integer credits: positive adds to the account, negative takes from it. */
  amount: number;
}

export interface PostEntryInput {
  /** Derived from the workflow id and step, never the run id. */
  idempotencyKey: string;
  type: string;
  description: string;
  workflowId?: string | null;
  metadata?: Record<string, unknown>;
  lines: PostingLine[];
  /**
   * Fence key of a forward step a compensation may close (usually the idempotency key): the
   * posting locks it and refuses with StepClosed once it is closed (see fences.ts).
   */
  fence?: string;
}

export interface PostedLine {
  account: AccountRef;
  accountId: number;
  amount: number;
  balanceAfter: number;
}

export interface PostedEntry {
  entryId: number;
  idempotencyKey: string;
  type: string;
  createdAt: Date;
  /** True when the key had already been posted and this is the first result again. */
  replayed: boolean;
  lines: PostedLine[];
}

export type Tx = postgres.TransactionSql;

/** Runs inside the posting transaction after a first-time post, for writes that must commit with it. */
export type AfterPost = (tx: Tx, entry: PostedEntry) => Promise<void>;

export interface Ledger {
  postEntry(input: PostEntryInput, afterPost?: AfterPost): Promise<PostedEntry>;
  walletBalance(customerId: string): Promise<number>;
  systemBalance(code: string): Promise<number>;
}

const refKey = (ref: AccountRef) =>
  'wallet' in ref ? `wallet:${ref.wallet}` : `system:${ref.system}`;

function validate(input: PostEntryInput): void {
  const fail = (message: string) => {
    throw new BusinessError('invalid_posting', message, { idempotencyKey: input.idempotencyKey });
  };
  if (!input.idempotencyKey || input.idempotencyKey.length > 300) {
    fail('an entry needs an idempotency key of 1..300 characters');
  }
  if (!input.type) fail('an entry needs a type');
  if (input.lines.length < 2) fail('an entry needs at least two posting lines');
  const seen = new Set<string>();
  let sum = 0;
  for (const line of input.lines) {
    if (!Number.isSafeInteger(line.amount) || line.amount === 0) {
      fail(`posting amounts are non-zero integers (got ${String(line.amount)})`);
    }
    if (Math.abs(line.amount) > MAX_POSTING_AMOUNT) {
      fail(`posting amount ${line.amount} is beyond the limit of ${MAX_POSTING_AMOUNT}`);
    }
    const key = refKey(line.account);
    if (seen.has(key)) fail(`account ${key} appears twice in one entry`);
    seen.add(key);
    sum += line.amount;
  }
  if (sum !== 0) fail(`posting lines sum to ${sum}, not zero`);
}

/** What "same content" means for an idempotency key: the type and the lines, order-free. */
export function contentHash(input: Pick<PostEntryInput, 'type' | 'lines'>): string {
  const lines = input.lines
    .map((l) => `${refKey(l.account)}=${l.amount}`)
    .sort()
    .join(';');
  return createHash('sha256').update(`${input.type}|${lines}`).digest('hex');
}

function shardOf(key: string, shards: number): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0) % shards;
}

/** Counts postings by outcome; the worker passes its Prometheus counter. */
export interface LedgerObserver {
  inc(labels: { type: string; status: 'posted' | 'replayed' | 'refused' }): void;
}

/** Creates the ledger over a postgres.js pool; caches account ids, which never change. */
export function createLedger(sql: Sql, observer?: LedgerObserver): Ledger {
  const walletIds = new Map<string, number>();
  let systemShards: Map<string, number[]> | undefined;

  async function loadSystemShards(): Promise<Map<string, number[]>> {
    if (systemShards) return systemShards;
    const rows = await sql<{ id: string; code: string }[]>`
      select id, code from accounts where kind = 'system' order by code, shard`;
    const map = new Map<string, number[]>();
    for (const row of rows) {
      const list = map.get(row.code) ?? [];
      list.push(Number(row.id));
      map.set(row.code, list);
    }
    systemShards = map;
    return map;
  }

  async function resolveAccounts(input: PostEntryInput): Promise<number[]> {
    const missingWallets = input.lines
      .map((l) => l.account)
      .filter((a): a is { wallet: string } => 'wallet' in a && !walletIds.has(a.wallet))
      .map((a) => a.wallet);
    if (missingWallets.length > 0) {
      const rows = await sql<{ id: string; customer_id: string }[]>`
        select id, customer_id from accounts
        where kind = 'wallet' and customer_id = any(${missingWallets}::uuid[])`;
      for (const row of rows) walletIds.set(row.customer_id, Number(row.id));
    }
    let shards = await loadSystemShards();
    const ids: number[] = [];
    for (const { account } of input.lines) {
      if ('wallet' in account) {
        const id = walletIds.get(account.wallet);
        if (id === undefined) {
          throw new BusinessError('account_not_found', `no wallet for customer ${account.wallet}`, {
            customerId: account.wallet,
          });
        }
        ids.push(id);
      } else {
        if (!shards.has(account.system)) {
          systemShards = undefined; // a system account added since the cache was filled
          shards = await loadSystemShards();
        }
        const list = shards.get(account.system);
        if (!list || list.length === 0) {
          throw new BusinessError('account_not_found', `no system account ${account.system}`);
        }
        ids.push(list[shardOf(input.idempotencyKey, list.length)]!);
      }
    }
    return ids;
  }

  async function readPosted(idempotencyKey: string) {
    const rows = await sql<
      {
        entry_id: string;
        content_hash: string;
        type: string;
        created_at: Date | string;
        account_id: string;
        kind: 'wallet' | 'system';
        customer_id: string | null;
        code: string;
        amount: string;
        balance_after: string;
      }[]
    >`
      select e.id as entry_id, e.content_hash, e.type, e.created_at,
             p.account_id, a.kind, a.customer_id, a.code, p.amount, p.balance_after
      from entries e
      join postings p on p.entry_id = e.id
      join accounts a on a.id = p.account_id
      where e.idempotency_key = ${idempotencyKey}
      order by p.id`;
    const first = rows[0];
    if (!first) return undefined;
    const entry: PostedEntry = {
      entryId: Number(first.entry_id),
      idempotencyKey,
      type: first.type,
      createdAt: toDate(first.created_at),
      replayed: true,
      lines: rows.map((r) => ({
        account: r.kind === 'wallet' ? { wallet: r.customer_id! } : { system: r.code },
        accountId: Number(r.account_id),
        amount: Number(r.amount),
        balanceAfter: Number(r.balance_after),
      })),
    };
    return { entry, contentHash: first.content_hash };
  }

  async function postEntry(input: PostEntryInput, afterPost?: AfterPost): Promise<PostedEntry> {
    try {
      const result = await post(input, afterPost);
      observer?.inc({ type: input.type, status: result.replayed ? 'replayed' : 'posted' });
      return result;
    } catch (err) {
      if (err instanceof BusinessError) observer?.inc({ type: input.type, status: 'refused' });
      throw err;
    }
  }

  async function post(input: PostEntryInput, afterPost?: AfterPost): Promise<PostedEntry> {
    validate(input);
    const hash = contentHash(input);
    const accountIds = await resolveAccounts(input);

    const posted = await sql.begin(async (tx) => {
      if (input.fence) await assertFenceOpen(tx, input.fence);
      const [entry] = await tx<{ id: string; created_at: Date | string }[]>`
        insert into entries (idempotency_key, content_hash, type, description, workflow_id, metadata)
        values (${input.idempotencyKey}, ${hash}, ${input.type}, ${input.description},
                ${input.workflowId ?? null}, ${JSON.stringify(input.metadata ?? {})}::jsonb)
        on conflict (idempotency_key) do nothing
        returning id, created_at`;
      if (!entry) return undefined; // already posted (perhaps by a concurrent retry)

      // Lock and update accounts in ascending id order so concurrent postings never deadlock.
      const order = input.lines
        .map((line, i) => ({ line, accountId: accountIds[i]! }))
        .sort((a, b) => a.accountId - b.accountId);
      const lines: PostedLine[] = [];
      for (const { line, accountId } of order) {
        const [row] = await tx<{ balance: string }[]>`
          update accounts set balance = balance + ${line.amount}, updated_at = now()
          where id = ${accountId} and (kind <> 'wallet' or balance + ${line.amount} >= 0)
          returning balance`;
        if (!row) {
          const [current] = await tx<{ balance: string }[]>`
            select balance from accounts where id = ${accountId}`;
          const balance = Number(current?.balance ?? 0);
          throw new BusinessError(
            'insufficient_credits',
            `insufficient credits: the wallet holds ${balance}, this needs ${-line.amount} (short by ${-line.amount - balance})`,
            { balance, required: -line.amount, shortfall: -line.amount - balance },
          );
        }
        lines.push({
          account: line.account,
          accountId,
          amount: line.amount,
          balanceAfter: Number(row.balance),
        });
      }
      const entryId = Number(entry.id);
      await tx`
        insert into postings ${tx(
          lines.map((l) => ({
            entry_id: entryId,
            account_id: l.accountId,
            amount: l.amount,
            balance_after: l.balanceAfter,
          })),
        )}`;
      // Report lines in the caller's order.
      const byAccount = new Map(lines.map((l) => [l.accountId, l]));
      const result: PostedEntry = {
        entryId,
        idempotencyKey: input.idempotencyKey,
        type: input.type,
        createdAt: toDate(entry.created_at),
        replayed: false,
        lines: accountIds.map((id) => byAccount.get(id)!),
      };
      if (afterPost) await afterPost(tx, result);
      return result;
    });
    if (posted) return posted;

    const existing = await readPosted(input.idempotencyKey);
    if (!existing) {
      // The conflicting insert rolled back between our two statements: post afresh.
      return post(input, afterPost);
    }
    if (existing.contentHash !== hash) {
      throw new BusinessError(
        'idempotency_conflict',
        `idempotency key ${input.idempotencyKey} was already used for a different entry`,
        { idempotencyKey: input.idempotencyKey, entryId: existing.entry.entryId },
      );
    }
    // Same content: the first result, with lines in the caller's order.
    const byRef = new Map(existing.entry.lines.map((l) => [refKey(l.account), l]));
    return { ...existing.entry, lines: input.lines.map((l) => byRef.get(refKey(l.account))!) };
  }

  async function walletBalance(customerId: string): Promise<number> {
    const [row] = await sql<{ balance: string }[]>`
      select balance from accounts where kind = 'wallet' and customer_id = ${customerId}`;
    if (!row) {
      throw new BusinessError('account_not_found', `no wallet for customer ${customerId}`);
    }
    return Number(row.balance);
  }

  async function systemBalance(code: string): Promise<number> {
    const [row] = await sql<{ balance: string | null }[]>`
      select sum(balance) as balance from accounts where kind = 'system' and code = ${code}`;
    return Number(row?.balance ?? 0);
  }

  return { postEntry, walletBalance, systemBalance };
}
