// Live wallet events: one LISTEN on wallet_events per API process, fanned out to the open
// streams of each customer, so no client is ever served by polling.
import { randomUUID } from 'node:crypto';
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
  /**
   * Resolves once the database connection is listening and the wallet is registered as
   * watched, so every posting that commits after the stream's first balance read is announced.
   */
  subscribe(customerId: string, listener: Listener): Promise<() => void>;
  close(): Promise<void>;
}

/** How often a hub re-registers the wallets it streams; a registration twice as old is purged. */
export const LISTENER_REFRESH_MS = 60_000;
const LISTENER_STALE_SECONDS = 5 * (LISTENER_REFRESH_MS / 1000);

/**
 * The postings trigger notifies only for wallets in wallet_event_listeners: the hub registers a
 * customer when its first stream opens, removes it when the last one closes, and refreshes its
 * rows (purging those of hubs that stopped without saying so) on a timer.
 */
export function createWalletEventHub(
  sql: Sql,
  logger: Logger,
  refreshMs = LISTENER_REFRESH_MS,
): WalletEventHub {
  const hubId = randomUUID();
  const listeners = new Map<string, Set<Listener>>();
  let listening: Promise<{ unlisten: () => Promise<void> }> | undefined;
  let refresher: NodeJS.Timeout | undefined;

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

  // Registrations and removals run one after another, and a removal is skipped when a stream
  // of the customer opened again meanwhile, so a new stream is never left unregistered.
  let registry: Promise<unknown> = Promise.resolve();
  const inOrder = <T>(op: () => Promise<T>): Promise<T> => {
    const next = registry.then(op, op);
    registry = next.catch(() => undefined);
    return next;
  };

  const register = (customerIds: string[]) => sql`
    insert into wallet_event_listeners (customer_id, hub_id)
    select unnest(${customerIds}::uuid[]), ${hubId}
    on conflict (customer_id, hub_id) do update set refreshed_at = now()`;

  const refresh = () =>
    inOrder(async () => {
      const watched = [...listeners.keys()];
      if (watched.length > 0) await register(watched);
      await sql`
        delete from wallet_event_listeners
        where (hub_id = ${hubId} and customer_id <> all(${watched}::uuid[]))
           or refreshed_at < now() - make_interval(secs => ${LISTENER_STALE_SECONDS})`;
    });

  const startRefresher = () => {
    if (refresher) return;
    refresher = setInterval(() => {
      refresh().catch((err: unknown) =>
        logger.warn({ err }, 'wallet event listeners not refreshed'),
      );
    }, refreshMs);
    refresher.unref();
  };

  return {
    async subscribe(customerId, listener) {
      listening ??= sql.listen('wallet_events', onMessage);
      await listening;
      const set = listeners.get(customerId) ?? new Set();
      const first = set.size === 0;
      set.add(listener);
      listeners.set(customerId, set);
      startRefresher();
      if (first) {
        try {
          await inOrder(() => register([customerId]));
        } catch (err) {
          set.delete(listener);
          if (set.size === 0) listeners.delete(customerId);
          throw err;
        }
      }
      return () => {
        set.delete(listener);
        if (set.size > 0 || listeners.get(customerId) !== set) return;
        listeners.delete(customerId);
        inOrder(async () => {
          if (listeners.has(customerId)) return;
          await sql`delete from wallet_event_listeners
                    where customer_id = ${customerId}::uuid and hub_id = ${hubId}`;
        }).catch((err: unknown) => logger.warn({ err }, 'wallet event listener not removed'));
      };
    },
    async close() {
      if (refresher) clearInterval(refresher);
      refresher = undefined;
      listeners.clear();
      await sql`delete from wallet_event_listeners where hub_id = ${hubId}`.catch((err: unknown) =>
        logger.warn({ err }, 'wallet event listeners not removed'),
      );
      if (listening) await (await listening).unlisten();
      listening = undefined;
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
