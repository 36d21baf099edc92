// In-app delivery: the customer's notifications list, filtered by their preferences.
import type postgres from 'postgres';
import type { NotificationKind } from './outbox.js';
import { readPreferences, wants } from './preferences.js';

export type DeliveryOutcome = 'sent' | 'duplicate' | 'muted';

export interface InAppMessage {
  idempotencyKey: string;
  customerId: string;
  kind: NotificationKind;
  title: string;
  body: string;
  /** Integer credits, as a number, bigint or decimal string. */
  amount?: number | bigint | string | null;
  balanceAfter?: number | bigint | string | null;
  data?: Record<string, unknown>;
}

/**
 * Stores the notification unless the customer's preferences keep its kind off the in-app channel
 * or its amount is below their minimum. Idempotent by key: a second delivery of the same message
 * stores nothing.
 */
export async function deliverInApp(
  sql: postgres.Sql | postgres.TransactionSql,
  message: InAppMessage,
): Promise<{ outcome: DeliveryOutcome; notificationId: number | null }> {
  const preferences = await readPreferences(sql, message.customerId);
  const amount = message.amount ?? null;
  const muted = !wants(preferences, 'in_app', message);
  if (muted) return { outcome: 'muted', notificationId: null };
  const balanceAfter = message.balanceAfter ?? null;
  const [row] = await sql<{ id: string }[]>`
    insert into notifications (idempotency_key, customer_id, kind, title, body, amount, balance_after, data)
    values (${message.idempotencyKey}, ${message.customerId}, ${message.kind}, ${message.title},
            ${message.body}, ${amount === null ? null : String(amount)},
            ${balanceAfter === null ? null : String(balanceAfter)},
            ${JSON.stringify(message.data ?? {})}::jsonb)
    on conflict (idempotency_key) do nothing
    returning id`;
  return row
    ? { outcome: 'sent', notificationId: Number(row.id) }
    : { outcome: 'duplicate', notificationId: null };
}
