// Hands what Stripe said about a checkout to its workflow, by signal-with-start: the webhook and
// reconciliation's "paid at Stripe, not credited" repair both come through here, so a payment can
// only ever be credited by its checkout workflow, which drops an event id it has already seen.
import type { Client } from '@temporalio/client';
import type { PaymentRecord } from '../activities/checkout.js';
import {
  searchAttributes,
  stripeOutcomeSignal,
  type CheckoutInput,
  type StripeOutcome,
} from '../shared.js';
import type { checkout } from '../workflows/checkout.js';

export interface CheckoutReportTarget {
  temporal: Client;
  taskQueue: string;
  /** The expiry a run started by the report gets (a late-payment run never opens a session). */
  expiresInSeconds: number;
}

/**
 * Running workflow: the signal reaches it. Closed (expired, failed) or never started: a new run
 * takes the outcome, which is the late-payment path.
 */
export async function reportCheckoutOutcome(
  { temporal, taskQueue, expiresInSeconds }: CheckoutReportTarget,
  payment: PaymentRecord,
  outcome: StripeOutcome,
): Promise<{ workflowId: string }> {
  const input: CheckoutInput = {
    paymentId: payment.id,
    // The payment record, not the report, says what was bought.
    customerId: payment.customerId,
    pack: payment.pack,
    credits: payment.credits,
    amount: payment.amount,
    currency: payment.currency,
    expiresInSeconds,
    startedBy: 'webhook',
  };
  await temporal.workflow.signalWithStart<typeof checkout, [StripeOutcome]>('checkout', {
    taskQueue,
    workflowId: payment.workflowId,
    args: [input],
    signal: stripeOutcomeSignal,
    signalArgs: [outcome],
    memo: { input },
    typedSearchAttributes: [
      { key: searchAttributes.customerId, value: input.customerId },
      { key: searchAttributes.flowStatus, value: payment.status },
    ],
  });
  return { workflowId: payment.workflowId };
}
