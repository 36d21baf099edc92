// One wrapper around every activity: failures that cannot go away become non-retryable (so the
// workflow compensates instead of spinning), long calls heartbeat, and an activity that keeps
// retrying is counted and alerted on instead of spinning silently.
import { ApplicationFailure, Context, log } from '@temporalio/activity';
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
  metrics?: Pick<WorkerMetrics, 'activityRetries' | 'activityRetryAlerts'> | undefined;
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
