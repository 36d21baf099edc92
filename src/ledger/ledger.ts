// The one posting function every money movement goes through: idempotent, double-entry, atomic.
import { createHash } from 'node:crypto';
import type postgres from 'postgres';
import { toDate, type Sql } from '../db/client.js';
import { sqlState, toBusinessErrorIfPermanent } from '../db/errors.js';
import { BusinessError } from '../errors.js';
import { onWalletMoved, type WalletMove } from '../credits/watch.js';
import { assertFenceOpen, StepClosed } from './fences.js';
import {
  creditToGrants,
  defaultGrantFor,
  drawFromGrants,
  insufficientSpendable,
  validateNewGrant,
  type GrantPostingKind,
  type GrantShare,
  type WalletCredit,
  type WalletDebit,
  type WalletSplit,
} from './grants.js';

/** System accounts. Each is split into shards (rows) so customers do not queue on one lock. */
export const SYSTEM_ACCOUNTS = [
  'adjustments',
  'stripe_clearing',
  'revenue',
  'refunds',
  'seller_payouts',
  'order_escrow',
  'receivables',
  'disputes_held',
  'chargebacks',
  'breakage',
] as const;
export type SystemAccount = (typeof SYSTEM_ACCOUNTS)[number];

export type AccountRef = { wallet: string } | { system: string };

/** Largest absolute amount of one posting line; far above any real pack, far below 2^53. */
export const MAX_POSTING_AMOUNT = 1_000_000_000_000;

export interface PostingLine {
  account: AccountRef;
  /** Signed integer credits: positive adds to the account, negative takes from it. */
  amount: number;
  /** Of a positive wallet line: the grant it creates, or the draw it gives back (grants.ts). */
  credit?: WalletCredit;
  /** Of a negative wallet line: which grants it draws from first (default: burn-down order). */
  debit?: WalletDebit;
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
  /**
   * The account's balance after this line as a JS number, for callers that show or compare
   * ordinary balances. Exact only up to Number.MAX_SAFE_INTEGER: anything stored or shown
   * beyond that uses `balanceAfterExact`.
   */
  balanceAfter: number;
  /** The balance after this line exactly as the database computed and stored it (decimal). */
  balanceAfterExact: string;
}

export interface PostedEntry {
  entryId: number;
  idempotencyKey: string;
  type: string;
  createdAt: Date;
  /** True when the key had already been posted and this is the first result again. */
  replayed: boolean;
  lines: PostedLine[];
  /** How the wallet lines were split over grants: which grants it drew from, returned to, created. */
  grants: GrantShare[];
}

export type Tx = postgres.TransactionSql;

/** Runs inside the posting transaction after a first-time post, for writes that must commit with it. */
export type AfterPost = (tx: Tx, entry: PostedEntry) => Promise<void>;

/** Closing a grant: its remainder goes to breakage and it can never be drawn from again. */
export interface CloseGrantInput {
  grantId: string;
  /** expiry: at its expiresAt; void: an operator removes what is left. */
  kind: 'expiry' | 'void';
  reason?: string;
  workflowId?: string | null;
}

export interface ClosedGrant {
  grantId: string;
  customerId: string;
  status: 'expired' | 'voided';
  /** What went to breakage (0 when the grant was used up, or on a repeat). */
  credits: number;
  closedAt: Date;
  /** False when the grant was already closed: nothing moved this time. */
  closedNow: boolean;
  entry?: PostedEntry;
}

export interface Ledger {
  postEntry(input: PostEntryInput, afterPost?: AfterPost): Promise<PostedEntry>;
  /**
   * Closes a grant exactly once: the remainder moves to `breakage` (entry `grant_expiry` or
   * `grant_void`, key `grant-<kind>:<grantId>`); a repeat, or a grant already closed, moves nothing.
   */
  closeGrant(input: CloseGrantInput, afterPost?: AfterPost): Promise<ClosedGrant>;
  /** A wallet's balance as a JS number (exact up to Number.MAX_SAFE_INTEGER). */
  walletBalance(customerId: string): Promise<number>;
  /** A wallet's balance exactly, as a decimal string. */
  walletBalanceExact(customerId: string): Promise<string>;
  /** A system account's balance (the sum of its shards) as a JS number. */
  systemBalance(code: string): Promise<number>;
  /** A system account's balance exactly, as a decimal string. */
  systemBalanceExact(code: string): Promise<string>;
}

const refKey = (ref: AccountRef) =>
  'wallet' in ref ? `wallet:${ref.wallet}` : `system:${ref.system}`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The canonical (lower-case) form of a customer id, as PostgreSQL prints uuids. Anything that
 * is not a uuid cannot name a wallet: a final refusal, not a database error to retry.
 */
