// Connections to Temporal for the API (client) and the worker, from config.
import { Client, Connection } from '@temporalio/client';
import type { Logger } from '@temporalio/common';
import {
  bundleWorkflowCode,
  NativeConnection,
  Runtime,
  Worker,
  type BundleOptions,
  type WorkerOptions,
} from '@temporalio/worker';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Configuration as WebpackConfiguration } from 'webpack';
import type { Activities } from './activities/index.js';
import { compiled, projectRoot, siblingModule } from './paths.js';
import {
  clientInterceptors,
  workerObservability,
  workflowInterceptorModules,
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

export const workflowsPath = siblingModule('./workflows/index', import.meta.url);

/**
 * Where `npm run build` writes the prebundled workflows, beside the compiled dist/src/:
 * dist/workflow-bundle.js, and dist/workflow-bundle-tracing.js with OpenTelemetry's workflow
 * interceptors for a worker that traces. Only the build has them; under tsx the worker bundles
 * at start.
 */
export function prebundledWorkflowsPath(options: { tracing: boolean }): string | undefined {
  if (!compiled) return undefined;
  const file = options.tracing ? 'workflow-bundle-tracing.js' : 'workflow-bundle.js';
  return fileURLToPath(new URL(`../${file}`, import.meta.url));
}

/** Lets the workflow bundler resolve our NodeNext-style `./x.js` imports to `./x.ts` sources. */
export function webpackConfigHook(config: WebpackConfiguration): WebpackConfiguration {
  config.resolve = {
    ...config.resolve,
    extensionAlias: { '.js': ['.ts', '.js'] },
  };
  return config;
}

/**
 * How the workflows are bundled, for the build's prebundle and a development worker's bundle at
 * start alike, so both run the same code with the same settings. Workflow interceptor modules
 * belong here (`workflowInterceptorModules`): a worker given a bundle ignores its own.
 */
export function workflowBundleOptions(
  logger?: Logger,
  options: { tracing?: boolean } = {},
): BundleOptions {
  return {
    workflowsPath,
    webpackConfigHook,
    workflowInterceptorModules: workflowInterceptorModules({ tracing: options.tracing ?? false }),
    ...(logger ? { logger } : {}),
  };
}

/** The build id a worker registers unless WORKER_BUILD_ID names one: version + workflow code. */
export function defaultBuildId(bundleCode: string): string {
  const hash = createHash('sha256').update(bundleCode).digest('hex').slice(0, 12);
  return `${packageVersion()}+${hash}`;
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as {
    version?: string;
  };
  return pkg.version ?? '0.0.0';
}

/** A worker's Temporal deployment version, and whether Temporal routes its tasks by it. */
export interface WorkerDeployment {
  name: string;
  /** Unset: {@link defaultBuildId} of the workflow bundle the worker runs. */
  buildId?: string | undefined;
  /** false: unversioned (any worker of the task queue takes any task); the version is reported only. */
  versioning: false | 'pinned' | 'auto-upgrade';
}

export interface WorkerSetup {
  target: TemporalTarget;
  taskQueue: string;
  activities: Activities;
  /** A prebuilt workflow bundle (the build's, or the tests' one per run); otherwise bundled at start. */
  workflowBundle?: { codePath: string };
  /** Unset: deployment `creditflow`, the default build id, unversioned. */
  deployment?: WorkerDeployment;
  options?: Partial<WorkerOptions>;
  /** Request ids into activity logs, workflow outcome counts, and spans when tracing. */
  observability?: WorkerObservability;
}

export async function createWorker(
  setup: WorkerSetup,
): Promise<{ worker: Worker; connection: NativeConnection; buildId: string }> {
  const connection = await NativeConnection.connect({
    address: setup.target.address,
    tls: setup.target.tls || Boolean(setup.target.apiKey) ? {} : undefined,
    apiKey: setup.target.apiKey,
  });
  const observed = workerObservability(setup.observability);
  const { bundle, code } = setup.workflowBundle
    ? {
        bundle: setup.workflowBundle,
        code: await readFile(setup.workflowBundle.codePath, 'utf8'),
      }
    : await bundleWorkflowCode(
        workflowBundleOptions(Runtime.instance().logger, {
          tracing: Boolean(setup.observability?.tracing),
        }),
      ).then((built) => ({ bundle: built, code: built.code }));
  const deployment = setup.deployment ?? { name: 'creditflow', versioning: false };
  const buildId = deployment.buildId ?? defaultBuildId(code);
  const worker = await Worker.create({
    connection,
    namespace: setup.target.namespace,
    taskQueue: setup.taskQueue,
    activities: setup.activities,
    workflowBundle: bundle,
    workerDeploymentOptions: {
      version: { deploymentName: deployment.name, buildId },
      ...(deployment.versioning
        ? {
            useWorkerVersioning: true,
            defaultVersioningBehavior:
              deployment.versioning === 'pinned' ? 'PINNED' : 'AUTO_UPGRADE',
          }
        : { useWorkerVersioning: false }),
    },
    // The bundle holds the workflow interceptor modules (workflowBundleOptions).
    interceptors: { activity: observed.activityInterceptors },
    sinks: observed.sinks,
    ...setup.options,
  });
  return { worker, connection, buildId };
}
