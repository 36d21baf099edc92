// One wrapper around every activity: failures that cannot go away become non-retryable (so the
// workflow compensates instead of spinning), long calls heartbeat, and an activity that keeps
// retrying is counted and alerted on instead of spinning silently.
import { ApplicationFailure, Context, log } from '@temporalio/activity';
import type postgres from 'postgres';
import { raiseAlert } from '../alerts/alerts.js';
import { permanentDbErrorReason, sqlState } from '../db/errors.js';
import type { WorkerMetrics } from '../metrics.js';
import { StepClosed } from '../ledger/fences.js';

/** The failure type a workflow sees for a permanent database error. */
export const PERMANENT_DATA_ERROR = 'permanent_data_error';
/** The failure type a workflow sees when a compensation closed the step before it posted. */
export const STEP_CLOSED = 'step_closed';

/** Turns failures that a retry cannot fix into non-retryable ApplicationFailures. */
export function classifyFailure(err: unknown): unknown {
  if (err instanceof ApplicationFailure) return err;
  if (err instanceof StepClosed) {
    return ApplicationFailure.create({
      type: STEP_CLOSED,
      message: err.message,
      nonRetryable: true,
      details: [{ key: err.key, closedBy: err.closedBy }],
    });
  }
  const reason = permanentDbErrorReason(err);
  if (reason) {
    const state = sqlState(err);
    return ApplicationFailure.create({
      type: PERMANENT_DATA_ERROR,
      message: `the database refused the data (${state}, ${reason}): ${(err as Error).message}`,
      nonRetryable: true,
      details: [{ sqlState: state }],
    });
  }
  return err;
}

export interface GuardOptions {
  metrics?:
    | (Pick<WorkerMetrics, 'activityRetries' | 'activityRetryAlerts'> &
        Partial<Pick<WorkerMetrics, 'alertsRaised'>>)
    | undefined;
  /**
   * Where a compensation (a `keepRetrying` activity) that keeps failing is stored as a
   * `compensation_retrying` alert; without it the failure is only logged and counted.
   */
  alertSql?: postgres.Sql | undefined;
  /** From this attempt on, every failed attempt is logged at error level (an alert). */
  alertAfterAttempts?: number;
  /** How often a running activity heartbeats. */
  heartbeatEveryMs?: number;
  /**
   * Compensations: a permanent error is still retried (and alerted on), because giving up
   * would leave the credits where they are; an operator fixes the data and the retry goes through.
   */
  keepRetrying?: ReadonlySet<string>;
}

/** The running activity's context, or undefined outside an activity (a direct call in a test). */
function currentContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

/**
 * Stores the `compensation_retrying` alert (one per workflow and activity, its occurrences
 * counting the attempts), without waiting: the retry is not held up by the alert, and a failure
 * to store it is only logged.
 */
function alertCompensationRetrying(
  options: GuardOptions,
  activity: string,
  attempt: number,
  ctx: Context | undefined,
  err: unknown,
): void {
  const sql = options.alertSql;
  if (!sql) return;
  const workflowId = ctx?.info.workflowExecution?.workflowId ?? 'unknown';
  const error = err instanceof Error ? err.message : String(err);
  raiseAlert(
    sql,
    {
      key: `compensation_retrying:${workflowId}:${activity}`,
      kind: 'compensation_retrying',
      severity: 'critical',
      message:
        `Compensation ${activity} of ${workflowId} has failed ${attempt} times and keeps ` +
        `retrying: ${error.slice(0, 300)}. Fix the cause (data, a provider, the database); ` +
        'the next retry then goes through on its own.',
      details: { workflowId, activity, attempt, error: error.slice(0, 1000) },
    },
    {
      counter: options.metrics?.alertsRaised,
      log: {
        error: (fields, message) => {
          log.error(message, fields);
        },
      },
    },
  ).catch((alertErr: unknown) => {
    try {
      log.warn('could not store the compensation_retrying alert', {
        activity,
        workflowId,
        error: alertErr instanceof Error ? alertErr.message : String(alertErr),
      });
    } catch {
      // Outside an activity context there is no logger; the retry goes on regardless.
    }
  });
}

/**
 * The wrapper's own heartbeats carry the last details the activity gave (a listing's cursor), or
 * the previous attempt's until it gives some, so they never wipe out where a retry should resume.
 */
function keepHeartbeatDetails(ctx: NonNullable<ReturnType<typeof currentContext>>): void {
  const send = ctx.heartbeat;
  let last: unknown = ctx.info.heartbeatDetails;
  Object.defineProperty(ctx, 'heartbeat', {
    configurable: true,
    writable: true,
    value: (details?: unknown) => {
      if (details !== undefined) last = details;
      send(last);
    },
  });
}

/** Wraps each activity with failure classification, heartbeats and retry visibility. */
export function guardActivities<T extends Record<string, (...args: never[]) => Promise<unknown>>>(
  activities: T,
  options: GuardOptions = {},
): T {
  const alertAfter = options.alertAfterAttempts ?? 5;
  const every = options.heartbeatEveryMs ?? 1_000;
  const guarded: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities)) {
    guarded[name] = async (...args: never[]) => {
      const ctx = currentContext();
      const attempt = ctx?.info.attempt ?? 1;
      if (ctx) keepHeartbeatDetails(ctx);
      const timer = ctx ? setInterval(() => ctx.heartbeat(), every) : undefined;
      try {
        ctx?.heartbeat();
        return await fn(...args);
      } catch (err) {
        const classified = options.keepRetrying?.has(name) ? err : classifyFailure(err);
        const final = classified instanceof ApplicationFailure && classified.nonRetryable;
        if (!final) {
          options.metrics?.activityRetries.inc({ activity: name });
          if (attempt >= alertAfter) {
            options.metrics?.activityRetryAlerts.inc({ activity: name });
            log.error('activity keeps failing; retrying', {
              activity: name,
              attempt,
              workflowId: ctx?.info.workflowExecution?.workflowId,
              error: err instanceof Error ? err.message : String(err),
            });
            if (options.keepRetrying?.has(name)) {
              alertCompensationRetrying(options, name, attempt, ctx, err);
            }
          }
        }
        throw classified;
      } finally {
        if (timer) clearInterval(timer);
      }
    };
  }
  return guarded as T;
}
