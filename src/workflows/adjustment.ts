// adjustment: an admin credits or debits a wallet, through the ledger, with an audit record.
import {
  ApplicationFailure,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { DB_STEP_START_TO_CLOSE_MS, HEARTBEAT_TIMEOUT_MS } from './timeouts.js';
import {
  adjustmentStateQuery,
  searchAttributes,
  type AdjustmentInput,
  type AdjustmentState,
  type AdjustmentStatus,
} from '../shared.js';
import { businessFailure } from './failures.js';

const { applyAdjustment, rejectAdjustment } = proxyActivities<Activities>({
  startToCloseTimeout: DB_STEP_START_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  // Infrastructure failures retry until they succeed; business refusals are non-retryable.
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** Posts one admin adjustment; fails with the refusal's type when the ledger refuses it. */
export async function adjustment(input: AdjustmentInput): Promise<AdjustmentState> {
  const { workflowId, startTime } = workflowInfo();
  const state: AdjustmentState = {
    ...input,
    id: input.adjustmentId,
    workflowId,
    status: 'pending',
    entryId: null,
    balanceAfter: null,
    error: null,
    createdAt: startTime.toISOString(),
    updatedAt: startTime.toISOString(),
  };
  setHandler(adjustmentStateQuery, () => state);
  const move = (status: AdjustmentStatus) => {
    state.status = status;
    state.updatedAt = new Date().toISOString();
    upsertSearchAttributes([{ key: searchAttributes.flowStatus, value: status }]);
  };

  try {
    const posted = await applyAdjustment({ ...input, workflowId });
    state.entryId = posted.entryId;
    state.balanceAfter = posted.balanceAfter;
    move('completed');
    return state;
  } catch (err) {
    const refusal = businessFailure(err);
    if (!refusal) throw err;
    state.error = { code: refusal.type ?? 'rejected', message: refusal.message };
    await rejectAdjustment({ ...input, workflowId, error: state.error });
    move('rejected');
    throw ApplicationFailure.create({
      message: refusal.message,
      type: refusal.type ?? undefined,
      nonRetryable: true,
      details: [state],
    });
  }
}
