// Live wallet events: one LISTEN on wallet_events per API process, fanned out to the open
// streams of each customer, so no client is ever served by polling.
import type { Sql } from '../../db/client.js';
import type { Logger } from '../../logger.js';

export interface WalletEvent {
  customerId: string;
  /** A number while safe, else a decimal string (see the notify trigger). */
  balance: number | string;
  entry: { id: number; type: string; amount: number };
  at: string;
}

type Listener = (event: WalletEvent) => void;

export interface WalletEventHub {
  /** Resolves once the database connection is listening, so no event after it is missed. */
  subscribe(customerId: string, listener: Listener): Promise<() => void>;
  close(): Promise<void>;
}

export function createWalletEventHub(sql: Sql, logger: Logger): WalletEventHub {
  const listeners = new Map<string, Set<Listener>>();
  let listening: Promise<{ unlisten: () => Promise<void> }> | undefined;

  const onMessage = (payload: string) => {
    let event: WalletEvent;
    try {
      event = JSON.parse(payload) as WalletEvent;
    } catch (err) {
      logger.warn({ err }, 'unreadable wallet event');
      return;
    }
    for (const listener of listeners.get(event.customerId) ?? []) listener(event);
  };

  return {
    async subscribe(customerId, listener) {
      listening ??= sql.listen('wallet_events', onMessage);
      await listening;
      const set = listeners.get(customerId) ?? new Set();
      set.add(listener);
      listeners.set(customerId, set);
      return () => {
        set.delete(listener);
        if (set.size === 0) listeners.delete(customerId);
      };
    },
    async close() {
      if (listening) await (await listening).unlisten();
      listening = undefined;
      listeners.clear();
    },
  };
}

/** The open event streams one customer may hold per API process when nothing else is configured. */
export const DEFAULT_MAX_STREAMS_PER_CUSTOMER = 5;

/** The open event streams one API process holds in all when nothing else is configured. */
export const DEFAULT_MAX_STREAMS_PER_PROCESS = 1000;

/** Which cap refused a stream: the customer's own, or the whole process's. */
export type StreamRefusal = 'customer' | 'process';

/**
 * Open event streams per customer and in all in this process: a stream takes a slot before it
 * opens and gives it back when it closes, so one customer cannot hold every connection of the
 * process, and all of them together cannot exhaust its sockets and memory.
 */
export interface StreamSlots {
  /** A release function, or which cap is reached. */
  acquire(customerId: string): (() => void) | StreamRefusal;
}

export function createStreamSlots(
  maxPerCustomer = DEFAULT_MAX_STREAMS_PER_CUSTOMER,
  maxPerProcess = DEFAULT_MAX_STREAMS_PER_PROCESS,
): StreamSlots {
  const open = new Map<string, number>();
  let total = 0;
  return {
    acquire(customerId) {
      const held = open.get(customerId) ?? 0;
      if (held >= maxPerCustomer) return 'customer';
      if (total >= maxPerProcess) return 'process';
      open.set(customerId, held + 1);
      total += 1;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        total -= 1;
        const left = (open.get(customerId) ?? 1) - 1;
        if (left <= 0) open.delete(customerId);
        else open.set(customerId, left);
      };
    },
  };
}
