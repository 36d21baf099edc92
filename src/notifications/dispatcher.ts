// The outbox dispatcher: delivers due messages off the money path, on each channel the customer
// wants (in-app, e-mail), retries failures with backoff, and raises an alert (error log + metrics)
// for a message that keeps failing, so none fails silently. Each channel's outcome is recorded on
// the row, so a retry redoes only the channel that failed.
import type postgres from 'postgres';
import type { Sql } from '../db/client.js';
import type { Logger } from '../logger.js';
import { maskSecrets } from '../log-redaction.js';
import type { OutboxMetrics } from '../metrics.js';
import { addressDomain, renderEmail, type EmailSender } from './email.js';
import { deliverInApp, type DeliveryOutcome } from './in-app.js';
import type { EmailStatus, NotificationKind, OutboxPayload, OutboxRow } from './outbox.js';
import { readPreferences, wants } from './preferences.js';
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
  /** Replaces the in-app channel (tests make it fail); production uses the inbox. */
  deliver?: DeliverMessage;
  /** The e-mail channel; without it (no SMTP_URL) messages are not e-mailed ('off'). */
  email?: { sender: EmailSender; from: string };
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
  in_app_status: DeliveryOutcome | null;
  email_status: EmailStatus | null;
}

/** Delay before the next attempt after `attempts` failures. */
export function retryDelayMs(settings: OutboxSettings, attempts: number): number {
  const exponent = Math.min(Math.max(attempts - 1, 0), 30);
  return Math.min(settings.retryMaxMs, settings.retryInitialMs * 2 ** exponent);
}

const describe = (err: unknown) =>
  (err instanceof Error ? err.message : String(err)).slice(0, 1000);

const toRow = (claimed: ClaimedRow): OutboxRow => ({
  id: Number(claimed.id),
  idempotencyKey: claimed.idempotency_key,
  customerId: claimed.customer_id,
  kind: claimed.kind,
  payload: claimed.payload,
  attempts: claimed.attempts,
  createdAt: new Date(claimed.created_at),
  inAppStatus: claimed.in_app_status,
  emailStatus: claimed.email_status,
});

export function createOutboxDispatcher(deps: OutboxDispatcherDeps): OutboxDispatcher {
  const { sql, taskQueue, logger, metrics, settings } = deps;
  const deliver = deps.deliver ?? deliverToInbox;
  const emailDomain = deps.email ? addressDomain(deps.email.from) : 'creditflow';

  /**
   * Delivers up to a batch of due messages, each in a transaction of its own: an e-mail goes out
   * while its row is locked, and its 'sent' commits right after, so the only way to send it twice
   * is a crash (or a lost database) between the SMTP server's acceptance and that commit; the
   * resend then carries the same Message-ID.
   */
  async function runOnce(): Promise<number> {
    let handled = 0;
    // Rows are taken in id order, each once per batch: a row that failed and came due again
    // waits for the next batch.
    let lastId = 0;
    while (handled < settings.batchSize) {
      // Metrics and logs are reported once the row committed, so they never count a rollback.
      const report: Array<() => void> = [];
      const found = await sql.begin(async (tx) => {
        report.length = 0;
        // Rows another dispatcher holds are skipped, so dispatchers in many workers share the work.
        const [claimed] = await tx<ClaimedRow[]>`
          select id, idempotency_key, customer_id, kind, payload, attempts, created_at,
                 in_app_status, email_status
          from notification_outbox
          where task_queue = ${taskQueue} and status = 'pending' and next_attempt_at <= now()
            and id > ${lastId}
          order by id
          limit 1
          for update skip locked`;
        if (!claimed) return false;
        lastId = Number(claimed.id);
        report.push(...(await deliverRow(tx, toRow(claimed))));
        return true;
      });
      for (const emit of report) emit();
      if (!found) break;
      handled++;
    }
    return handled;
  }

  /** Settles each channel still open, records the outcomes, and returns what to report. */
  async function deliverRow(
    tx: postgres.TransactionSql,
    row: OutboxRow,
  ): Promise<Array<() => void>> {
    const report: Array<() => void> = [];
    const errors: string[] = [];
    let inApp = row.inAppStatus;
    if (inApp === null) {
      try {
        // A savepoint, so a failed delivery undoes only its own writes.
        inApp = await tx.savepoint((sp) => deliver(sp, row));
        const outcome = inApp;
        report.push(() => metrics?.notifications.inc({ kind: row.kind, outcome }));
      } catch (err) {
        errors.push(describe(err));
      }
    }
    let email = row.emailStatus;
    if (email === null) {
      try {
        email = await tx.savepoint((sp) => deliverEmail(sp, row));
        const outcome = email;
        report.push(() => metrics?.emailNotifications.inc({ kind: row.kind, outcome }));
      } catch (err) {
        // SMTP answers can quote the recipient: the stored error and the logs never hold it.
        errors.push(`e-mail: ${maskSecrets(describe(err))}`);
        report.push(() => metrics?.emailNotifications.inc({ kind: row.kind, outcome: 'failed' }));
      }
    }
    await tx`
      update notification_outbox
      set in_app_status = ${inApp}, email_status = ${email},
          email_sent_at = case when ${email} = 'sent' then coalesce(email_sent_at, now()) end
      where id = ${row.id}`;
    if (errors.length > 0) {
      report.push(await recordFailure(tx, row, errors.join('; ')));
      return report;
    }
    const muted = inApp === 'muted' && email !== 'sent';
    await tx`
      update notification_outbox
      set status = ${muted ? 'muted' : 'delivered'}, attempts = attempts + 1,
          delivered_at = case when ${muted} then null else now() end,
          last_error = null
      where id = ${row.id}`;
    if (row.attempts > 0) {
      report.push(() =>
        logger.info(
          { outboxId: row.id, kind: row.kind, attempts: row.attempts + 1 },
          'notification delivered after retries',
        ),
      );
    }
    return report;
  }

  /** E-mails the message when the channel is on, the customer wants it and has an address. */
  async function deliverEmail(tx: postgres.TransactionSql, row: OutboxRow): Promise<EmailStatus> {
    if (!deps.email) return 'off';
    const preferences = await readPreferences(tx, row.customerId);
    if (!wants(preferences, 'email', { kind: row.kind, amount: row.payload.amount })) {
      return 'muted';
    }
    // Read at delivery: a changed address is used, an anonymised customer gets nothing.
    const [customer] = await tx<{ email: string | null }[]>`
      select email from customers where id = ${row.customerId} and anonymised_at is null`;
    if (!customer?.email) return 'no_address';
    await deps.email.sender.send(renderEmail(row, customer.email, emailDomain));
    return 'sent';
  }

  /** Schedules the next attempt (or gives up); returns what to report once committed. */
  async function recordFailure(
    tx: postgres.TransactionSql,
    row: OutboxRow,
    error: string,
  ): Promise<() => void> {
    const attempts = row.attempts + 1;
    const givenUp = attempts >= settings.maxAttempts;
    const delayMs = retryDelayMs(settings, attempts);
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
