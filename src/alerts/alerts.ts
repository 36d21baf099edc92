// Alerts: things a person should look at. Stored once per key (a repeat counts an occurrence and
// reopens nothing that was acknowledged), counted in metrics and logged at error level.
import type postgres from 'postgres';
import type { Counter } from 'prom-client';

export type AlertSeverity = 'warning' | 'critical';

/** Every kind of alert the service raises; docs/operations.md says what to do about each. */
export const ALERT_KINDS = [
  'large_deduction',
  'customer_velocity',
  'reconciliation_finding',
  'canary_failed',
  'canary_late',
  'compensation_retrying',
  'customer_debt',
  'dispute_opened',
  'refund_failed',
  'stripe_event_flagged',
] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

export interface AlertInput {
  /** Two raises with the same key are one alert (e.g. `large_deduction:<entry id>`). */
  key: string;
  kind: AlertKind;
  severity: AlertSeverity;
  /** Says what happened and what to do; no e-mail addresses or secrets. */
  message: string;
  details?: Record<string, unknown>;
  customerId?: string | null;
}

export interface RaisedAlert {
  id: number;
  /** False when the key was already raised: this was a repeat, counted as an occurrence. */
  created: boolean;
  occurrences: number;
}

/** Where an alert is also announced: the error log and the alerts counter. */
export interface AlertSinks {
  log?: { error(fields: Record<string, unknown>, message: string): void } | undefined;
  counter?: Pick<Counter<'kind' | 'severity'>, 'inc'> | undefined;
}

type Sql = postgres.Sql | postgres.TransactionSql;

/**
 * Stores (or counts again) an alert. Safe to call from a retried activity: the key makes it
 * idempotent apart from the occurrence count. Never throws for a logging or metrics failure.
 */
// Details go in as JSON text: the app's pools run through drizzle, whose postgres.js set-up
// passes json parameters through as they are, so `sql.json(...)` would send an object it cannot bind.
export async function raiseAlert(
  sql: Sql,
  alert: AlertInput,
  sinks: AlertSinks = {},
): Promise<RaisedAlert> {
  const [row] = await sql<{ id: string; occurrences: number; created: boolean }[]>`
    insert into alerts (key, kind, severity, message, details, customer_id)
    values (${alert.key}, ${alert.kind}, ${alert.severity}, ${alert.message},
            ${JSON.stringify(alert.details ?? {})}::jsonb, ${alert.customerId ?? null})
    on conflict (key) do update set
      occurrences = alerts.occurrences + 1,
      last_seen_at = now(),
      message = excluded.message,
      details = excluded.details
    returning id, occurrences, (xmax = 0) as created`;
  const raised = { id: Number(row!.id), created: row!.created, occurrences: row!.occurrences };
  try {
    sinks.counter?.inc({ kind: alert.kind, severity: alert.severity });
    sinks.log?.error(
      {
        alert: alert.kind,
        alertId: raised.id,
        key: alert.key,
        severity: alert.severity,
        occurrences: raised.occurrences,
        ...(alert.customerId ? { customerId: alert.customerId } : {}),
      },
      alert.message,
    );
  } catch {
    // The alert is stored; a failing log or metric must not fail the step that raised it.
  }
  return raised;
}
