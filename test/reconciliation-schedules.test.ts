// The reconciliation schedules: created or updated idempotently, and put in place by the worker at
// start. The Temporal server is shared with every other test file, so each schedule made here is
// paused or deleted before the test ends and none ever runs a sweep over other files' data.
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createMetrics } from '../src/metrics.js';
import { toDate } from '../src/db/client.js';
import { SWEEP_MARGIN_MS } from '../src/reconciliation/plan.js';
import {
  ensureReconciliationSchedules,
  reconciliationSchedules,
} from '../src/reconciliation/schedules.js';
import { scheduleIds, type ReconciliationInput } from '../src/shared.js';
import { startWorker } from '../src/worker.js';
import { connectTestClient, eventually, uniqueId } from './helpers.js';
import { startReconciliationBench } from './reconciliation-harness.js';

let temporal: Client;

beforeAll(async () => {
  temporal = await connectTestClient();
});

afterAll(async () => {
  await temporal?.connection.close();
});

async function remove(scheduleId: string) {
  try {
    await temporal.schedule.getHandle(scheduleId).delete();
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
  }
}

describe('reconciliation schedules', () => {
  it('creates both schedules, and a second call updates them in place', async () => {
    const ids = {
      daily: uniqueId('reconciliation-daily'),
      sweep: uniqueId('reconciliation-sweep'),
    };
    const taskQueue = uniqueId('reconciliation-schedules');
    try {
      const settings = { taskQueue, cron: '0 2 * * *', sweepMinutes: 15, ids, paused: true };
      expect(await ensureReconciliationSchedules(temporal, settings)).toEqual(ids);
      const daily = await temporal.schedule.getHandle(ids.daily).describe();
      expect(daily.spec.calendars).toEqual([
        expect.objectContaining({
          hour: [{ start: 2, end: 2, step: 1 }],
          minute: [{ start: 0, end: 0, step: 1 }],
        }),
      ]);
      expect(daily.spec.timezone).toBe('UTC');
      expect(daily.policies.overlap).toBe(ScheduleOverlapPolicy.SKIP);
      expect(daily.action).toMatchObject({
        type: 'startWorkflow',
        workflowType: 'reconciliation',
        taskQueue,
      });
      const sweep = await temporal.schedule.getHandle(ids.sweep).describe();
      expect(sweep.spec.intervals?.map((i) => i.every)).toEqual([15 * 60_000]);
      expect(sweep.policies.overlap).toBe(ScheduleOverlapPolicy.SKIP);
      expect(sweep.state.paused).toBe(true);

      // Already there: updated, not duplicated or refused; the operator's pause is kept.
      await ensureReconciliationSchedules(temporal, {
        ...settings,
        sweepMinutes: 30,
        cron: '30 3 * * *',
      });
      const updated = await temporal.schedule.getHandle(ids.sweep).describe();
      expect(updated.spec.intervals?.map((i) => i.every)).toEqual([30 * 60_000]);
      expect(updated.state.paused).toBe(true);
      const dailyUpdated = await temporal.schedule.getHandle(ids.daily).describe();
      expect(dailyUpdated.spec.calendars?.[0]).toMatchObject({
        hour: [{ start: 3, end: 3, step: 1 }],
        minute: [{ start: 30, end: 30, step: 1 }],
      });
    } finally {
      await remove(ids.daily);
      await remove(ids.sweep);
    }
  });

  it('exist once the worker has started', async () => {
    const taskQueue = uniqueId('reconciliation-worker');
    const config = loadConfig({
      DATABASE_URL: inject('databaseUrl'),
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_NAMESPACE: inject('temporalNamespace'),
      TEMPORAL_TASK_QUEUE: taskQueue,
      LOG_LEVEL: 'silent',
      // Nothing may fire during the test: a daily sweep and a cron of Feb 29th at 03:00.
      RECONCILIATION_SWEEP_MINUTES: '1440',
      RECONCILIATION_CRON: '0 3 29 2 *',
      CANARY_CREDITS: '0',
    });
    const worker = await startWorker(config, {
      metrics: createMetrics(),
      workflowBundle: { codePath: inject('workflowBundlePath') },
    });
    try {
      for (const id of [scheduleIds.reconciliationDaily, scheduleIds.reconciliationSweep]) {
        const handle = temporal.schedule.getHandle(id);
        await handle.pause('test: paused right after the worker created it');
        const description = await handle.describe();
        expect(description.action).toMatchObject({ workflowType: 'reconciliation', taskQueue });
        expect(description.policies.overlap).toBe(ScheduleOverlapPolicy.SKIP);
      }
    } finally {
      await worker.stop();
      await remove(scheduleIds.reconciliationDaily);
      await remove(scheduleIds.reconciliationSweep);
    }
  });

  it('a triggered sweep runs with a run id and a window from its action time', async () => {
    const bench = await startReconciliationBench('reconciliation-scheduled');
    const ids = {
      daily: uniqueId('reconciliation-daily'),
      sweep: uniqueId('reconciliation-sweep'),
    };
    try {
      const scope = (await bench.customer()).id;
      const { sweep } = reconciliationSchedules({
        taskQueue: bench.taskQueue,
        cron: '0 3 29 2 *',
        sweepMinutes: 20,
        ids,
        paused: true,
      });
      // Scoped to this test's customer: the sweep must not act on other files' data.
      const action = sweep.action as typeof sweep.action & { args: [ReconciliationInput] };
      await temporal.schedule.create({
        ...sweep,
        action: { ...action, args: [{ ...action.args[0], customerIds: [scope] }] },
      });
      await temporal.schedule.getHandle(ids.sweep).trigger();
      const name = ids.sweep.replace(/^reconciliation-/, '');
      const run = await eventually(async () => {
        const [row] = await bench.db.sql<
          { id: string; trigger: string; window_from: Date | string; window_to: Date | string }[]
        >`
          select id, trigger, window_from, window_to from reconciliation_runs
          where id like ${`${name}-%`} and status = 'completed'`;
        return row;
      });
      expect(run.id).toMatch(new RegExp(`^${name}-\\d{4}-\\d{2}-\\d{2}T`));
      expect(run.trigger).toBe('sweep');
      expect(toDate(run.window_to).getTime() - toDate(run.window_from).getTime()).toBe(
        20 * 60_000 + SWEEP_MARGIN_MS,
      );
    } finally {
      await remove(ids.sweep);
      await bench.close();
    }
  });
});
