// reconciliation: compares Stripe, the payments and the ledger for a window, repairs what is safe.
import { ApplicationFailure } from '@temporalio/workflow';
import type { ReconciliationInput } from '../shared.js';

/** One reconciliation run (scheduled daily, every few minutes as a sweep, or on demand). */
export function reconciliation(input: ReconciliationInput): Promise<{ runId: string }> {
  return Promise.reject(
    ApplicationFailure.nonRetryable(`reconciliation ${input.runId} is not built yet`),
  );
}
