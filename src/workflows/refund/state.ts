// What every kind of refund workflow shares: its state, answered by the `state` query.
import { setHandler, workflowInfo } from '@temporalio/workflow';
import { refundStateQuery, type RefundInput, type RefundState } from '../../shared.js';

/** The first state of a refund run, answered by the `state` query from then on. */
export function refundState(input: RefundInput): RefundState {
  const { workflowId, startTime } = workflowInfo();
  const state: RefundState = {
    id: input.refundId,
    workflowId,
    kind: input.kind,
    customerId: input.customerId,
    paymentId: input.paymentId ?? null,
    verificationId: input.verificationId ?? null,
    orderId: input.orderId ?? null,
    itemId: input.itemId ?? null,
    status: 'pending',
    credits: input.credits ?? 0,
    amount: 0,
    currency: null,
    debtCredits: 0,
    reason: input.reason,
    error: null,
    createdAt: startTime.toISOString(),
    updatedAt: startTime.toISOString(),
  };
  setHandler(refundStateQuery, () => state);
  return state;
}
