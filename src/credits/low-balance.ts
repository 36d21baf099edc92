// Low-balance alerts: one notification per crossing below a threshold, re-armed above it.
//
// A threshold t is armed exactly while the available (spendable) balance is at or above t. A
// posting that takes the balance from at-or-above t to below it is a crossing: t is disarmed and
// the customer is told once. Further debits while below change nothing; a credit that brings the
// balance back to t or more re-arms it. Several thresholds crossed by one posting make one
// message, naming the lowest of them (the others are in its data): one posting, one alert.
//
// The row is read by watch.ts after the posting locked the wallet row, and PUT /v1/wallet/alerts
// takes that same lock, so the state seen here is the latest and no other writer can move it
// before this transaction commits: concurrent debits on a wallet cross one at a time.
import type { Tx } from '../ledger/ledger.js';
import { lowBalance } from '../notifications/messages.js';
import { enqueueMessage } from '../notifications/outbox.js';
import type { SettingsRow, WalletMove } from './watch.js';

/** The thresholds armed for an available balance: those it is at or above. */
export function armedFor(thresholds: readonly number[], available: bigint): number[] {
  return thresholds.filter((t) => available >= BigInt(t));
}

const sameMembers = (list: number[], set: Set<number>) =>
  list.length === set.size && list.every((t) => set.has(t));

const numbers = (value: unknown): number[] =>
  Array.isArray(value) ? value.map((v) => Number(v)) : [];

/** Inside the posting transaction: notifies (outbox) once per threshold crossed, re-arms risen ones. */
export async function lowBalanceOnMove(
  tx: Tx,
  settings: SettingsRow,
  move: WalletMove,
  availableAfter: bigint,
): Promise<void> {
  const thresholds = numbers(settings['thresholds']);
  const armed = new Set(numbers(settings['armed']));
  // A burn-down debit knows exactly what was spendable before it. A threshold it starts at or
  // above is live even if the row says otherwise: credits can become spendable without a posting
  // (a future-dated grant reaching its effectiveAt), and that rise re-arms no row.
  const before =
    move.amount < 0 && move.availableAfter !== undefined
      ? availableAfter - BigInt(move.amount)
      : undefined;
  const live = (t: number) => armed.has(t) || (before !== undefined && before >= BigInt(t));
  const nowArmed = armedFor(thresholds, availableAfter);
  const crossed = thresholds.filter((t) => live(t) && availableAfter < BigInt(t));
  // Almost every posting ends here, without a statement: nothing crossed, nothing to re-arm.
  if (crossed.length === 0 && sameMembers(nowArmed, armed)) return;
  const [row] = await tx<{ crossings: string }[]>`
    update low_balance_alerts
    set armed = ${nowArmed}::bigint[], crossings = crossings + ${crossed.length > 0 ? 1 : 0},
        updated_at = now()
    where customer_id = ${move.customerId}::uuid
    returning crossings::text`;
  if (!row || crossed.length === 0) return;
  await enqueueMessage(
    tx,
    { taskQueue: String(settings['task_queue']), entryId: move.entryId },
    lowBalance({
      customerId: move.customerId,
      crossing: Number(row.crossings),
      crossed,
      available: availableAfter,
    }),
  );
}
