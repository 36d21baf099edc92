// The outbox dispatcher: delivers due messages off the money path, retries failures with backoff,
// and raises an alert (error log + metrics) for a message that keeps failing, so none fails silently.
import type postgres from 'postgres';
import type { Sql } from '../db/client.js';
import type { Logger } from '../logger.js';
import type { OutboxMetrics } from '../metrics.js';
import { deliverInApp, type DeliveryOutcome } from './in-app.js';
import type { NotificationKind, OutboxPayload, OutboxRow } from './outbox.js';
import { createPollLoop } from '../poll-loop.js';

/** Delivers one message inside the claiming transaction; throws to have it retried. */
export type DeliverMessage = (
  tx: postgres.TransactionSql,
  row: OutboxRow,
) => Promise<DeliveryOutcome>;

/** The default channel: the in-app notifications list. */
export const deliverToInbox: DeliverMessage = async (tx, row) =>
  (
    await deliverInApp(tx, {
      idempotencyKey: row.idempotencyKey,
      customerId: row.customerId,
      kind: row.kind,
      title: row.payload.title,
      body: row.payload.body,
      amount: row.payload.amount,
      balanceAfter: row.payload.balanceAfter,
      data: row.payload.data,
    })
  ).outcome;

export interface OutboxSettings {
  /** How often to look for due messages when the last look found fewer than a batch. */
  pollIntervalMs: number;
  batchSize: number;
  /** Backoff after a failed attempt: doubles from the initial delay up to the maximum. */
  retryInitialMs: number;
  retryMaxMs: number;
  /** From this many failed attempts on, each failure is logged as an error and counted as failing. */
  alertAfterAttempts: number;
  /** After this many failed attempts the message is marked failed (an operator re-queues it). */
  maxAttempts: number;
}

export interface OutboxDispatcherDeps {
  sql: Sql;
  /** Delivers the messages written by this worker task queue's activities. */
  taskQueue: string;
  logger: Logger;
  metrics?: OutboxMetrics;
  settings: OutboxSettings;
  /** Replaces the delivery channel (tests make it fail); production uses the inbox. */
  deliver?: DeliverMessage;
}

export interface OutboxDispatcher {
  /** Starts polling in the background. */
  start(): void;
  /** Finishes the batch in hand and stops; safe to call twice. */
  stop(): Promise<void>;
  /** Delivers one batch of due messages now; returns how many it handled. */
  runOnce(): Promise<number>;
  /** Reads the backlog into the gauges. */
  refreshGauges(): Promise<void>;
}

interface ClaimedRow {
  id: string;
  idempotency_key: string;
  customer_id: string;
  kind: NotificationKind;
  payload: OutboxPayload;
  attempts: number;
  created_at: Date | string;
}

/** Delay before the next attempt after `attempts` failures. */
export function retryDelayMs(settings: OutboxSettings, attempts: number): number {
  const exponent = Math.min(Math.max(attempts - 1, 0), 30);
  return Math.min(settings.retryMaxMs, settings.retryInitialMs * 2 ** exponent);
}

const describe = (err: unknown) =>
  (err instanceof Error ? err.message : String(err)).slice(0, 1000);