export function normaliseCustomerId(customerId: string): string {
  if (typeof customerId !== 'string' || !UUID.test(customerId)) {
    throw new BusinessError(
      'account_not_found',
      `no wallet for customer ${JSON.stringify(String(customerId)).slice(0, 80)}: not a customer id`,
      { customerId: String(customerId).slice(0, 80) },
    );
  }
  return customerId.toLowerCase();
}

const normaliseRef = (ref: AccountRef): AccountRef =>
  'wallet' in ref ? { wallet: normaliseCustomerId(ref.wallet) } : ref;

/** The JS number kept alongside exact balances for compatibility; rounded beyond 2^53. */
function balanceNumber(exact: string): number {
  return Number(exact);
}

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
    if ((line.credit || line.debit) && !('wallet' in line.account)) {
      fail(`only wallet lines draw from or create grants (${key})`);
    }
    if (line.credit && line.amount < 0) fail(`a debit of ${key} cannot create a grant`);
    if (line.debit && line.amount > 0) fail(`a credit to ${key} cannot draw from grants`);
    if (line.credit && 'grant' in line.credit)
      validateNewGrant(line.credit.grant, input.idempotencyKey);
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

/** An account row as the posting transaction expects to find it. */
interface ResolvedAccount {
  id: number;
  kind: 'wallet' | 'system';
  /** The wallet's customer, or the system account's code. */
  owner: string;
}

/** A cached account id no longer names the account it was cached for (accounts re-seeded). */
class StaleAccount extends Error {
  constructor(readonly account: AccountRef) {
    super(`account ${refKey(account)} is not where the cache said`);
  }
}

/** How often a posting re-resolves its accounts after finding a cached id stale. */
const STALE_ACCOUNT_RETRIES = 1;

/**
 * The posting transaction's isolation level, pinned so a database or role default of
 * REPEATABLE READ or SERIALIZABLE cannot turn a refusal or a replay into a serialization error.
 */
const POSTING_ISOLATION = 'isolation level read committed';

/**
 * Runs after a first-time posting has committed (never for a replay), off the money path: the
 * posting has already returned when it runs, and whatever it throws is reported to `onError`
 * and goes no further. Alert rules hang here.
 */
export type AfterCommit = (entry: PostedEntry, input: PostEntryInput) => Promise<void> | void;

/** Times postings by entry type and outcome; the worker passes its Prometheus histogram. */
export interface LedgerLatencyObserver {
  observe(
    labels: { type: string; status: 'posted' | 'replayed' | 'refused' },
    seconds: number,
  ): void;
}

export interface LedgerOptions {
  afterCommit?: AfterCommit | undefined;
  /**
   * How a posting reaches the database. `function` (the default): one call of the
   * ledger_post_entry SQL function whenever the entry allows it, else the statements;
   * `statements`: always the multi-statement transaction (kept for comparison in the benchmark).
   */
  path?: 'function' | 'statements' | undefined;
  /** Told how long each postEntry took, from the call to its answer (retries included). */
  latency?: LedgerLatencyObserver | undefined;
  /** Told when an afterCommit hook fails; the posting it followed stays committed. */
  onAfterCommitError?: ((err: unknown, entry: PostedEntry) => void) | undefined;
}

/** An entry as ledger_read_entry answers it (jsonb). */
interface RecordedEntry {
  entryId: number | string;
  createdAt: string;
  type: string;
  contentHash: string;
  lines: Array<{
    accountId: number | string;
    kind: 'wallet' | 'system';
    customerId: string | null;
    code: string;
    amount: number | string;
    balanceAfter: string;
  }>;
  grants: RecordedShare[];
}

interface RecordedShare {
  grantId: string;
  customerId: string;
  amount: number | string;
  kind: GrantPostingKind;
}

/** One posting line as ledger_post_entry takes it (see drizzle/0011_ledger_post_function.sql). */
interface FunctionLine {
  /** The line's place in the caller's entry. */
  i: number;
  a: number;
  k: 'wallet' | 'system';
  o: string;
  n: number;
  prefer?: string[];
  g?: {
    id?: string;
    category: string;
    source: string;
    priority?: number;
    effectiveAt?: string;
    expiresAt?: string;
    reason?: string;
    metadata?: Record<string, unknown>;
  };
}

