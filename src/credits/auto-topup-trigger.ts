// Auto top-up's trigger: a crossing below the threshold requests one charge, in the posting
// transaction, so no crossing is missed or charged twice.
import type { Tx } from '../ledger/ledger.js';
import type { SettingsRow, WalletMove } from './watch.js';

/** The id of the charge one crossing requests: also the stem of its Stripe idempotency key. */
export const autoTopupChargeId = (customerId: string, crossing: number | bigint) =>
  `auto-topup:${customerId}:${crossing}`;

/**
 * One statement: when the settings are enabled, not paused, armed and the available balance is
 * below the threshold, disarms them, counts the crossing and records one `requested` charge of the
 * pack the customer agreed to. Concurrent callers serialise on the settings row (and, in a posting,
 * on the wallet row before it), so one crossing requests one charge. Returns the charge id, if any.
 */
export async function requestAutoTopupCharge(
  tx: Tx,
  customerId: string,
  availableAfter: bigint,
): Promise<string | undefined> {
  const [row] = await tx<{ id: string }[]>`
    with crossed as (
      update auto_topup_settings
      set armed = false, crossings = crossings + 1, updated_at = now()
      where customer_id = ${customerId} and enabled and armed and paused_at is null
        and threshold > ${availableAfter.toString()}::numeric
      returning customer_id, crossings, pack, pack_credits, pack_amount, pack_currency,
                pack_expires_in_days, task_queue
    )
    insert into auto_topup_charges
      (id, customer_id, crossing, pack, credits, amount, currency, expires_in_days, task_queue)
    select 'auto-topup:' || customer_id || ':' || crossings, customer_id, crossings, pack,
           pack_credits, pack_amount, pack_currency, pack_expires_in_days, task_queue
    from crossed
    on conflict (id) do nothing
    returning id`;
  return row?.id;
}

/** Re-arms the settings once the available balance is back at or above the threshold. */
async function rearm(tx: Tx, customerId: string, availableAfter: bigint): Promise<void> {
  await tx`
    update auto_topup_settings set armed = true, updated_at = now()
    where customer_id = ${customerId} and not armed
      and threshold <= ${availableAfter.toString()}::numeric`;
}

/** Inside the posting transaction: disarms and records a charge request on a crossing. */
export async function autoTopupOnMove(
  tx: Tx,
  settings: SettingsRow,
  move: WalletMove,
  availableAfter: bigint,
): Promise<void> {
  // The row was read in this transaction after the wallet lock; the statements re-check it.
  const threshold = BigInt(String(settings['threshold']));
  const armed = settings['armed'] === true;
  const paused = settings['paused_at'] !== null && settings['paused_at'] !== undefined;
  if (availableAfter < threshold) {
    if (armed && !paused) await requestAutoTopupCharge(tx, move.customerId, availableAfter);
  } else if (!armed) {
    await rearm(tx, move.customerId, availableAfter);
  }
}
