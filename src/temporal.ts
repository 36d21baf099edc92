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

export interface TemporalTarget {
  address: string;
  namespace: string;
  apiKey?: string | undefined;
  tls?: boolean;
}

export async function connectClient(target: TemporalTarget): Promise<Client> {
  const connection = await Connection.connect({
    address: target.address,
    tls: target.tls || Boolean(target.apiKey) ? {} : undefined,
    apiKey: target.apiKey,
  });
  return new Client({ connection, namespace: target.namespace });
}

export const workflowsPath = siblingModule('./workflows/index', import.meta.url);

/**
 * Where `npm run build` writes the prebundled workflows: dist/workflow-bundle.js, beside the
 * compiled dist/src/. Only the build has one; under tsx the worker bundles at start.
 */
export const prebundledWorkflowsPath = compiled
  ? fileURLToPath(new URL('../workflow-bundle.js', import.meta.url))
  : undefined;

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
export function workflowBundleOptions(logger?: Logger): BundleOptions {
  return { workflowsPath, webpackConfigHook, ...(logger ? { logger } : {}) };
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
}

export async function createWorker(
  setup: WorkerSetup,
): Promise<{ worker: Worker; connection: NativeConnection; buildId: string }> {
  const connection = await NativeConnection.connect({
    address: setup.target.address,
    tls: setup.target.tls || Boolean(setup.target.apiKey) ? {} : undefined,
    apiKey: setup.target.apiKey,
  });
  const { bundle, code } = setup.workflowBundle
    ? {
        bundle: setup.workflowBundle,
        code: await readFile(setup.workflowBundle.codePath, 'utf8'),
      }
    : await bundleWorkflowCode(workflowBundleOptions(Runtime.instance().logger)).then((built) => ({
        bundle: built,
        code: built.code,
      }));
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
    ...setup.options,
  });
  return { worker, connection, buildId };
}