/** What ledger_post_entry answers. */
type FunctionResult =
  | {
      status: 'posted';
      entryId: number | string;
      createdAt: string;
      lines: Array<{ accountId: number | string; amount: number | string; balanceAfter: string }>;
      grants: RecordedShare[];
    }
  | ({ status: 'exists' } & RecordedEntry)
  | { status: 'retry' | 'watched' };

type FunctionOutcome =
  | { status: 'posted'; entry: PostedEntry }
  | { status: 'exists'; existing: { entry: PostedEntry; contentHash: string } }
  /** retry: the key's first writer rolled back meanwhile; statements: take the statement path. */
  | { status: 'retry' | 'statements' };

/** SQLSTATEs ledger_post_entry raises its refusals with. */
const FUNCTION_REFUSALS = {
  grantsShort: 'LD001',
  walletShort: 'LD002',
  staleAccount: 'LD003',
  stepClosed: 'LD004',
  needsReadCommitted: 'LD005',
} as const;

/**
 * Whether one ledger_post_entry call can post the entry (with an afterPost hook: the call and
 * the hook in one transaction). Draws from one named grant and gives back to the grants of an
 * earlier draw (returnTo, with its breakage) stay in the statements.
 */
function functionCanPost(input: PostEntryInput): boolean {
  return input.lines.every((line) =>
    line.amount < 0 ? !line.debit?.only : !line.credit || 'grant' in line.credit,
  );
}

const isoText = (value: Date | string) =>
  (value instanceof Date ? value : new Date(value)).toISOString();

function shareOf(row: RecordedShare): GrantShare {
  return {
    grantId: row.grantId,
    customerId: row.customerId,
    amount: Number(row.amount),
    kind: row.kind,
  };
}

/** An entry as recorded, as the replay of its key answers it. */
function recordedAsPosted(
  idempotencyKey: string,
  recorded: RecordedEntry,
): { entry: PostedEntry; contentHash: string } {
  return {
    contentHash: recorded.contentHash,
    entry: {
      entryId: Number(recorded.entryId),
      idempotencyKey,
      type: recorded.type,
      createdAt: toDate(recorded.createdAt),
      replayed: true,
      grants: recorded.grants.map(shareOf),
      lines: recorded.lines.map((r) => ({
        account: r.kind === 'wallet' ? { wallet: r.customerId! } : { system: r.code },
        accountId: Number(r.accountId),
        amount: Number(r.amount),
        balanceAfter: balanceNumber(r.balanceAfter),
        balanceAfterExact: r.balanceAfter,
      })),
    },
  };
}

/** The JSON detail a ledger_post_entry refusal carries. */
function refusalDetail(err: unknown): Record<string, string | number | null> {
  const detail = (err as { detail?: unknown }).detail;
  try {
    return typeof detail === 'string' ? (JSON.parse(detail) as Record<string, string>) : {};
  } catch {
    return {};
  }
}

