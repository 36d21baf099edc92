// refund (stripe): takes back the credits of what Stripe reports refunded (charge.refunded).
import { ApplicationFailure } from '@temporalio/workflow';
import type { RefundInput, RefundState } from '../../shared.js';

/** Refund kind `stripe`: takes back the credits of what Stripe reports refunded (charge.refunded). */
export function stripeRefund(input: RefundInput): Promise<RefundState> {
  return Promise.reject(
    ApplicationFailure.nonRetryable(`refund kind ${input.kind} is not built yet`),
  );
}
