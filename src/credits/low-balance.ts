// Low-balance alerts: one notification per crossing below a threshold, re-armed above it.
import type { Tx } from '../ledger/ledger.js';
import type { SettingsRow, WalletMove } from './watch.js';

/** Inside the posting transaction: notifies (outbox) once per threshold crossed, re-arms risen ones. */
export async function lowBalanceOnMove(
  _tx: Tx,
  _settings: SettingsRow,
  _move: WalletMove,
  _availableAfter: bigint,
): Promise<void> {
  // Not built yet.
}
