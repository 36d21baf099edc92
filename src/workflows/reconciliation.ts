// reconciliation: compares Stripe, the payments and the ledger for a window, repairs what is safe.
import {
  ParentClosePolicy,
  continueAsNew,
  proxyActivities,
  sleep,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import type { Activities } from '../activities/index.js';
import {
  CANARY_DEADLINE_MS,
  CANARY_TIMEOUT_SECONDS,
  CHUNKS_PER_RUN,
  chunksOf,
  resolveWindow,
  runIdFromWorkflowId,
} from '../reconciliation/plan.js';
import {
  searchAttributes,
  workflowIds,
  type ReconciliationInput,
  type ReconciliationSummary,
  type VerificationInput,
  type VerificationState,
} from '../shared.js';
import type { verificationPurchase } from './verification.js';

// Database steps: quick and idempotent; a run that cannot reach its database for long fails and
// says so rather than spinning (the next scheduled run covers the window again).
const db = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute', maximumAttempts: 20 },
});

// One chunk of Stripe listings: many pages, so it heartbeats its cursor and a retry resumes there.
const stripe = proxyActivities<Activities>({
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute', maximumAttempts: 10 },
});

/** The action time a Temporal Schedule stamps on the runs it starts. */
const scheduledStartTime = defineSearchAttributeKey(
  'TemporalScheduledStartTime',
  SearchAttributeType.DATETIME,
);

/** What a run hands the next one when it continues as new. */
interface Resume {
  window: { from: string; to: string };
  next: number;
  matched: number;
  listed: Record<string, number>;
  stripe: boolean;
  continuedAsNew: number;
}

/** One reconciliation run (scheduled daily, every few minutes as a sweep, or on demand). */
export async function reconciliation(input: ReconciliationInput): Promise<{ runId: string }> {
  const info = workflowInfo();
  const runId = input.runId || runIdFromWorkflowId(info.workflowId);
  const resume = (input.resume ?? null) as Resume | null;
  const window = resume?.window ?? windowOf(input);
  const ref = { runId, customerIds: input.customerIds ?? null };
  const progress = resume ?? {
    window,
    next: 0,
    matched: 0,
    listed: {},
    stripe: true,
    continuedAsNew: 0,
  };
  if (!resume) {
    await db.beginReconciliationRun({
      runId,
      workflowId: info.workflowId,
      trigger: input.trigger,
      ...window,
    });
  }

  const chunks = chunksOf({ from: new Date(window.from), to: new Date(window.to) });
  try {
    await compareWithStripe(ref, chunks, progress, input);
    const flows = await db.reconcileFlows({ ...ref, ...window });
    // The checker reads the whole ledger: the daily and manual runs do it, not every sweep.
    const ledger =
      input.trigger === 'sweep' ? { ok: null, violations: 0 } : await db.reconcileLedger(ref);
    const canary =
      input.trigger === 'sweep' && (input.canaryCredits ?? 0) > 0
        ? await runCanary(runId, input.canaryCredits!)
        : null;
    const summary = {
      matched: progress.matched,
      listed: progress.listed,
      cutoffs: { stripe: progress.stripe ? window.to : null, database: flows.cutoff },
      chunks: { done: chunks.length, total: chunks.length },
      continuedAsNew: progress.continuedAsNew,
      ledger,
      canary,
    };
    await db.finishReconciliationRun({ runId, status: 'completed', summary });
  } catch (err) {
    if (isContinueAsNew(err)) throw err;
    await db.finishReconciliationRun({
      runId,
      status: 'failed',
      error: err instanceof Error ? err.message : String(err),
      summary: {
        matched: progress.matched,
        listed: progress.listed,
        cutoffs: { stripe: null, database: null },
        chunks: { done: progress.next, total: chunks.length },
        continuedAsNew: progress.continuedAsNew,
        ledger: { ok: null, violations: 0 },
        canary: null,
      },
    });
    throw err;
  }
  return { runId };
}

/** The window from the input, or from the schedule's action time (the same on every replay). */
function windowOf(input: ReconciliationInput): { from: string; to: string } {
  const info = workflowInfo();
  const scheduledAt = info.typedSearchAttributes.get(scheduledStartTime);
  const now = scheduledAt ?? info.startTime;
  const window = resolveWindow(input, now);
  return { from: window.from.toISOString(), to: window.to.toISOString() };
}

/**
 * Stripe, chunk by chunk; after CHUNKS_PER_RUN chunks the run continues as new with where it got
 * to, so a long window never grows one history without bound.
 */
async function compareWithStripe(
  ref: { runId: string; customerIds: string[] | null },
  chunks: Array<{ from: string; to: string }>,
  progress: Resume,
  input: ReconciliationInput,
): Promise<void> {
  let doneHere = 0;
  while (progress.next < chunks.length) {
    if (doneHere >= CHUNKS_PER_RUN) {
      await continueAsNew<typeof reconciliation>({
        ...input,
        runId: ref.runId,
        resume: { ...progress, continuedAsNew: progress.continuedAsNew + 1 },
      });
    }
    const chunk = chunks[progress.next]!;
    const result = await stripe.reconcileStripeChunk({ ...ref, ...chunk });
    progress.matched += result.matched;
    for (const [kind, n] of Object.entries(result.listed)) {
      progress.listed[kind] = (progress.listed[kind] ?? 0) + n;
    }
    progress.stripe = result.stripe;
    progress.next++;
    doneHere++;
  }
}

/**
 * The self-test: a real verification purchase on the canary customer that nobody answers, so it
 * must time out and be refunded; late or failed raises an alert.
 */
async function runCanary(
  runId: string,
  credits: number,
): Promise<NonNullable<ReconciliationSummary['canary']>> {
  const { customerId } = await db.prepareCanary({ runId, credits });
  const verificationId = `canary-${runId}`;
  const workflowId = workflowIds.verification(verificationId);
  const purchase: VerificationInput = {
    verificationId,
    customerId,
    service: 'canary',
    country: 'ZZ',
    price: credits,
    timeoutSeconds: CANARY_TIMEOUT_SECONDS,
  };
  let outcome: VerificationState | 'late' | Error;
  try {
    const child = await startChild<typeof verificationPurchase>('verificationPurchase', {
      workflowId,
      args: [purchase],
      // A late canary keeps running: its refund must still happen after this run ends.
      parentClosePolicy: ParentClosePolicy.ABANDON,
      typedSearchAttributes: [
        { key: searchAttributes.customerId, value: customerId },
        { key: searchAttributes.flowStatus, value: 'pending' },
      ],
    });
    outcome = await Promise.race([
      child.result(),
      sleep(CANARY_DEADLINE_MS).then(() => 'late' as const),
    ]);
  } catch (err) {
    outcome = err instanceof Error ? err : new Error(String(err));
  }
  if (outcome === 'late') {
    const detail = `canary ${workflowId} did not settle within ${CANARY_DEADLINE_MS / 1000} s`;
    await db.raiseCanaryAlert({ runId, kind: 'canary_late', message: detail });
    return { status: 'late', detail };
  }
  const checked =
    outcome instanceof Error
      ? { ok: false, detail: `canary ${workflowId} failed: ${outcome.message}` }
      : await db.checkCanary({ verificationId, workflowId, customerId });
  if (!checked.ok) {
    await db.raiseCanaryAlert({ runId, kind: 'canary_failed', message: checked.detail });
    return { status: 'failed', detail: checked.detail };
  }
  return { status: 'passed', detail: checked.detail };
}

function isContinueAsNew(err: unknown): boolean {
  return err instanceof Error && err.name === 'ContinueAsNew';
}
