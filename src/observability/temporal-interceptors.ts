// What the Temporal client and worker add for observability: the request id in a header from the
// API to the workflow and on to its activities (always), OpenTelemetry spans (when tracing is on),
// and the sink through which workflows report how they closed (counted as a metric).
import type { WorkflowClientInterceptor } from '@temporalio/client';
import {
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryActivityOutboundInterceptor,
  OpenTelemetryWorkflowClientInterceptor,
  makeWorkflowExporter,
} from '@temporalio/interceptors-opentelemetry';
import type { ActivityInterceptorsFactory, InjectedSinks } from '@temporalio/worker';
import type { Counter } from 'prom-client';
import { createRequire } from 'node:module';
import { siblingModule } from '../paths.js';
import { currentRequestId, runInRequest } from './request-context.js';
import { requestIdFrom, withRequestId, type OutcomeSinks } from './request-id.js';
import type { Tracing } from './tracing.js';

/** Sends the request being served with every workflow it starts. */
const requestIdClientInterceptor: WorkflowClientInterceptor = {
  startWithDetails: (input, next) =>
    next({ ...input, headers: withRequestId(input.headers, currentRequestId()) }),
  signalWithStart: (input, next) =>
    next({ ...input, headers: withRequestId(input.headers, currentRequestId()) }),
  startUpdateWithStart: (input, next) =>
    next({
      ...input,
      workflowStartHeaders: withRequestId(input.workflowStartHeaders, currentRequestId()),
    }),
};

/** The workflow client interceptors of a process: the request id, and spans when tracing. */
export function clientInterceptors(tracing: Tracing | undefined): WorkflowClientInterceptor[] {
  return [
    // Outermost first: the span wraps the start, and the request id is added inside it.
    ...(tracing ? [new OpenTelemetryWorkflowClientInterceptor()] : []),
    requestIdClientInterceptor,
  ];
}

/**
 * Runs each activity as part of the request its flow started from, so its Temporal log lines
 * (through the activity logger's attributes) and any pino line written inside carry `requestId`.
 */
const requestIdActivityInterceptors: ActivityInterceptorsFactory = () => {
  let requestId: string | undefined;
  return {
    inbound: {
      execute(input, next) {
        requestId = requestIdFrom(input.headers);
        return requestId ? runInRequest(requestId, () => next(input)) : next(input);
      },
    },
    outbound: {
      getLogAttributes: (attributes, next) =>
        next(requestId ? { ...attributes, requestId } : attributes),
    },
  };
};

const otelActivityInterceptors: ActivityInterceptorsFactory = (ctx) => ({
  inbound: new OpenTelemetryActivityInboundInterceptor(ctx),
  outbound: new OpenTelemetryActivityOutboundInterceptor(ctx),
});

const requestIdWorkflowModule = siblingModule('../workflows/interceptors', import.meta.url);

/**
 * The workflow interceptor modules to bundle with the workflow code. Ours (request id, outcomes)
 * always; OpenTelemetry's only when tracing, so workflows run exactly as before when it is off.
 * A prebuilt bundle must be built with the same list (bundleWorkflowCode's
 * workflowInterceptorModules).
 */
export function workflowInterceptorModules(options: { tracing: boolean }): string[] {
  return [
    requestIdWorkflowModule,
    ...(options.tracing
      ? [
          createRequire(import.meta.url).resolve(
            '@temporalio/interceptors-opentelemetry/lib/workflow-interceptors',
          ),
        ]
      : []),
  ];
}

export interface WorkerObservability {
  tracing?: Tracing | undefined;
  /** Counts workflow closings by type and outcome; not counted when absent. */
  workflowOutcomes?: Counter<'workflow_type' | 'outcome'> | undefined;
}

/** The activity interceptors and sinks a worker registers. */
export function workerObservability(options: WorkerObservability = {}) {
  const sinks: InjectedSinks<OutcomeSinks> & Record<string, unknown> = {
    // Registered on every worker, counted or not: the bundled workflows always call it.
    workflowOutcomes: {
      closed: {
        fn: (info, outcome) =>
          options.workflowOutcomes?.inc({ workflow_type: info.workflowType, outcome }),
      },
    },
  };
  if (options.tracing) {
    sinks['exporter'] = makeWorkflowExporter(
      options.tracing.spanProcessor,
      options.tracing.resource,
    );
  }
  return {
    activityInterceptors: [
      ...(options.tracing ? [otelActivityInterceptors] : []),
      requestIdActivityInterceptors,
    ],
    workflowModules: workflowInterceptorModules({ tracing: Boolean(options.tracing) }),
    sinks,
  };
}