export function createOutboxDispatcher(deps: OutboxDispatcherDeps): OutboxDispatcher {
  const { sql, taskQueue, logger, metrics, settings } = deps;
  const deliver = deps.deliver ?? deliverToInbox;

  async function runOnce(): Promise<number> {
    // Metrics and logs are reported once the batch committed, so they never count a rollback.
    const report: Array<() => void> = [];
    const handled = await sql.begin(async (tx) => {
      report.length = 0;
      // Rows another dispatcher holds are skipped, so dispatchers in many workers share the work.
      const rows = await tx<ClaimedRow[]>`
        select id, idempotency_key, customer_id, kind, payload, attempts, created_at
        from notification_outbox
        where task_queue = ${taskQueue} and status = 'pending' and next_attempt_at <= now()
        order by id
        limit ${settings.batchSize}
        for update skip locked`;
      for (const claimed of rows) {
        const row: OutboxRow = {
          id: Number(claimed.id),
          idempotencyKey: claimed.idempotency_key,
          customerId: claimed.customer_id,
          kind: claimed.kind,
          payload: claimed.payload,
          attempts: claimed.attempts,
          createdAt: new Date(claimed.created_at),
        };
        let outcome: DeliveryOutcome;
        try {
          // A savepoint, so a failed delivery undoes only its own writes.
          outcome = await tx.savepoint((sp) => deliver(sp, row));
        } catch (err) {
          report.push(await recordFailure(tx, row, err));
          continue;
        }
        await tx`
          update notification_outbox
          set status = ${outcome === 'muted' ? 'muted' : 'delivered'}, attempts = attempts + 1,
              delivered_at = case when ${outcome} = 'muted' then null else now() end,
              last_error = null
          where id = ${row.id}`;
        report.push(() => {
          metrics?.notifications.inc({ kind: row.kind, outcome });
          if (row.attempts > 0) {
            logger.info(
              { outboxId: row.id, kind: row.kind, attempts: row.attempts + 1 },
              'notification delivered after retries',
            );
          }
        });
      }
      return rows.length;
    });
    for (const emit of report) emit();
    return handled;
  }

  /** Schedules the next attempt (or gives up); returns what to report once committed. */
  async function recordFailure(
    tx: postgres.TransactionSql,
    row: OutboxRow,
    err: unknown,
  ): Promise<() => void> {
    const attempts = row.attempts + 1;
    const givenUp = attempts >= settings.maxAttempts;
    const delayMs = retryDelayMs(settings, attempts);
    const error = describe(err);
    await tx`
      update notification_outbox
      set attempts = ${attempts}, last_error = ${error}, status = ${givenUp ? 'failed' : 'pending'},
          next_attempt_at = now() + ${delayMs} * interval '1 millisecond'
      where id = ${row.id}`;
    return () => {
      metrics?.outboxDeliveryErrors.inc({ kind: row.kind });
      const fields = {
        outboxId: row.id,
        idempotencyKey: row.idempotencyKey,
        kind: row.kind,
        attempts,
        error,
      };
      if (givenUp) {
        logger.error(fields, 'notification delivery failed for good: marked failed, re-queue it');
      } else if (attempts >= settings.alertAfterAttempts) {
        logger.error({ ...fields, retryInMs: delayMs }, 'notification delivery keeps failing');
      } else {
        logger.warn({ ...fields, retryInMs: delayMs }, 'notification delivery failed; will retry');
      }
    };
  }

  async function refreshGauges(): Promise<void> {
    if (!metrics) return;
    // Every queue, not only this one: rows written under a queue no worker polls any more
    // (a renamed TEMPORAL_TASK_QUEUE) show up as a growing backlog instead of waiting unseen.
    const rows = await sql<
      {
        task_queue: string;
        pending: string;
        failing: string;
        failed: string;
        oldest_seconds: string | null;
      }[]
    >`
      select task_queue,
             count(*) filter (where status = 'pending') as pending,
             count(*) filter (where status = 'pending' and attempts >= ${settings.alertAfterAttempts}) as failing,
             count(*) filter (where status = 'failed') as failed,
             extract(epoch from now() - min(created_at) filter (where status = 'pending')) as oldest_seconds
      from notification_outbox
      where status in ('pending', 'failed')
      group by task_queue`;
    const byQueue = new Map(rows.map((r) => [r.task_queue, r]));
    metrics.outboxMessages.reset();
    metrics.outboxOldestPending.reset();
    for (const queue of new Set([taskQueue, ...byQueue.keys()])) {
      const row = byQueue.get(queue);
      const labels = { task_queue: queue };
      metrics.outboxMessages.set({ ...labels, state: 'pending' }, Number(row?.pending ?? 0));
      metrics.outboxMessages.set({ ...labels, state: 'failing' }, Number(row?.failing ?? 0));
      metrics.outboxMessages.set({ ...labels, state: 'failed' }, Number(row?.failed ?? 0));
      metrics.outboxOldestPending.set(labels, Number(row?.oldest_seconds ?? 0));
    }
  }

  const loop = createPollLoop({
    pollIntervalMs: settings.pollIntervalMs,
    round: async () => {
      const handled = await runOnce();
      await refreshGauges();
      return handled >= settings.batchSize;
    },
    // The database is unreachable or the batch failed as a whole: nothing was lost, try again.
    onError: (err) =>
      logger.warn({ error: describe(err), taskQueue }, 'outbox dispatch failed; will retry'),
  });

  return {
    ...loop,
    runOnce,
    refreshGauges,
  };
}
