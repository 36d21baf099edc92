// Notification activities: tell a customer about their credits. Idempotent by key, and separate
// from the money movement, so a failing store retries without undoing or repeating the money.
import { log } from '@temporalio/activity';
import type { Database } from '../db/client.js';
import type { WorkerMetrics } from '../metrics.js';

export const NOTIFICATION_KINDS = [
  'credits_deducted',
  'credits_refunded',
  'credits_added',
] as const;
export type NotificationKind = (typeof NOTIFICATION_KINDS)[number];

export interface NotifyInput {
  /** Derived from the workflow id and step, so a retry writes nothing new. */
  idempotencyKey: string;
  customerId: string;
  kind: NotificationKind;
  title: string;
  body: string;
  amount?: number;
  balanceAfter?: number;
  data?: Record<string, unknown>;
}

export type NotifyOutcome = 'sent' | 'duplicate' | 'muted';

export function createNotificationActivities({
  db,
  metrics,
}: {
  db: Database;
  metrics?: WorkerMetrics;
}) {
  return {
    /** Stores a notification unless the customer's preferences mute it. */
    async notify(
      input: NotifyInput,
    ): Promise<{ outcome: NotifyOutcome; notificationId: number | null }> {
      const [pref] = await db.sql<{ kinds: string[] | null; min_amount: string }[]>`
        select kinds, min_amount from notification_preferences where customer_id = ${input.customerId}`;
      const muted =
        pref !== undefined &&
        ((pref.kinds !== null && !pref.kinds.includes(input.kind)) ||
          (input.amount !== undefined && Math.abs(input.amount) < Number(pref.min_amount)));
      let outcome: NotifyOutcome;
      let notificationId: number | null = null;
      if (muted) {
        outcome = 'muted';
      } else {
        const [row] = await db.sql<{ id: string }[]>`
          insert into notifications (idempotency_key, customer_id, kind, title, body, amount, balance_after, data)
          values (${input.idempotencyKey}, ${input.customerId}, ${input.kind}, ${input.title}, ${input.body},
                  ${input.amount ?? null}, ${input.balanceAfter ?? null}, ${JSON.stringify(input.data ?? {})}::jsonb)
          on conflict (idempotency_key) do nothing
          returning id`;
        outcome = row ? 'sent' : 'duplicate';
        notificationId = row ? Number(row.id) : null;
      }
      metrics?.notifications.inc({ kind: input.kind, outcome });
      log.info('notification', { kind: input.kind, outcome, idempotencyKey: input.idempotencyKey });
      return { outcome, notificationId };
    },
  };
}
