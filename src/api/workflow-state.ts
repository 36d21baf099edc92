// Reading a flow's state the same way everywhere: live from the workflow while it runs, from
// the read model once it has closed, and from the workflow's own description when no worker
// answers in time (so a dead worker never makes a GET hang).
import {
  WorkflowNotFoundError,
  type Client,
  type WorkflowExecutionDescription,
  type WorkflowHandle,
} from '@temporalio/client';
import type { QueryDefinition } from '@temporalio/common';

/** How long a read waits for a worker to answer the workflow query. */
export const QUERY_DEADLINE_MS = 3_000;

export interface StateSource<S> {
  workflowId: string;
  query: QueryDefinition<S>;
  /** The database read model, written as the flow moves. */
  fromRecord: () => Promise<S | undefined>;
  /** What the start memo and search attributes tell, without a worker. */
  fromDescription?: (description: WorkflowExecutionDescription) => S | undefined;
}

export async function describeWorkflow(
  handle: WorkflowHandle,
): Promise<WorkflowExecutionDescription | undefined> {
  try {
    return await handle.describe();
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
