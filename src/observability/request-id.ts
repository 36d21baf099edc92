// The request id that started a flow, as it travels in Temporal headers: from the API's client
// call to the workflow, and from the workflow to each activity and child it starts. Shared by the
// client, the workflow sandbox and the worker, so it imports nothing with I/O.
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import type { Sinks } from '@temporalio/workflow';

/** The Temporal header that carries the request id. */
export const REQUEST_ID_HEADER = 'creditflow-request-id';

/** The request id in a set of Temporal headers, if one is there and readable. */
export function requestIdFrom(headers: Record<string, Payload> | undefined): string | undefined {
  const payload = headers?.[REQUEST_ID_HEADER];
  if (!payload) return undefined;
  try {
    const value: unknown = defaultPayloadConverter.fromPayload(payload);
    return typeof value === 'string' && value !== '' ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The headers with the request id added; a header already set (an explicit one) is kept. */
export function withRequestId(
  headers: Record<string, Payload>,
  requestId: string | undefined,
): Record<string, Payload> {
  if (!requestId || headers[REQUEST_ID_HEADER]) return headers;
  return { ...headers, [REQUEST_ID_HEADER]: defaultPayloadConverter.toPayload(requestId) };
}

/** How a workflow closed, as the worker counts it (a timeout is decided by the server). */
export type WorkflowOutcome = 'completed' | 'failed' | 'cancelled';

/** The sink through which workflows report how they closed; the worker turns it into a metric. */
export interface OutcomeSinks extends Sinks {
  workflowOutcomes: { closed(outcome: WorkflowOutcome): void };
}
