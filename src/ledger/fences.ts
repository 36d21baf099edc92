// Fences between a forward step and the compensation that looks it up by key. Both lock the
// step's fence row first, so they cannot interleave: a compensation (or a final refusal) that
// finds no entry closes the fence in the same transaction, and a forward posting that comes
// later (an attempt that outlived its timeout) refuses instead of committing.
import type postgres from 'postgres';
import type { Sql } from '../db/client.js';

type Tx = postgres.TransactionSql;

/** The forward step's fence is closed: it must never post. Not retryable. */
export class StepClosed extends Error {
  constructor(
    readonly key: string,
    readonly closedBy: string | null,
  ) {
    super(
      `step ${key} was closed by ${closedBy ?? 'a compensation'}; an attempt that outlived its timeout cannot post it now`,
    );
    this.name = 'StepClosed';
  }
}

const REFUSAL = 'refusal:';

/** How a step closed by a final refusal marks its fence: `refusal:<code>`. */
export const refusalMark = (code: string) => `${REFUSAL}${code}`;

/**
 * The code of the refusal that closed the step, when `err` is an attempt meeting a fence an
 * earlier, refused attempt of the same step closed (its answer lost); undefined otherwise.
 */
export function recordedRefusal(err: unknown): string | undefined {
  return err instanceof StepClosed && err.closedBy?.startsWith(REFUSAL)
    ? err.closedBy.slice(REFUSAL.length)
    : undefined;
}

/** Locks the fence row for `key` (creating it open) until the transaction ends. */
export async function lockFence(
  tx: Tx,
  key: string,
): Promise<{ closed: boolean; closedBy: string | null }> {
  const [row] = await tx<{ closed_at: Date | string | null; closed_by: string | null }[]>`
    insert into step_fences (key) values (${key})
    on conflict (key) do update set key = excluded.key
    returning closed_at, closed_by`;
  return { closed: row?.closed_at != null, closedBy: row?.closed_by ?? null };
}

/** Inside a posting transaction: refuses when the step was closed by a compensation. */
export async function assertFenceOpen(tx: Tx, key: string): Promise<void> {
  const fence = await lockFence(tx, key);
  if (fence.closed) throw new StepClosed(key, fence.closedBy);
}

/**
 * Looks for the forward step's entry under the fence lock; when there is none, closes the fence
 * and runs `onClosed` in the same transaction. Answers which of the two it found.
 */
export async function closeUnlessPosted(
  sql: Sql,
  key: string,
  closedBy: string,
  onClosed?: (tx: Tx) => Promise<void>,
): Promise<{ posted: true; entryId: number } | { posted: false }> {
  // READ COMMITTED whatever the database default: the look-up after the lock must see a forward
  // posting that committed while this transaction waited for the lock.
  return sql.begin('isolation level read committed', async (tx) => {
    await lockFence(tx, key);
    const [entry] = await tx<{ id: string }[]>`
      select id from entries where idempotency_key = ${key}`;
    if (entry) return { posted: true as const, entryId: Number(entry.id) };
    await tx`
      update step_fences set closed_at = coalesce(closed_at, now()),
                             closed_by = coalesce(closed_by, ${closedBy})
      where key = ${key}`;
    await onClosed?.(tx);
    return { posted: false as const };
  });
}
