// Reading a flow's state the same way everywhere: live from the workflow while it runs, from
// the read model once it has closed, and from the workflow's own description when no worker
// answers in time (so a dead worker never makes a GET hang).
import {
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type Client,
  type WorkflowExecutionDescription,
  type WorkflowHandle,
  type WorkflowIdConflictPolicy,
  type WorkflowStartOptions,
} from '@temporalio/client';
import type { QueryDefinition, Workflow } from '@temporalio/common';
import { searchAttributes } from '../shared.js';
import {
  isTemporalUnavailable,
  TEMPORAL_RETRY_AFTER_SECONDS,
  TEMPORAL_UNAVAILABLE_MESSAGE,
} from '../readiness/temporal-availability.js';
import { ApiError } from './errors.js';

/** How long a read waits for a worker to answer the workflow query. */
export const QUERY_DEADLINE_MS = 3_000;

/** How long a POST waits for Temporal to accept a start (TEMPORAL_START_TIMEOUT_MS). */
export const DEFAULT_START_TIMEOUT_MS = 3_000;

/** 503 with Retry-After: nothing was started, the same request can be sent again. */
export class TemporalUnavailableError extends ApiError {
  constructor() {
    super(503, 'temporal_unavailable', TEMPORAL_UNAVAILABLE_MESSAGE, {
      'Retry-After': String(TEMPORAL_RETRY_AFTER_SECONDS),
    });
  }
}

/**
 * Runs a call that starts (or signals-with-start) a workflow under a short deadline, so a POST
 * answers 503 quickly while Temporal is down instead of waiting out the client's retries.
 */
export async function withStartDeadline<T>(
  temporal: Client,
  timeoutMs: number | undefined,
  call: () => Promise<T>,
): Promise<T> {
  try {
    return await temporal.connection.withDeadline(
      Date.now() + (timeoutMs ?? DEFAULT_START_TIMEOUT_MS),
      call,
    );
  } catch (err) {
    if (isTemporalUnavailable(err)) throw new TemporalUnavailableError();
    throw err;
  }
}

/**
 * For a start that then waits on the worker (update-with-start): checks under the start deadline
 * that Temporal answers at all, without putting that short deadline on the wait itself.
 */
export async function ensureTemporalAnswers(
  temporal: Client,
  timeoutMs: number | undefined,
): Promise<void> {
  await withStartDeadline(temporal, timeoutMs, () => temporal.workflowService.getSystemInfo({}));
}

export interface StateSource<S> {
  workflowId: string;
  query: QueryDefinition<S>;
  /** The database read model, written as the flow moves. */
  fromRecord: () => Promise<S | undefined>;
  /** What the start memo and search attributes tell, without a worker. */
  fromDescription?: (description: WorkflowExecutionDescription) => S | undefined;
}

/** Under the query deadline too: a Temporal that does not answer fails the request quickly. */
export async function describeWorkflow(
  handle: WorkflowHandle,
): Promise<WorkflowExecutionDescription | undefined> {
  try {
    return await handle.client.connection.withDeadline(Date.now() + QUERY_DEADLINE_MS, () =>
      handle.describe(),
    );
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
}

/** With `live: false` the workflow is never queried (e.g. right after starting it). */
export async function readFlowState<S>(
  temporal: Client,
  source: StateSource<S>,
  options: { live: boolean } = { live: true },
): Promise<S | undefined> {
  const handle = temporal.workflow.getHandle(source.workflowId);
  let description = await describeWorkflow(handle);
  if (description?.status.name === 'RUNNING') {
    if (options.live) {
      try {
        return await temporal.connection.withDeadline(Date.now() + QUERY_DEADLINE_MS, () =>
          handle.query(source.query),
        );
      } catch {
        // No worker answered in time, or the workflow closed while the query waited.
        description = await describeWorkflow(handle);
      }
    }
    if (description?.status.name === 'RUNNING') {
      const described = source.fromDescription?.(description);
      if (described) return described;
    }
  }
  const record = await source.fromRecord();
  if (record) return record;
  return description ? source.fromDescription?.(description) : undefined;
}

export interface FlowStart<W extends Workflow> {
  /** The workflow's registered name (its function's name). */
  workflowType: string;
  workflowId: string;
  taskQueue: string;
  input: Parameters<W>[0];
  customerId: string;
  /** FlowStatus while the workflow has not said otherwise. */
  initialStatus: string;
  /** Deadline for Temporal to accept the start; DEFAULT_START_TIMEOUT_MS when absent. */
  startTimeoutMs?: number | undefined;
}

/**
 * Starts a flow under its business id, or finds the one a previous request with the same key
 * started (running: USE_EXISTING; closed: REJECT_DUPLICATE). The input travels in the memo too,
 * so a repeated request can be compared with the first without a worker. Temporal not answering
 * within the start deadline is a TemporalUnavailableError (503, Retry-After).
 */
export async function startOrFindFlow<W extends Workflow>(
  temporal: Client,
  start: FlowStart<W>,
): Promise<WorkflowHandle<W>> {
  try {
    const options = flowStartOptions(start);
    return await withStartDeadline(temporal, start.startTimeoutMs, () =>
      temporal.workflow.start<W>(start.workflowType, options),
    );
  } catch (err) {
    // A closed workflow with this id: the key was used before; answer with that one.
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    return temporal.workflow.getHandle<W>(start.workflowId);
  }
}

/** The start options every flow uses: business id, input in the memo, customer and status. */
function flowStartOptions<W extends Workflow>(
  start: FlowStart<W>,
): WorkflowStartOptions<W> & { workflowIdConflictPolicy: WorkflowIdConflictPolicy } {
  return {
    taskQueue: start.taskQueue,
    workflowId: start.workflowId,
    args: [start.input] as Parameters<W>,
    memo: { input: start.input },
    workflowIdConflictPolicy: 'USE_EXISTING',
    workflowIdReusePolicy: 'REJECT_DUPLICATE',
    typedSearchAttributes: [
      { key: searchAttributes.customerId, value: start.customerId },
      { key: searchAttributes.flowStatus, value: start.initialStatus },
    ],
    // Every flow takes exactly one input object; TypeScript cannot see that through W.
  } as unknown as WorkflowStartOptions<W> & { workflowIdConflictPolicy: WorkflowIdConflictPolicy };
}

/**
 * The same start as {@link startOrFindFlow}, as the start half of an update-with-start: one call
 * that starts (or finds the running) flow and waits for its update, instead of two.
 */
export function flowStartOperation<W extends Workflow>(
  start: FlowStart<W>,
): WithStartWorkflowOperation<W> {
  return new WithStartWorkflowOperation<W>(start.workflowType, flowStartOptions(start));
}
