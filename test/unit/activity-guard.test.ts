// The wrapper every activity runs in: permanent database errors and closed steps are final,
// compensations keep retrying, and an activity that keeps failing is counted and alerted on.
import { ApplicationFailure, Context } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import { classifyFailure, guardActivities } from '../../src/activities/failures.js';
import { permanentDbErrorReason } from '../../src/db/errors.js';
import { StepClosed } from '../../src/ledger/fences.js';
import { createMetrics } from '../../src/metrics.js';
import { RecordingLogger } from '../recording-logger.js';

const pgError = (code: string) => Object.assign(new Error(`pg error ${code}`), { code });

describe('classifyFailure', () => {
  it.each(['22021', '22P02', '22P05', '22001', '23503', '23514', '23502', '22003'])(
    'SQLSTATE %s is a final, non-retryable failure',
    (code) => {
      const failure = classifyFailure(pgError(code));
      expect(failure).toBeInstanceOf(ApplicationFailure);
      expect((failure as ApplicationFailure).nonRetryable).toBe(true);
      expect((failure as ApplicationFailure).type).toBe('permanent_data_error');
      expect(permanentDbErrorReason(pgError(code))).toBeDefined();
    },
  );

  it.each(['40001', '40P01', '57014', '08006', '23505'])('SQLSTATE %s still retries', (code) => {
    const err = pgError(code);
    expect(classifyFailure(err)).toBe(err);
  });

  it('a closed step is final', () => {
    const failure = classifyFailure(new StepClosed('wf:debit', 'wf:refund'));
    expect((failure as ApplicationFailure).type).toBe('step_closed');
    expect((failure as ApplicationFailure).nonRetryable).toBe(true);
  });
});

describe('guardActivities', () => {
  const failing = (err: Error) => ({
    debitVerification: () => Promise.reject(err),
    refundVerification: () => Promise.reject(err),
  });

  it('a NUL byte refused by the database ends the forward step at once', async () => {
    const guarded = guardActivities(failing(pgError('22021')));
    const env = new MockActivityEnvironment({ attempt: 1 }, { logger: new RecordingLogger() });
    await expect(env.run(guarded.debitVerification)).rejects.toMatchObject({
      type: 'permanent_data_error',
      nonRetryable: true,
    });
  });

  it('a compensation keeps retrying even a permanent error (an operator fixes the data)', async () => {
    const err = pgError('23503');
    const guarded = guardActivities(failing(err), {
      keepRetrying: new Set(['refundVerification']),
    });
    await expect(
      new MockActivityEnvironment({ attempt: 1 }, { logger: new RecordingLogger() }).run(
        guarded.refundVerification,
      ),
    ).rejects.toBe(err);
  });

  it('counts every retried failure and alerts (error log with the attempt) from the threshold on', async () => {
    const metrics = createMetrics();
    const guarded = guardActivities(failing(new Error('connection reset')), {
      metrics,
      alertAfterAttempts: 3,
      keepRetrying: new Set(['refundVerification']),
    });
    const logger = new RecordingLogger();
    for (const attempt of [1, 2, 3, 4]) {
      const env = new MockActivityEnvironment({ attempt }, { logger });
      await expect(env.run(guarded.refundVerification)).rejects.toThrow('connection reset');
    }
    const retries = await metrics.activityRetries.get();
    expect(retries.values).toEqual([
      expect.objectContaining({ labels: { activity: 'refundVerification' }, value: 4 }),
    ]);
    const alerts = await metrics.activityRetryAlerts.get();
    expect(alerts.values).toEqual([
      expect.objectContaining({ labels: { activity: 'refundVerification' }, value: 2 }),
    ]);
    const errors = logger.records.filter((r) => r.level === 'ERROR');
    expect(errors.map((r) => r.meta?.attempt as number)).toEqual([3, 4]);
    expect(errors[0]?.meta?.activity).toBe('refundVerification');
  });
});

describe('guardActivities heartbeats', () => {
  it("repeat the activity's last details (or the previous attempt's), never wiping a cursor", async () => {
    const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const guarded = guardActivities(
      {
        listPages: async () => {
          await pause(60);
          Context.current().heartbeat({ cursor: 'page-2' });
          await pause(60);
          return 'done';
        },
      },
      { heartbeatEveryMs: 10 },
    );
    const env = new MockActivityEnvironment(
      { attempt: 2, heartbeatDetails: { cursor: 'page-1' } },
      { logger: new RecordingLogger() },
    );
    const beats: unknown[] = [];
    env.on('heartbeat', (details: unknown) => beats.push(details));
    await expect(env.run(guarded.listPages)).resolves.toBe('done');
    const firstOwn = beats.findIndex((d) => (d as { cursor?: string })?.cursor === 'page-2');
    expect(firstOwn).toBeGreaterThan(1);
    expect(
      beats.slice(0, firstOwn).every((d) => (d as { cursor?: string })?.cursor === 'page-1'),
    ).toBe(true);
    expect(beats.slice(firstOwn).length).toBeGreaterThan(2);
    expect(
      beats.slice(firstOwn).every((d) => (d as { cursor?: string })?.cursor === 'page-2'),
    ).toBe(true);
  });
});
