// What the refunds requested through the API share: the `refundDecided` update the POST waits on,
// the FlowStatus operators filter on, the row written at each status change, and the end.
import {
  ApplicationFailure,
  condition,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import {
  refundDecidedUpdate,
  searchAttributes,
  type RefundInput,
  type RefundState,
  type RefundStatus,
} from '../../shared.js';
import { finalFailure } from '../failures.js';
import { DB_STEP_START_TO_CLOSE_MS, HEARTBEAT_TIMEOUT_MS } from '../timeouts.js';
import { refundState } from './state.js';

const { recordRefundState } = proxyActivities<Activities>({
  startToCloseTimeout: DB_STEP_START_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

export type RefundError = { code: string; message: string };

/** The refusal an activity raised (non-retryable), as the refund's error; else rethrows. */
export function refusedBy(err: unknown): RefundError {
  const failure = finalFailure(err);
  if (!failure) throw err;
  return { code: failure.type ?? 'rejected', message: failure.message };
}

export interface RefundLifecycle {
  state: RefundState;
  /** Moves to a status (and records it); `extra` goes to the row only. */
  enter(
    status: RefundStatus,
    patch?: Partial<RefundState>,
    extra?: { stripeRefundId?: string | null },
  ): Promise<void>;
  /** Records the outcome; `failed` also fails the workflow with the error's code. */
  finish(
    status: 'refunded' | 'rejected' | 'failed',
    error?: RefundError | null,
    extra?: { stripeRefundId?: string | null },
  ): Promise<RefundState>;
}

/** The state, its update handler and its recorder; call before the first await. */
export function refundLifecycle(input: RefundInput): RefundLifecycle {
  const state = refundState(input);
  // The POST waits for this: answered once the refund is accepted (processing) or has ended.
  setHandler(refundDecidedUpdate, async () => {
    await condition(() => state.status !== 'pending', '10 minutes');
    return state;
  });

  const enter: RefundLifecycle['enter'] = async (status, patch = {}, extra = {}) => {
    Object.assign(state, patch);
    state.status = status;
    state.updatedAt = new Date().toISOString();
    upsertSearchAttributes([{ key: searchAttributes.flowStatus, value: status }]);
    await recordRefundState({ state, requestedBy: input.requestedBy, ...extra });
  };

  const finish: RefundLifecycle['finish'] = async (status, error = null, extra = {}) => {
    await enter(status, { error }, extra);
    // A refused request (rejected) is an answer, not a broken run; a refund that failed after
    // money moved is, so operators find it among the failed workflows.
    if (status === 'failed' && error) {
      throw ApplicationFailure.create({
        message: error.message,
        type: error.code,
        nonRetryable: true,
        details: [state],
      });
    }
    return state;
  };

  return { state, enter, finish };
}
