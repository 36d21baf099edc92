// Prometheus metrics. One registry per process (or per test app); `npm start` shares one between
// the API and the in-process worker so /metrics shows both.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createMetrics(options: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry });
  return {
    registry,
    httpRequests: new Counter({
      name: 'creditflow_http_requests_total',
      help: 'HTTP requests by method, route and status',
      labelNames: ['method', 'route', 'status'] as const,
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'creditflow_http_request_duration_seconds',
      help: 'HTTP request duration by method and route',
      labelNames: ['method', 'route'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    transactions: new Counter({
      name: 'creditflow_ledger_transactions_total',
      help: 'Ledger postings by entry type and status (posted, replayed, refused)',
      labelNames: ['type', 'status'] as const,
      registers: [registry],
    }),
    notifications: new Counter({
      name: 'creditflow_notifications_total',
      help: 'Notifications by kind and outcome (sent, duplicate, muted)',
      labelNames: ['kind', 'outcome'] as const,
      registers: [registry],
    }),
    stripeEventsFlagged: new Counter({
      name: 'creditflow_stripe_events_flagged_total',
      help: 'Signed Stripe events kept for review instead of acted on (alert when it grows), by type',
      labelNames: ['type'] as const,
      registers: [registry],
    }),
    refundLatency: new Histogram({
      name: 'creditflow_refund_latency_seconds',
      help: 'From the failure, cancel or timeout to the refund entry, by flow and reason',
      labelNames: ['flow', 'reason'] as const,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
    activityRetries: new Counter({
      name: 'creditflow_activity_retries_total',
      help: 'Activity attempts that failed and will be retried, by activity',
      labelNames: ['activity'] as const,
      registers: [registry],
    }),
    activityRetryAlerts: new Counter({
      name: 'creditflow_activity_retry_alerts_total',
      help: 'Failed attempts at or past the alert threshold (an activity that keeps failing), by activity',
      labelNames: ['activity'] as const,
      registers: [registry],
    }),
    releaseFailures: new Counter({
      name: 'creditflow_number_release_failures_total',
      help: 'Phone numbers whose release kept failing and was flagged for an operator',
      registers: [registry],
    }),
    outboxMessages: new Gauge({
      name: 'creditflow_outbox_messages',
      help: 'Outbox messages by task queue and state: pending (backlog), failing (pending after OUTBOX_ALERT_AFTER_ATTEMPTS or more failed attempts), failed (given up)',
      labelNames: ['task_queue', 'state'] as const,
      registers: [registry],
    }),
    outboxOldestPending: new Gauge({
      name: 'creditflow_outbox_oldest_pending_seconds',
      help: 'Age of the oldest pending outbox message, by task queue',
      labelNames: ['task_queue'] as const,
      registers: [registry],
    }),
    alertsRaised: new Counter({
      name: 'creditflow_alerts_raised_total',
      help: 'Alerts raised (stored in the alerts table), by kind and severity; repeats count too',
      labelNames: ['kind', 'severity'] as const,
      registers: [registry],
    }),
    emailNotifications: new Counter({
      name: 'creditflow_email_notifications_total',
      help: 'Notification e-mails by kind and outcome: sent, muted (preferences), no_address, off (no SMTP_URL), failed (attempt to retry)',
      labelNames: ['kind', 'outcome'] as const,
      registers: [registry],
    }),
    workflowOutcomes: new Counter({
      name: 'creditflow_workflow_outcomes_total',
      help: 'Workflows that closed on this worker, by workflow type and outcome (completed, failed, cancelled); timeouts are decided by the Temporal server',
      labelNames: ['workflow_type', 'outcome'] as const,
      registers: [registry],
    }),
    ledgerWriteDuration: new Histogram({
      name: 'creditflow_ledger_write_duration_seconds',
      help: 'Time to post one ledger entry (its transaction and any retry of it), by entry type and status (posted, replayed, refused)',
      labelNames: ['type', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    webhookLag: new Histogram({
      name: 'creditflow_webhook_lag_seconds',
      help: 'From the moment the provider created an event to the moment this API finished processing it, by provider and event type',
      labelNames: ['provider', 'type'] as const,
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400],
      registers: [registry],
    }),
    outboxDeliveryErrors: new Counter({
      name: 'creditflow_outbox_delivery_errors_total',
      help: 'Failed outbox delivery attempts by kind',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
/** The part of the metrics the worker's activities write. */
export type WorkerMetrics = Pick<
  Metrics,
  | 'transactions'
  | 'notifications'
  | 'refundLatency'
  | 'activityRetries'
  | 'activityRetryAlerts'
  | 'releaseFailures'
  | 'alertsRaised'
  | 'ledgerWriteDuration'
>;
/** The part of the metrics the outbox dispatcher writes. */
export type OutboxMetrics = Pick<
  Metrics,
  | 'notifications'
  | 'emailNotifications'
  | 'outboxMessages'
  | 'outboxOldestPending'
  | 'outboxDeliveryErrors'
>;
