// The Temporal Schedules that run reconciliation: a daily run and a short sweep. The worker puts
// them in place at start, so a changed cron or interval takes effect on the next deploy.
import {
  ScheduleAlreadyRunning,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleOptions,
} from '@temporalio/client';
import { scheduleIds, type ReconciliationInput } from '../shared.js';

export interface ReconciliationScheduleSettings {
  taskQueue: string;
  /** Five-field cron, UTC. */
  cron: string;
  sweepMinutes: number;
  /** Credits of the sweep's canary purchase; 0 turns it off. */
  canaryCredits?: number;
  /** Other schedule ids (tests); the defaults are `reconciliation-daily` / `-sweep`. */
  ids?: { daily: string; sweep: string };
  /** Create them paused (tests that must not let them run). */
  paused?: boolean;
}

/** What each schedule should be; the workflow id gets the action time appended by Temporal. */
export function reconciliationSchedules(settings: ReconciliationScheduleSettings) {
  const ids = settings.ids ?? {
    daily: scheduleIds.reconciliationDaily,
    sweep: scheduleIds.reconciliationSweep,
  };
  const action = (name: string, input: ReconciliationInput) => ({
    type: 'startWorkflow' as const,
    workflowType: 'reconciliation',
    // Temporal appends the action time: reconciliation-daily-2026-11-27T02:00:00Z.
    workflowId: `reconciliation-${name}`,
    taskQueue: settings.taskQueue,
    args: [input],
  });
  const daily: ScheduleOptions = {
    scheduleId: ids.daily,
    spec: { cronExpressions: [settings.cron], timezone: 'UTC' },
    action: action(ids.daily.replace(/^reconciliation-/, ''), {
      runId: '',
      trigger: 'schedule',
      windowMinutes: 24 * 60,
    }),
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 hour' },
    state: {
      paused: settings.paused ?? false,
      note: 'Daily reconciliation of the ledger, the payments and Stripe',
    },
  };
  const sweep: ScheduleOptions = {
    scheduleId: ids.sweep,
    spec: { intervals: [{ every: `${settings.sweepMinutes} minutes` }] },
    action: action(ids.sweep.replace(/^reconciliation-/, ''), {
      runId: '',
      trigger: 'sweep',
      windowMinutes: settings.sweepMinutes,
      canaryCredits: settings.canaryCredits ?? 0,
    }),
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '5 minutes' },
    state: {
      paused: settings.paused ?? false,
      note: 'Sweep: recent payments and flows in limbo, plus the canary purchase',
    },
  };
  return { daily, sweep };
}

/**
 * Creates both schedules, or updates them to the settings when they exist (idempotent: calling it
 * again changes nothing). An operator's pause is kept across updates.
 */
export async function ensureReconciliationSchedules(
  client: Client,
  settings: ReconciliationScheduleSettings,
): Promise<{ daily: string; sweep: string }> {
  const wanted = reconciliationSchedules(settings);
  for (const options of [wanted.daily, wanted.sweep]) {
    try {
      await client.schedule.create(options);
    } catch (err) {
      if (!(err instanceof ScheduleAlreadyRunning)) throw err;
      await client.schedule.getHandle(options.scheduleId).update((previous) => ({
        ...previous,
        spec: options.spec,
        action: options.action,
        policies: { ...previous.policies, ...options.policies },
      }));
    }
  }
  return { daily: wanted.daily.scheduleId, sweep: wanted.sweep.scheduleId };
}
