// refund (purchase): credits back a verification or an order item as an operator's goodwill.
import { ApplicationFailure } from '@temporalio/workflow';
import type { RefundInput, RefundState } from '../../shared.js';

/** Refund kind `purchase`: credits back a verification or an order item as an operator's goodwill. */
export function purchaseRefund(input: RefundInput): Promise<RefundState> {
  return Promise.reject(
    ApplicationFailure.nonRetryable(`refund kind ${input.kind} is not built yet`),
  );
}
