// Auto top-up's trigger: a crossing below the threshold requests one charge, in the posting
// transaction, so no crossing is missed or charged twice.
import type { Tx } from '../ledger/ledger.js';
import type { SettingsRow, WalletMove } from './watch.js';

/** Inside the posting transaction: disarms and records a charge request on a crossing. */
export async function autoTopupOnMove(
  _tx: Tx,
  _settings: SettingsRow,
  _move: WalletMove,
  _availableAfter: bigint,
): Promise<void> {
  // Not built yet.
}
