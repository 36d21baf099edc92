// How a verification settles when things go wrong at the end: an operator's cancel racing the
// code, a number release that keeps failing, data the database refuses for good.
import type { WorkflowHandle } from '@temporalio/client';
import { temporal as proto } from '@temporalio/proto';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Activities } from '../src/activities/index.js';
import {
  cancelVerificationUpdate,
  codeReceivedSignal,
  workflowIds,
  type VerificationState,
} from '../src/shared.js';
import { eventually, expectLedgerConsistent } from './helpers.js';
import {
  gate,
  recordHistory,
  signal,
  workflowBench,
  type WorkflowBench,
} from './workflow-bench.js';

/** Completions that commit and then wait for the test before answering. */
const heldCompletions = new Map<
  string,
  { committed: ReturnType<typeof signal<void>>; release: ReturnType<typeof gate> }
>();
/** Workflows whose provider refuses every release with a temporary-looking error. */
const failingReleases = new Set<string>();

let b: WorkflowBench;

beforeAll(async () => {
  b = await workflowBench('settle', {
    wrap: (real: Activities) => ({
      completeVerification: async (input) => {
        await real.completeVerification(input);
        const held = heldCompletions.get(input.workflowId);
        if (held) {
          held.committed.fire();
          await held.release.opened;
        }
      },
      releaseNumber: async (input) => {
        if (failingReleases.has(input.workflowId)) {
          throw new Error('provider answered 503 Service Unavailable');
        }
        return real.releaseNumber(input);
      },
    }),
  });
});

afterAll(async () => {
  await expectLedgerConsistent(b.db);
  await b.close();
});

async function activeVerification(options: { timeoutSeconds?: number } = {}) {
  const customer = await b.customerWith(100);
  const verificationId = randomUUID();
  const workflowId = workflowIds.verification(verificationId);
  const handle = await b.startVerification(customer.id, { verificationId, ...options });
  await eventually(async () =>
    (await b.verification(verificationId))?.status === 'active' ? true : undefined,
  );
  return { customer, verificationId, workflowId, handle };
}

/** Resolves once the workflow has run a task after the operator's cancel request reached it. */
async function cancelSeen(handle: WorkflowHandle) {
  const { EventType } = proto.api.enums.v1;
  await eventually(async () => {
    const events = (await handle.fetchHistory()).events ?? [];
    const at = events.findIndex(
      (e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED,
    );
    return at >= 0 &&
      events.slice(at).some((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
      ? true
      : undefined;
  });
}

/** Exactly one outcome, with the money and the read model agreeing with it. */
async function oneOutcome(customerId: string, verificationId: string, workflowId: string) {
  const row = await eventually(async () => {
    const v = await b.verification(verificationId);
    return v && ['completed', 'refunded'].includes(v.status) ? v : undefined;
  });
  const types = await b.entryTypes(workflowId);
  const balance = await b.ledger.walletBalance(customerId);
  if (row.status === 'completed') {
    expect(types).toEqual(['verification_purchase']);
    expect(row.refund_reason).toBeNull();
    expect(row.code).not.toBeNull();
    expect(balance).toBe(50);
  } else {
    expect(types).toEqual(['verification_purchase', 'verification_refund']);
    expect(row.code).toBeNull();
    expect(balance).toBe(100);
  }
  return row.status;
}

describe('operator cancel (Temporal cancellation) against the code', () => {
  it('code first, cancel while the completion is in flight: completed, no refund, run succeeds', async () => {
    const v = await activeVerification();
    const held = { committed: signal(), release: gate() };
    heldCompletions.set(v.workflowId, held);
    await v.handle.signal(codeReceivedSignal, { code: '123456' });
    await held.committed.fired;
    await v.handle.cancel();
    await cancelSeen(v.handle);
    held.release.open();

    const run = await b.settled(v.handle);
    expect(run.ok).toBe(true);
    expect((run.ok ? (run.value as VerificationState) : undefined)?.status).toBe('completed');
    expect(await oneOutcome(v.customer.id, v.verificationId, v.workflowId)).toBe('completed');
    await recordHistory(v.handle, 'verification-cancel-after-code');
  });

  it('cancel first, code after: refunded, the code is not recorded', async () => {
    const v = await activeVerification();
    await v.handle.cancel();
    const run = await b.settled(v.handle);
    expect(run.ok).toBe(false);
    await v.handle.signal(codeReceivedSignal, { code: '654321' }).catch(() => undefined);
    expect(await oneOutcome(v.customer.id, v.verificationId, v.workflowId)).toBe('refunded');
    expect((await b.verification(v.verificationId))?.refund_reason).toBe('cancelled');
    await recordHistory(v.handle, 'verification-operator-cancelled');
  });

  it('both sent at once, ten times: each ends with exactly one outcome', async () => {
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const v = await activeVerification();
        const code = v.handle.signal(codeReceivedSignal, { code: `77${i}` }).catch(() => null);
        const cancel = v.handle.cancel();
        await Promise.all(i % 2 === 0 ? [code, cancel] : [cancel, code]);
        await b.settled(v.handle);
        return oneOutcome(v.customer.id, v.verificationId, v.workflowId);
      }),
    );
    expect(outcomes.every((o) => o === 'completed' || o === 'refunded')).toBe(true);
  });
});

describe('releasing the number after a refund', () => {
  it('a release that keeps failing is flagged and alerted; the cancel answers at once', async () => {
    const v = await activeVerification();
    failingReleases.add(v.workflowId);
    const answered = await v.handle.executeUpdate(cancelVerificationUpdate);
    expect(answered.status).toBe('refunded');
    expect(await b.ledger.walletBalance(v.customer.id)).toBe(100);

    const run = await b.settled(v.handle);
    expect(run.ok).toBe(true);
    const row = await b.verification(v.verificationId);
    expect(row?.status).toBe('refunded');
    expect(row?.release_failed_at).not.toBeNull();
    expect(row?.release_error).toContain('503');
    const metric = await b.metrics.releaseFailures.get();
    expect(metric.values[0]?.value).toBeGreaterThanOrEqual(1);
    await recordHistory(v.handle, 'verification-release-flagged');
  }, 60_000);
});

describe('data the database refuses for good', () => {
  it('a code with a NUL byte is refunded, not retried forever', async () => {
    const v = await activeVerification();
    await v.handle.signal(codeReceivedSignal, { code: '12\u00003456' });
    const run = await b.settled(v.handle);
    expect(run.ok).toBe(true);
    expect(await oneOutcome(v.customer.id, v.verificationId, v.workflowId)).toBe('refunded');
    expect((await b.verification(v.verificationId))?.refund_reason).toBe('invalid_code');
    await recordHistory(v.handle, 'verification-invalid-code');
  }, 60_000);

  it('a purchase for someone who is not a customer ends at once, nothing written', async () => {
    const handle = await b.startVerification(randomUUID());
    const run = await b.settled(handle);
    expect(run.ok).toBe(false);
    expect(await b.entryTypes(handle.workflowId)).toEqual([]);
  }, 60_000);
});
