// What the posting transaction tells the wallet's watchers (low-balance alerts, auto top-up)
// after a wallet moved: one read finds whether anyone watches the wallet at all.
import { spendable } from '../ledger/grants.js';
import type { Tx } from '../ledger/ledger.js';
import { autoTopupOnMove } from './auto-topup-trigger.js';
import { lowBalanceOnMove } from './low-balance.js';

export interface WalletMove {
  customerId: string;
  entryId: number;
  idempotencyKey: string;
  type: string;
  /** What the wallet posting moved (signed). */
  amount: number;
  /** Spendable credits after the move, when the posting already knows them. */
  availableAfter?: bigint;
}

/** A watcher's settings row as `to_jsonb` gives it (snake_case columns). */
export type SettingsRow = Record<string, unknown>;

/** Inside the posting transaction, after every balance moved: crossings are decided here. */
export async function onWalletMoved(tx: Tx, moves: WalletMove[]): Promise<void> {
  const ids = [...new Set(moves.map((m) => m.customerId))];
  const rows = await tx<{ customer_id: string; watcher: string; settings: SettingsRow }[]>`
    select customer_id, 'low_balance' as watcher, to_jsonb(l) as settings
    from low_balance_alerts l where customer_id = any(${ids}::uuid[])
    union all
    select customer_id, 'auto_topup' as watcher, to_jsonb(a) as settings
    from auto_topup_settings a where customer_id = any(${ids}::uuid[]) and enabled`;
  if (rows.length === 0) return;
  const available = new Map<string, bigint>();
  const availableFor = async (move: WalletMove) => {
    if (move.availableAfter !== undefined) return move.availableAfter;
    let value = available.get(move.customerId);
    if (value === undefined) {
      value = await spendable(tx, move.customerId);
      available.set(move.customerId, value);
    }
    return value;
  };
  for (const move of moves) {
    for (const row of rows.filter((r) => r.customer_id === move.customerId)) {
      const after = await availableFor(move);
      if (row.watcher === 'low_balance') await lowBalanceOnMove(tx, row.settings, move, after);
      else await autoTopupOnMove(tx, row.settings, move, after);
    }
  }
}
