// Hands what Stripe reported about refunds and disputes to the refund workflow, by
// signal-with-start: the webhook and reconciliation's repairs both come through here, so a report
// reaches one workflow per payment (or dispute), which drops an event id it has seen.
import type { Client } from '@temporalio/client';
import {
  disputeSignal,
  searchAttributes,
  stripeRefundSignal,
  workflowIds,
  type DisputeReport,
  type RefundInput,
  type StripeRefundReport,
} from '../shared.js';
import type { refund } from '../workflows/refund/index.js';

export interface ReportTarget {
  temporal: Client;
  taskQueue: string;
}

/** Whom the report is about, from our payments table. */
export interface ReportedPayment {
  paymentId: string;
  customerId: string;
}

/** The refund id of the workflow that follows Stripe-made refunds of one payment. */
export const stripeRefundId = (paymentId: string) => `stripe-${paymentId}`;
/** The refund id of the workflow that follows one dispute. */
export const disputeRefundId = (disputeId: string) => `dispute-${disputeId}`;

/** charge.refunded (or reconciliation found a refund at Stripe not taken back). */
export async function reportStripeRefund(
  { temporal, taskQueue }: ReportTarget,
  payment: ReportedPayment,
  report: StripeRefundReport,
  startedBy: RefundInput['startedBy'],
): Promise<{ workflowId: string }> {
  const input: RefundInput = {
    refundId: stripeRefundId(payment.paymentId),
    kind: 'stripe',
    customerId: payment.customerId,
    paymentId: payment.paymentId,
    reason: 'refunded at Stripe',
    requestedBy: startedBy === 'reconciliation' ? 'reconciliation' : 'stripe',
    startedBy,
  };
  const workflowId = workflowIds.stripeRefund(payment.paymentId);
  await temporal.workflow.signalWithStart<typeof refund, [StripeRefundReport]>('refund', {
    taskQueue,
    workflowId,
    args: [input],
    signal: stripeRefundSignal,
    signalArgs: [report],
    memo: { input },
    typedSearchAttributes: [
      { key: searchAttributes.customerId, value: payment.customerId },
      { key: searchAttributes.flowStatus, value: 'pending' },
    ],
  });
  return { workflowId };
}

/** charge.dispute.created / updated / closed (or reconciliation found a dispute not followed). */
export async function reportDispute(
  { temporal, taskQueue }: ReportTarget,
  payment: ReportedPayment,
  report: DisputeReport,
  startedBy: RefundInput['startedBy'],
): Promise<{ workflowId: string }> {
  const input: RefundInput = {
    refundId: disputeRefundId(report.disputeId),
    kind: 'dispute',
    customerId: payment.customerId,
    paymentId: payment.paymentId,
    reason: report.reason ? `dispute: ${report.reason}` : 'dispute',
    requestedBy: startedBy === 'reconciliation' ? 'reconciliation' : 'stripe',
    startedBy,
  };
  const workflowId = workflowIds.dispute(report.disputeId);
  await temporal.workflow.signalWithStart<typeof refund, [DisputeReport]>('refund', {
    taskQueue,
    workflowId,
    args: [input],
    signal: disputeSignal,
    signalArgs: [report],
    memo: { input },
    typedSearchAttributes: [
      { key: searchAttributes.customerId, value: payment.customerId },
      { key: searchAttributes.flowStatus, value: 'disputed' },
    ],
  });
  return { workflowId };
}