/** Creates the ledger over a postgres.js pool; caches account ids and checks them in each posting. */
export function createLedger(
  sql: Sql,
  observer?: LedgerObserver,
  options: LedgerOptions = {},
): Ledger {
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

  /** Forgets what the cache holds about an account, so the next resolve reads it afresh. */
  function forget(account: AccountRef): void {
    if ('wallet' in account) walletIds.delete(account.wallet);
    else systemShards = undefined;
  }

  async function resolveAccounts(input: PostEntryInput): Promise<ResolvedAccount[]> {
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
    const resolved: ResolvedAccount[] = [];
    for (const { account } of input.lines) {
      if ('wallet' in account) {
        const id = walletIds.get(account.wallet);
        if (id === undefined) {
          throw new BusinessError('account_not_found', `no wallet for customer ${account.wallet}`, {
            customerId: account.wallet,
          });
        }
        resolved.push({ id, kind: 'wallet', owner: account.wallet });
      } else {
        if (!shards.has(account.system)) {
          systemShards = undefined; // a system account added since the cache was filled
          shards = await loadSystemShards();
        }
        const list = shards.get(account.system);
        if (!list || list.length === 0) {
          throw new BusinessError('account_not_found', `no system account ${account.system}`);
        }
        const id = list[shardOf(input.idempotencyKey, list.length)]!;
        resolved.push({ id, kind: 'system', owner: account.system });
      }
    }
    return resolved;
  }

  async function readPosted(idempotencyKey: string) {
    const [row] = await sql<{ entry: RecordedEntry | null }[]>`
      select ledger_read_entry(${idempotencyKey}) as entry`;
    return row?.entry ? recordedAsPosted(idempotencyKey, row.entry) : undefined;
  }

  /** Set once the database's default isolation is not READ COMMITTED: calls then pin it. */
  let pinReadCommitted = false;

  /** The whole posting in one round trip: one call of ledger_post_entry. */
  async function postWithFunction(
    input: PostEntryInput,
    hash: string,
    accounts: ResolvedAccount[],
    afterPost?: AfterPost,
  ): Promise<FunctionOutcome> {
    const lines: FunctionLine[] = [];
    for (const [i, line] of input.lines.entries()) {
      const account = accounts[i]!;
      const wire: FunctionLine = {
        i,
        a: account.id,
        k: account.kind,
        o: account.owner,
        n: line.amount,
      };
      if (account.kind === 'wallet' && line.amount < 0 && line.debit?.prefer?.length) {
        wire.prefer = line.debit.prefer;
      }
      if (account.kind === 'wallet' && line.amount > 0) {
        const grant =
          line.credit && 'grant' in line.credit ? line.credit.grant : defaultGrantFor(input.type);
        try {
          validateNewGrant(grant, input.idempotencyKey, true);
        } catch {
          // Refused if it is new, answered if it is a replay: the statements tell which.
          return { status: 'statements' };
        }
        wire.g = {
          ...(grant.id ? { id: grant.id } : {}),
          category: grant.category,
          source: grant.source,
          ...(grant.priority !== undefined ? { priority: grant.priority } : {}),
          ...(grant.effectiveAt ? { effectiveAt: isoText(grant.effectiveAt) } : {}),
          ...(grant.expiresAt ? { expiresAt: isoText(grant.expiresAt) } : {}),
          ...(grant.reason ? { reason: grant.reason } : {}),
          ...(grant.metadata ? { metadata: grant.metadata } : {}),
        };
      }
      lines.push(wire);
    }
    const args = [
      input.idempotencyKey,
      hash,
      input.type,
      input.description,
      input.workflowId ?? null,
      JSON.stringify(input.metadata ?? {}),
      input.fence ?? null,
      JSON.stringify(lines),
    ];
    const text =
      'select ledger_post_entry($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8::text::jsonb) as r';
    if (afterPost) {
      // The caller's writes commit with the posting: the call and the hook share a transaction.
      try {
        return await sql.begin(POSTING_ISOLATION, async (tx) => {
          const rows = await tx.unsafe<{ r: FunctionResult }[]>(text, args, { prepare: true });
          const outcome = outcomeOf(rows[0]!.r, input, accounts);
          if (outcome.status === 'posted') await afterPost(tx, outcome.entry);
          return outcome;
        });
      } catch (err) {
        throw functionRefusal(err, input);
      }
    }
    let result: FunctionResult;
    const pinned = pinReadCommitted;
    try {
      const rows = pinned
        ? await sql.begin(POSTING_ISOLATION, (tx) =>
            tx.unsafe<{ r: FunctionResult }[]>(text, args, { prepare: true }),
          )
        : await sql.unsafe<{ r: FunctionResult }[]>(text, args, { prepare: true });
      result = rows[0]!.r;
    } catch (err) {
      const code = sqlState(err);
      if (code === FUNCTION_REFUSALS.needsReadCommitted && !pinned) {
        pinReadCommitted = true;
        return postWithFunction(input, hash, accounts);
      }
      throw functionRefusal(err, input);
    }
    return outcomeOf(result, input, accounts);
  }

  /** What ledger_post_entry answered, as the ledger's own result. */
  function outcomeOf(
    result: FunctionResult,
    input: PostEntryInput,
    accounts: ResolvedAccount[],
  ): FunctionOutcome {
    if (result.status === 'posted') {
      const byId = new Map(result.lines.map((l) => [Number(l.accountId), l]));
      const entry: PostedEntry = {
        entryId: Number(result.entryId),
        idempotencyKey: input.idempotencyKey,
        type: input.type,
        createdAt: toDate(result.createdAt),
        replayed: false,
        lines: input.lines.map((line, i) => {
          const accountId = accounts[i]!.id;
          const posted = byId.get(accountId)!;
          return {
            account: line.account,
            accountId,
            amount: Number(posted.amount),
            balanceAfter: balanceNumber(posted.balanceAfter),
            balanceAfterExact: posted.balanceAfter,
          };
        }),
        grants: result.grants.map(shareOf),
      };
      return { status: 'posted', entry };
    }
    if (result.status === 'exists') {
      return { status: 'exists', existing: recordedAsPosted(input.idempotencyKey, result) };
    }
    return { status: result.status === 'retry' ? 'retry' : 'statements' };
  }

  /** A refusal raised by ledger_post_entry, as the same error the statements would throw. */
  function functionRefusal(err: unknown, input: PostEntryInput): unknown {
    const code = sqlState(err);
    const detail = refusalDetail(err);
    if (code === FUNCTION_REFUSALS.grantsShort) {
      const available = BigInt(detail['available'] ?? 0);
      const need = BigInt(detail['required'] ?? 0);
      return insufficientSpendable(available, need);
    }
    if (code === FUNCTION_REFUSALS.walletShort) {
      const balance = BigInt(detail['balance'] ?? 0);
      const required = BigInt(detail['required'] ?? 0);
      return insufficientBalance(balance, required);
    }
    if (code === FUNCTION_REFUSALS.staleAccount) return new StaleAccount(input.lines[0]!.account);
    if (code === FUNCTION_REFUSALS.stepClosed) {
      const closedBy = detail['closedBy'];
      return new StepClosed(input.fence!, typeof closedBy === 'string' ? closedBy : null);
    }
    return err;
  }

  async function postEntry(input: PostEntryInput, afterPost?: AfterPost): Promise<PostedEntry> {
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    try {
      const result = await post(input, afterPost);
      const status = result.replayed ? 'replayed' : 'posted';
      options.latency?.observe({ type: input.type, status }, seconds());
      observer?.inc({ type: input.type, status });
      if (!result.replayed) runAfterCommit(result, input);
      return result;
    } catch (err) {
      if (err instanceof BusinessError) {
        options.latency?.observe({ type: input.type, status: 'refused' }, seconds());
        observer?.inc({ type: input.type, status: 'refused' });
      }
      throw err;
    }
  }

  /** Starts the afterCommit hook without waiting for it; its failure never reaches the caller. */
  function runAfterCommit(entry: PostedEntry, input: PostEntryInput): void {
    const hook = options.afterCommit;
    if (!hook) return;
    const report = (err: unknown) => {
      try {
        options.onAfterCommitError?.(err, entry);
      } catch {
        // Reporting the failure failed too; the posting is committed either way.
      }
    };
    setImmediate(() => {
      try {
        Promise.resolve(hook(entry, input)).catch(report);
      } catch (err) {
        report(err);
      }
    });
  }

  async function post(
    raw: PostEntryInput,
    afterPost?: AfterPost,
    staleRetries = STALE_ACCOUNT_RETRIES,
  ): Promise<PostedEntry> {
    const input = {
      ...raw,
      lines: raw.lines.map((l) => ({ ...l, account: normaliseRef(l.account) })),
    };
    validate(input);
    const hash = contentHash(input);
    const accounts = await resolveAccounts(input);

    if (options.path !== 'statements' && functionCanPost(input)) {
      let outcome: FunctionOutcome;
      try {
        outcome = await postWithFunction(input, hash, accounts, afterPost);
      } catch (err) {
        if (err instanceof StaleAccount) {
          for (const line of input.lines) forget(line.account);
          if (staleRetries > 0) return post(input, afterPost, staleRetries - 1);
          throw new BusinessError('account_not_found', `no account ${refKey(err.account)}`, {
            account: err.account,
          });
        }
        throw refusalFor(err, input);
      }
      if (outcome.status === 'posted') return outcome.entry;
      if (outcome.status === 'exists') return replayOf(input, hash, outcome.existing);
      if (outcome.status === 'retry') return post(input, afterPost, staleRetries);
      // 'watched': the wallet's watchers run in the statement path below.
    }

    let posted: PostedEntry | undefined;
    try {
      posted = await sql.begin(POSTING_ISOLATION, (tx) =>
        postInTransaction(tx, input, hash, accounts, afterPost),
      );
    } catch (err) {
      if (err instanceof StaleAccount) {
        forget(err.account);
        if (staleRetries > 0) return post(input, afterPost, staleRetries - 1);
        throw new BusinessError('account_not_found', `no account ${refKey(err.account)}`, {
          account: err.account,
        });
      }
      throw refusalFor(err, input);
    }
    if (posted) return posted;

    const existing = await readPosted(input.idempotencyKey);
    if (!existing) {
      // The conflicting insert rolled back between our two statements: post afresh.
      return post(input, afterPost, staleRetries);
    }
    return replayOf(input, hash, existing);
  }

  /** The answer to a key already posted: the first result, or a conflict when the content differs. */
  async function replayOf(
    input: PostEntryInput,
    hash: string,
    existing: { entry: PostedEntry; contentHash: string },
  ): Promise<PostedEntry> {
    if (existing.contentHash !== hash) {
      throw new BusinessError(
        'idempotency_conflict',
        `idempotency key ${input.idempotencyKey} was already used for a different entry`,
        { idempotencyKey: input.idempotencyKey, entryId: existing.entry.entryId },
      );
    }
    // Same content: the first result, with lines in the caller's order, then any the ledger
    // added (breakage); a wallet line wholly turned to breakage reads as a move of zero.
    const byRef = new Map(existing.entry.lines.map((l) => [refKey(l.account), l]));
    const asked = new Set(input.lines.map((l) => refKey(l.account)));
    const lines: PostedLine[] = [];
    for (const l of input.lines) {
      const found = byRef.get(refKey(l.account));
      if (found) {
        lines.push(found);
        continue;
      }
      const exact =
        'wallet' in l.account
          ? await walletBalanceExact(l.account.wallet)
          : await systemBalanceExact(l.account.system);
      lines.push({
        account: l.account,
        accountId: 0,
        amount: 0,
        balanceAfter: balanceNumber(exact),
        balanceAfterExact: exact,
      });
    }
    for (const l of existing.entry.lines) if (!asked.has(refKey(l.account))) lines.push(l);
    return { ...existing.entry, lines };
  }

  /**
   * One posting, inside its transaction: the entry (or nothing, when the key is taken), each
   * account's balance moved in id order, the postings with exactly the balances the database
   * computed, then the caller's own writes. Returns undefined when the key was already posted.
   */
  async function postInTransaction(
    tx: Tx,
    input: PostEntryInput,
    hash: string,
    accounts: ResolvedAccount[],
    afterPost?: AfterPost,
  ): Promise<PostedEntry | undefined> {
    if (input.fence) await assertFenceOpen(tx, input.fence);
    const entry = await insertEntry(tx, input, hash);
    if (!entry) return undefined; // already posted (perhaps by a concurrent retry)
    const entryId = Number(entry.id);

    // Wallets first, in id order: their row locks serialise every writer of their grants.
    const walletLines = input.lines
      .map((line, i) => ({ line, account: accounts[i]! }))
      .filter((l) => l.account.kind === 'wallet')
      .sort((a, b) => a.account.id - b.account.id);
    const walletBalances = new Map<number, string>();
    if (walletLines.length > 0) {
      const locked = await tx<{ id: string; balance: string }[]>`
        select id, balance::text from accounts
        where id = any(${walletLines.map((l) => l.account.id)}::bigint[]) and kind = 'wallet'
        order by id for update`;
      for (const row of locked) walletBalances.set(Number(row.id), row.balance);
    }
    const splits = new Map<number, WalletSplit>();
    for (const { line, account } of walletLines) {
      if (!walletBalances.has(account.id)) throw new StaleAccount(line.account);
      const split =
        line.amount < 0
          ? await drawFromGrants(tx, {
              customerId: account.owner,
              amount: line.amount,
              entryId,
              type: input.type,
              ...(line.debit ? { debit: line.debit } : {}),
            })
          : await creditToGrants(tx, {
              customerId: account.owner,
              amount: line.amount,
              entryId,
              type: input.type,
              idempotencyKey: input.idempotencyKey,
              ...(line.credit ? { credit: line.credit } : {}),
            });
      splits.set(account.id, split);
    }

    // A returned share whose grant closed goes to breakage instead of the wallet.
    const moves = input.lines.map((line, i) => {
      const account = accounts[i]!;
      const breakage = splits.get(account.id)?.breakage ?? 0;
      return { line: { ...line, amount: line.amount - breakage }, account };
    });
    const breakage = [...splits.values()].reduce((sum, s) => sum + s.breakage, 0);
    if (breakage > 0) {
      const [extra] = await resolveAccounts({
        ...input,
        lines: [{ account: { system: 'breakage' }, amount: breakage }],
      });
      if (moves.some((m) => m.account.kind === 'system' && m.account.owner === 'breakage')) {
        throw new BusinessError(
          'invalid_posting',
          'an entry that posts to breakage cannot also give back to closed grants',
          { idempotencyKey: input.idempotencyKey },
        );
      }
      moves.push({ line: { account: { system: 'breakage' }, amount: breakage }, account: extra! });
    }

    // Lock and update accounts in ascending id order so concurrent postings never deadlock.
    const order = moves
      .filter((m) => m.line.amount !== 0)
      .sort((a, b) => a.account.id - b.account.id);
    const lines: PostedLine[] = [];
    for (const { line, account } of order) {
      const balanceAfter = await moveBalance(tx, line, account);
      lines.push({
        account: line.account,
        accountId: account.id,
        amount: line.amount,
        balanceAfter: balanceNumber(balanceAfter),
        balanceAfterExact: balanceAfter,
      });
    }
    await tx`
      insert into postings ${tx(
        lines.map((l) => ({
          entry_id: entry.id,
          account_id: l.accountId,
          amount: l.amount,
          balance_after: l.balanceAfterExact,
        })),
      )}`;
    // Report lines in the caller's order (a wallet line wholly turned to breakage moved nothing).
    const byAccount = new Map(lines.map((l) => [l.accountId, l]));
    const unmoved = (m: (typeof moves)[number]): PostedLine => {
      const exact = walletBalances.get(m.account.id) ?? '0';
      return {
        account: m.line.account,
        accountId: m.account.id,
        amount: 0,
        balanceAfter: balanceNumber(exact),
        balanceAfterExact: exact,
      };
    };
    const result: PostedEntry = {
      entryId,
      idempotencyKey: input.idempotencyKey,
      type: input.type,
      createdAt: toDate(entry.created_at),
      replayed: false,
      lines: moves.map((m) => byAccount.get(m.account.id) ?? unmoved(m)),
      grants: [...splits.values()].flatMap((s) => s.shares),
    };

    const walletMoves: WalletMove[] = walletLines.map(({ line, account }) => {
      const split = splits.get(account.id)!;
      return {
        customerId: account.owner,
        entryId,
        idempotencyKey: input.idempotencyKey,
        type: input.type,
        amount: line.amount - split.breakage,
        ...(split.availableAfter !== undefined ? { availableAfter: split.availableAfter } : {}),
      };
    });
    if (walletMoves.length > 0) await onWalletMoved(tx, walletMoves);
    if (afterPost) await afterPost(tx, result);
    return result;
  }

  async function insertEntry(tx: Tx, input: PostEntryInput, hash: string) {
    const [entry] = await tx<{ id: string; created_at: Date | string }[]>`
      insert into entries (idempotency_key, content_hash, type, description, workflow_id, metadata)
      values (${input.idempotencyKey}, ${hash}, ${input.type}, ${input.description},
              ${input.workflowId ?? null}, ${JSON.stringify(input.metadata ?? {})}::jsonb)
      on conflict (idempotency_key) do nothing
      returning id, created_at`;
    return entry;
  }

  /**
   * Moves one account's balance and returns the new balance exactly (a decimal string). The row
   * must still be the account the id was cached for; a wallet never goes below zero.
   */
  async function moveBalance(tx: Tx, line: PostingLine, account: ResolvedAccount): Promise<string> {
    const owner =
      account.kind === 'wallet'
        ? tx`customer_id = ${account.owner}::uuid`
        : tx`code = ${account.owner}`;
    const [row] = await tx<{ balance: string }[]>`
      update accounts set balance = balance + ${line.amount}, updated_at = now()
      where id = ${account.id} and kind = ${account.kind} and ${owner}
        and (kind <> 'wallet' or balance + ${line.amount} >= 0)
      returning balance`;
    if (row) return row.balance;
    const [current] = await tx<{ balance: string }[]>`
      select balance from accounts where id = ${account.id} and kind = ${account.kind} and ${owner}`;
    if (!current) throw new StaleAccount(line.account);
    const balance = BigInt(current.balance);
    const required = BigInt(-line.amount);
    throw insufficientBalance(balance, required);
  }

  async function walletBalanceExact(customerId: string): Promise<string> {
    const id = normaliseCustomerId(customerId);
    const [row] = await sql<{ balance: string }[]>`
      select balance from accounts where kind = 'wallet' and customer_id = ${id}::uuid`;
    if (!row) {
      throw new BusinessError('account_not_found', `no wallet for customer ${id}`, {
        customerId: id,
      });
    }
    return row.balance;
  }

  async function systemBalanceExact(code: string): Promise<string> {
    const [row] = await sql<{ balance: string | null }[]>`
      select sum(balance)::text as balance from accounts where kind = 'system' and code = ${code}`;
    return row?.balance ?? '0';
  }

  async function closeGrant(input: CloseGrantInput, afterPost?: AfterPost): Promise<ClosedGrant> {
    const [found] = await sql<{ customer_id: string }[]>`
      select customer_id from grants where id = ${input.grantId}::uuid`;
    if (!found) {
      throw new BusinessError('grant_not_found', `no grant ${input.grantId}`, {
        grantId: input.grantId,
      });
    }
    const customerId = found.customer_id;
    const type = input.kind === 'expiry' ? 'grant_expiry' : 'grant_void';
    const idempotencyKey = `grant-${input.kind}:${input.grantId}`;
    const shape = (amount: number): PostEntryInput => ({
      idempotencyKey,
      type,
      description:
        input.kind === 'expiry'
          ? `grant ${input.grantId} expired`
          : `grant ${input.grantId} voided${input.reason ? `: ${input.reason}` : ''}`,
      workflowId: input.workflowId ?? null,
      metadata: { grantId: input.grantId, ...(input.reason ? { reason: input.reason } : {}) },
      lines: [
        { account: { wallet: customerId }, amount: -amount, debit: { only: input.grantId } },
        { account: { system: 'breakage' }, amount },
      ],
    });
    const accounts = await resolveAccounts(shape(1));
    const status: ClosedGrant['status'] = input.kind === 'expiry' ? 'expired' : 'voided';
    const result = await sql.begin(POSTING_ISOLATION, async (tx) => {
      await tx`select id from accounts where id = ${accounts[0]!.id} for update`;
      const [grant] = await tx<
        { remaining: string; status: string; expires_at: Date | null; closed_at: Date | null }[]
      >`select remaining::text, status, expires_at, closed_at from grants
        where id = ${input.grantId}::uuid for update`;
      if (!grant) throw new BusinessError('grant_not_found', `no grant ${input.grantId}`);
      if (grant.status !== 'open') {
        return {
          status: grant.status as ClosedGrant['status'],
          credits: 0,
          closedAt: toDate(grant.closed_at!),
          closedNow: false,
        };
      }
      if (input.kind === 'expiry' && !grant.expires_at) {
        throw new BusinessError('grant_does_not_expire', `grant ${input.grantId} has no expiry`, {
          grantId: input.grantId,
        });
      }
      const remaining = Number(grant.remaining);
      let entry: PostedEntry | undefined;
      if (remaining > 0) {
        const posting = shape(remaining);
        validate(posting);
        entry = await postInTransaction(tx, posting, contentHash(posting), accounts, afterPost);
        if (!entry) {
          throw new Error(`grant ${input.grantId} is open but ${idempotencyKey} was posted`);
        }
      }
      const [closed] = await tx<{ closed_at: Date | string }[]>`
        update grants set status = ${status}, closed_at = now(), updated_at = now(),
          metadata = metadata || ${JSON.stringify(input.reason ? { closeReason: input.reason } : {})}::jsonb
        where id = ${input.grantId}::uuid returning closed_at`;
      return {
        status,
        credits: remaining,
        closedAt: toDate(closed!.closed_at),
        closedNow: true,
        ...(entry ? { entry } : {}),
      };
    });
    if (result.entry) {
      observer?.inc({ type, status: 'posted' });
      runAfterCommit(result.entry, shape(result.credits));
    }
    return { grantId: input.grantId, customerId, ...result };
  }

  return {
    postEntry,
    closeGrant,
    walletBalance: async (customerId) => balanceNumber(await walletBalanceExact(customerId)),
    walletBalanceExact,
    systemBalance: async (code) => balanceNumber(await systemBalanceExact(code)),
    systemBalanceExact,
  };
}

