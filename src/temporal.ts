// Connections to Temporal for the API (client) and the worker, from config.
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { fileURLToPath } from 'node:url';
import type { Configuration as WebpackConfiguration } from 'webpack';
import type { Activities } from './activities/index.js';
import {
  clientInterceptors,
  workerObservability,
  type WorkerObservability,
} from './observability/temporal-interceptors.js';
import type { Tracing } from './observability/tracing.js';

export interface TemporalTarget {
  address: string;
  namespace: string;
  apiKey?: string | undefined;
  tls?: boolean;
}

/** A client whose workflow starts carry the request id being served (and a span when tracing). */
export async function connectClient(
  target: TemporalTarget,
  observability: { tracing?: Tracing | undefined } = {},
): Promise<Client> {
  const connection = await Connection.connect({
    address: target.address,
    tls: target.tls || Boolean(target.apiKey) ? {} : undefined,
    apiKey: target.apiKey,
  });
  return new Client({
    connection,
    namespace: target.namespace,
    interceptors: { workflow: clientInterceptors(observability.tracing) },
  });
}

export const workflowsPath = fileURLToPath(new URL('./workflows/index.ts', import.meta.url));

/** Lets the workflow bundler resolve our NodeNext-style `./x.js` imports to `./x.ts` sources. */
export function webpackConfigHook(config: WebpackConfiguration): WebpackConfiguration {
  config.resolve = {
    ...config.resolve,
    extensionAlias: { '.js': ['.ts', '.js'] },
  };
  return config;
}

export interface WorkerSetup {
  target: TemporalTarget;
  taskQueue: string;
  activities: Activities;
  /** A prebuilt workflow bundle (tests build one per run); otherwise bundled at start. */
  workflowBundle?: { codePath: string };
  options?: Partial<WorkerOptions>;
  /** Request ids into activity logs, workflow outcome counts, and spans when tracing. */
  observability?: WorkerObservability;
}

export async function createWorker(
  setup: WorkerSetup,
): Promise<{ worker: Worker; connection: NativeConnection }> {
  const connection = await NativeConnection.connect({
    address: setup.target.address,
    tls: setup.target.tls || Boolean(setup.target.apiKey) ? {} : undefined,
    apiKey: setup.target.apiKey,
  });
  const observed = workerObservability(setup.observability);
  const worker = await Worker.create({
    connection,
    namespace: setup.target.namespace,
    taskQueue: setup.taskQueue,
    activities: setup.activities,
    ...(setup.workflowBundle
      ? { workflowBundle: setup.workflowBundle }
      : { workflowsPath, bundlerOptions: { webpackConfigHook } }),
    interceptors: {
      activity: observed.activityInterceptors,
      // A prebuilt bundle already holds its interceptor modules (workflowInterceptorModules).
      ...(setup.workflowBundle ? {} : { workflowModules: observed.workflowModules }),
    },
    sinks: observed.sinks,
    ...setup.options,
  });
  return { worker, connection };
}
