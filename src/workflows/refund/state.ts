// What every kind of refund workflow shares: its state, answered by the `state` query.
import { setHandler, workflowInfo } from '@temporalio/workflow';
import {
  refundStateFromInput,
  refundStateQuery,
  type RefundInput,
  type RefundState,
} from '../../shared.js';

/** The first state of a refund run, answered by the `state` query from then on. */
export function refundState(input: RefundInput): RefundState {
  const { workflowId, startTime } = workflowInfo();
  const state = refundStateFromInput(input, {
    workflowId,
    status: 'pending',
    createdAt: startTime.toISOString(),
    updatedAt: startTime.toISOString(),
  });
  setHandler(refundStateQuery, () => state);
  return state;
}
