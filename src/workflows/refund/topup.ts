// refund (topup): gives a top-up's money back through Stripe after taking its credits back.
import { ApplicationFailure } from '@temporalio/workflow';
import type { RefundInput, RefundState } from '../../shared.js';

/** Refund kind `topup`: gives a top-up's money back through Stripe after taking its credits back. */
export function topupRefund(input: RefundInput): Promise<RefundState> {
  return Promise.reject(
    ApplicationFailure.nonRetryable(`refund kind ${input.kind} is not built yet`),
  );
}