/**
 * How a balance crosses the API: a JSON number while it is a safe integer (|n| <= 2^53 - 1),
 * else its decimal string, so no client ever reads a rounded balance.
 */
export function jsonBalance(exact: string | bigint): number | string {
  return jsonSafe(BigInt(exact));
}

/** A number where it is exact, else the decimal string, for error details and JSON bodies. */
export function jsonSafe(value: bigint): number | string {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(value)
    : value.toString();
}

/**
 * A database error inside a posting, as the caller should see it: an overflowing balance and
 * every other permanent database error (bad text, a missing reference, a broken check) are
 * final refusals; anything else (deadlock, lost connection) stays an error worth retrying.
 */
function refusalFor(err: unknown, input: PostEntryInput): unknown {
  if (sqlState(err) === '22003') {
    return new BusinessError(
      'balance_out_of_range',
      `entry ${input.idempotencyKey} would take a balance beyond what the ledger can hold`,
      { idempotencyKey: input.idempotencyKey },
    );
  }
  return toBusinessErrorIfPermanent(err, { idempotencyKey: input.idempotencyKey });
}

/** The refusal when a wallet's balance is less than a debit needs. */
function insufficientBalance(balance: bigint, required: bigint): BusinessError {
  return new BusinessError(
    'insufficient_credits',
    `insufficient credits: the wallet holds ${balance}, this needs ${required} (short by ${required - balance})`,
    {
      balance: jsonSafe(balance),
      required: jsonSafe(required),
      shortfall: jsonSafe(required - balance),
    },
  );
}
