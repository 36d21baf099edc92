// The outbox: side messages written in the posting transaction, delivered later by the dispatcher.
import type postgres from 'postgres';

export const NOTIFICATION_KINDS = [
  'credits_deducted',
  'credits_refunded',
  'credits_added',
  'credits_expired',
  'low_balance',
  'auto_topup_succeeded',
  'auto_topup_failed',
] as const;
export type NotificationKind = (typeof NOTIFICATION_KINDS)[number];

export const OUTBOX_STATUSES = ['pending', 'delivered', 'failed', 'muted'] as const;
export type OutboxStatus = (typeof OUTBOX_STATUSES)[number];

/**
 * What became of a message's e-mail: sent (the SMTP server accepted it), muted (the customer's
 * preferences), no_address (no e-mail address, or anonymised), off (this worker has no SMTP_URL).
 */
export type EmailStatus = 'sent' | 'muted' | 'no_address' | 'off';

/** Credits as they travel in a message: integers, kept exact whatever their size. */
export type Credits = number | bigint;

/** One message for one customer, as the code that moved the money describes it. */
export interface OutboxMessage {
  /** Derived from the workflow id and step, so one money movement gives one message. */
  idempotencyKey: string;
  customerId: string;
  kind: NotificationKind;
  title: string;
  body: string;
  amount?: Credits;
  balanceAfter?: Credits;
  data?: Record<string, unknown>;
}

/** What the outbox row keeps to deliver: amounts as decimal strings, exact in JSON. */
export interface OutboxPayload {
  title: string;
  body: string;
  amount: string | null;
  balanceAfter: string | null;
  data: Record<string, unknown>;
}

/** A row claimed for delivery. */
export interface OutboxRow {
  id: number;
  idempotencyKey: string;
  customerId: string;
  kind: NotificationKind;
  payload: OutboxPayload;
  attempts: number;
  createdAt: Date;
  /** In-app outcome once settled; null while it is still to do. */
  inAppStatus: 'sent' | 'duplicate' | 'muted' | null;
  /** E-mail outcome once settled; null while it is still to do. */
  emailStatus: EmailStatus | null;
}

/**
 * Writes a message to the outbox inside the caller's transaction (the posting transaction), so
 * it commits exactly when the money movement does. A repeated key writes nothing.
 */
export async function enqueueMessage(
  tx: postgres.TransactionSql,
  target: { taskQueue: string; entryId?: number },
  message: OutboxMessage,
): Promise<void> {
  const payload: OutboxPayload = {
    title: message.title,
    body: message.body,
    amount: message.amount === undefined ? null : String(message.amount),
    balanceAfter: message.balanceAfter === undefined ? null : String(message.balanceAfter),
    data: message.data ?? {},
  };
  await tx`
    insert into notification_outbox (idempotency_key, customer_id, kind, payload, entry_id, task_queue)
    values (${message.idempotencyKey}, ${message.customerId}, ${message.kind},
            ${JSON.stringify(payload)}::jsonb, ${target.entryId ?? null}, ${target.taskQueue})
    on conflict (idempotency_key) do nothing`;
}
