// Workflow interceptors bundled with every worker's workflow code. They add no command and read
// no state, so histories replay the same with or without them:
// - the request id that started the flow (a Temporal header) is kept, added to the workflow's log
//   lines and passed on to every activity, child and continuation it starts;
// - how the workflow closed (completed, failed, cancelled) is reported through a sink, which the
//   worker counts (sinks are not called while replaying, so a closing is counted once).
import {
  ContinueAsNew,
  TemporalFailure,
  isCancellation,
  proxySinks,
  type WorkflowInterceptorsFactory,
} from '@temporalio/workflow';
import {
  requestIdFrom,
  withRequestId,
  type OutcomeSinks,
  type WorkflowOutcome,
} from '../observability/request-id.js';

const { workflowOutcomes } = proxySinks<OutcomeSinks>();

/** What execute's error means for the workflow: closed (and how), or not closed at all. */
function outcomeOf(err: unknown): WorkflowOutcome | undefined {
  if (err instanceof ContinueAsNew) return undefined;
  if (isCancellation(err)) return 'cancelled';
  // Anything but a Temporal failure fails the workflow task (retried), not the workflow.
  return err instanceof TemporalFailure ? 'failed' : undefined;
}

export const interceptors: WorkflowInterceptorsFactory = () => {
  let requestId: string | undefined;
  return {
    inbound: [
      {
        async execute(input, next) {
          requestId = requestIdFrom(input.headers);
          try {
            const result = await next(input);
            workflowOutcomes.closed('completed');
            return result;
          } catch (err) {
            const outcome = outcomeOf(err);
            if (outcome) workflowOutcomes.closed(outcome);
            throw err;
          }
        },
      },
    ],
    outbound: [
      {
        scheduleActivity: (input, next) =>
          next({ ...input, headers: withRequestId(input.headers, requestId) }),
        scheduleLocalActivity: (input, next) =>
          next({ ...input, headers: withRequestId(input.headers, requestId) }),
        startChildWorkflowExecution: (input, next) =>
          next({ ...input, headers: withRequestId(input.headers, requestId) }),
        continueAsNew: (input, next) =>
          next({ ...input, headers: withRequestId(input.headers, requestId) }),
        getLogAttributes: (input, next) => next(requestId ? { ...input, requestId } : input),
      },
    ],
  };
};
