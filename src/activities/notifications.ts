// Notifications from activities: messages go to the outbox inside the posting transaction, so they
// commit exactly with the money movement and are delivered later, off the money path, by the
// outbox dispatcher. The `notify` activity stays for workflow runs started before the outbox.
import { Context, log } from '@temporalio/activity';
import type postgres from 'postgres';
import type { Database } from '../db/client.js';
import type { PostedEntry } from '../ledger/ledger.js';
import type { WorkerMetrics } from '../metrics.js';
import { deliverInApp, type DeliveryOutcome } from '../notifications/in-app.js';
import {
  enqueueMessage,
  NOTIFICATION_KINDS,
  type NotificationKind,
  type OutboxMessage,
} from '../notifications/outbox.js';

export { NOTIFICATION_KINDS, type NotificationKind };

/**
 * Queues messages about a posted entry, in its posting transaction (call it from `afterPost`).
 * The activity's task queue goes with them, so that queue's workers deliver them.
 */
export async function enqueueNotifications(
  tx: postgres.TransactionSql,
  entry: PostedEntry,
  ...messages: OutboxMessage[]
): Promise<void> {
  const { taskQueue } = Context.current().info;
  for (const message of messages) {
    await enqueueMessage(tx, { taskQueue, entryId: entry.entryId }, message);
  }
}

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

export type NotifyOutcome = DeliveryOutcome;

export function createNotificationActivities({
  db,
  metrics,
}: {
  db: Database;
  metrics?: WorkerMetrics;
}) {
  return {
    /**
     * Stores a notification unless the customer's preferences mute it. Only workflow runs that
     * started before the outbox call it; new runs queue their messages with the ledger entry.
     */
    async notify(
      input: NotifyInput,
    ): Promise<{ outcome: NotifyOutcome; notificationId: number | null }> {
      const result = await deliverInApp(db.sql, input);
      metrics?.notifications.inc({ kind: input.kind, outcome: result.outcome });
      log.info('notification', {
        kind: input.kind,
        outcome: result.outcome,
        idempotencyKey: input.idempotencyKey,
      });
      return result;
    },
  };
}
