// grant: a grant's life in a workflow — posts an admin grant, then waits for its expiry (or a
// void) and closes it exactly once. Id `grant-<grantId>`.
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import {
  ParentClosePolicy,
  condition,
  proxyActivities,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { PostGrantInput } from '../activities/grants.js';
import {
  grantStateQuery,
  searchAttributes,
  voidGrantSignal,
  type GrantFlowState,
  type GrantFlowStatus,
} from '../shared.js';
import { finalFailure } from './failures.js';
import { DB_STEP_START_TO_CLOSE_MS, HEARTBEAT_TIMEOUT_MS } from './timeouts.js';

const { postGrant, recordGrantRefused, expireGrant, voidGrant } = proxyActivities<Activities>({
  startToCloseTimeout: DB_STEP_START_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  // Infrastructure failures retry until they succeed; business refusals are non-retryable.
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

export interface GrantWorkflowInput {
  grantId: string;
  customerId: string;
  /** When set the grant does not exist yet: this workflow posts it first (admin grants). */
  create?: {
    credits: number;
    category: 'paid' | 'promotional';
    source: 'adjustment' | 'promotion';
    effectiveAt?: string | null;
    priority?: number;
    reason: string;
    requestedBy: string;
    /** Hash of the API request, kept on the grant so a repeated Idempotency-Key can be compared. */
    requestHash?: string | null;
  };
  /** ISO instant at which the grant expires; none: the workflow only waits for a void. */
  expiresAt?: string | null;
}

export interface GrantWorkflowResult {
  grantId: string;
  status: 'open' | 'expired' | 'voided' | 'rejected';
  /** Credits the expiry or void moved to breakage. */
  closedCredits?: number | null;
  error?: { code: string; message: string } | null;
}

/**
 * Posts the grant when asked to, then waits until its expiresAt (a durable timer) or a `void`
 * signal, whichever comes first, and closes it once. A grant that never expires ends the run after
 * posting; a later void starts a fresh run by signal-with-start.
 */
export async function grant(input: GrantWorkflowInput): Promise<GrantWorkflowResult> {
  const state: GrantFlowState = {
    grantId: input.grantId,
    customerId: input.customerId,
    workflowId: workflowInfo().workflowId,
    status: input.create ? 'pending' : 'open',
    expiresAt: input.expiresAt ?? null,
    entryId: null,
    closedCredits: null,
    voidRequested: null,
    error: null,
  };
  setHandler(grantStateQuery, () => state);
  setHandler(voidGrantSignal, (request) => {
    state.voidRequested ??= request;
  });
  upsertSearchAttributes([
    { key: searchAttributes.customerId, value: input.customerId },
    { key: searchAttributes.flowStatus, value: state.status },
  ]);

  if (input.create && !(await post(input, state))) return resultOf(state);
  await waitForExpiryOrVoid(state);
  if (state.voidRequested) await close(state, 'void');
  else if (state.expiresAt) await close(state, 'expiry');
  return resultOf(state);
}

function move(state: GrantFlowState, status: GrantFlowStatus): void {
  state.status = status;
  upsertSearchAttributes([{ key: searchAttributes.flowStatus, value: status }]);
}

function resultOf(state: GrantFlowState): GrantWorkflowResult {
  return {
    grantId: state.grantId,
    status: state.status === 'pending' ? 'open' : state.status,
    closedCredits: state.closedCredits,
    error: state.error,
  };
}

/** Posts the admin grant; false when the ledger refused it (recorded, nothing posted). */
async function post(input: GrantWorkflowInput, state: GrantFlowState): Promise<boolean> {
  const create = input.create!;
  const args: PostGrantInput = {
    grantId: input.grantId,
    customerId: input.customerId,
    workflowId: state.workflowId,
    credits: create.credits,
    category: create.category,
    source: create.source,
    effectiveAt: create.effectiveAt ?? null,
    expiresAt: input.expiresAt ?? null,
    priority: create.priority ?? 100,
    reason: create.reason,
    requestedBy: create.requestedBy,
    requestHash: create.requestHash ?? null,
  };
  try {
    const posted = await postGrant(args);
    state.entryId = posted.entryId;
    move(state, 'open');
    return true;
  } catch (err) {
    const refusal = finalFailure(err);
    if (!refusal) throw err;
    state.error = { code: refusal.type ?? 'rejected', message: refusal.message };
    await recordGrantRefused({ ...args, error: state.error });
    move(state, 'rejected');
    return false;
  }
}

/** Until expiresAt (a timer that survives worker restarts) or a void, whichever is first. */
async function waitForExpiryOrVoid(state: GrantFlowState): Promise<void> {
  if (!state.expiresAt) return;
  const wait = Date.parse(state.expiresAt) - Date.now();
  if (wait > 0) await condition(() => state.voidRequested !== null, wait);
}

/** Expires or voids the grant; a repeat moves nothing, a refusal is kept in the state. */
async function close(state: GrantFlowState, kind: 'expiry' | 'void'): Promise<void> {
  try {
    const closed =
      kind === 'void'
        ? await voidGrant({
            grantId: state.grantId,
            workflowId: state.workflowId,
            ...state.voidRequested!,
          })
        : await expireGrant({ grantId: state.grantId, workflowId: state.workflowId });
    state.closedCredits = closed.credits;
    move(state, closed.status);
  } catch (err) {
    const refusal = finalFailure(err);
    if (!refusal) throw err;
    state.error = { code: refusal.type ?? 'rejected', message: refusal.message };
  }
}

/**
 * From a parent workflow that created a grant with an expiry: starts `grant-<id>` to expire it on
 * time, abandoned so it outlives the parent; a lifecycle already running is left alone.
 */
export async function watchGrantExpiry(
  grantId: string,
  customerId: string,
  expiresAt: string,
): Promise<void> {
  try {
    await startChild(grant, {
      workflowId: `grant-${grantId}`,
      args: [{ grantId, customerId, expiresAt }],
      parentClosePolicy: ParentClosePolicy.ABANDON,
    });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
}
