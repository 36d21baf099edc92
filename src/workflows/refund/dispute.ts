// refund (dispute): holds a disputed payment's credits, then releases or writes them off.
import { ApplicationFailure } from '@temporalio/workflow';
import type { RefundInput, RefundState } from '../../shared.js';

/** Refund kind `dispute`: holds a disputed payment's credits, then releases or writes them off. */
export function disputeRefund(input: RefundInput): Promise<RefundState> {
  return Promise.reject(
    ApplicationFailure.nonRetryable(`refund kind ${input.kind} is not built yet`),
  );
}
