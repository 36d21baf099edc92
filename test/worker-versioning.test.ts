// Worker versioning: every worker registers its deployment version (build id) with Temporal; with
// WORKER_VERSIONING on, Temporal routes new runs to the deployment's current version and pins them.
import type { Client } from '@temporalio/client';
import { temporal as proto } from '@temporalio/proto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createActivities } from '../src/activities/index.js';
import type { Database } from '../src/db/client.js';
import { createLedger } from '../src/ledger/ledger.js';
import { freePort } from '../src/stack/ports.js';
import { workflowIds, type AdjustmentState } from '../src/shared.js';
import { createWorker, defaultBuildId, type WorkerDeployment } from '../src/temporal.js';
import type { adjustment } from '../src/workflows/adjustment.js';
import {
  connectTestClient,
  createCustomer,
  eventually,
  runWorkerProcess,
  spawnWorkerProcess,
  testDatabase,
  uniqueId,
} from './helpers.js';

let db: Database;
let temporal: Client;

beforeAll(async () => {
  db = testDatabase();
  temporal = await connectTestClient();
});

afterAll(async () => {
  await temporal.connection.close();
  await db.close();
});

/** Runs a worker on `taskQueue` as `deployment` while `body` runs. */
async function withWorker<T>(
  taskQueue: string,
  deployment: WorkerDeployment | undefined,
  body: (buildId: string) => Promise<T>,
): Promise<T> {
  const { worker, connection, buildId } = await createWorker({
    target: { address: inject('temporalAddress'), namespace: inject('temporalNamespace') },
    taskQueue,
    activities: createActivities({ db }),
    workflowBundle: { codePath: inject('workflowBundlePath') },
    ...(deployment ? { deployment } : {}),
  });
  try {
    return await worker.runUntil(body(buildId));
  } finally {
    await connection.close();
  }
}

/** The build ids of the workers polling `taskQueue` for workflow tasks, as Temporal sees them. */
async function pollingBuildIds(taskQueue: string): Promise<string[]> {
  const res = await temporal.workflowService.describeTaskQueue({
    namespace: inject('temporalNamespace'),
    taskQueue: { name: taskQueue },
    taskQueueType: proto.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
  });
  return (res.pollers ?? []).map((p) => p.deploymentOptions?.buildId ?? '');
}

function startAdjustment(taskQueue: string, customerId: string) {
  const id = uniqueId('adj');
  return temporal.workflow.start<typeof adjustment>('adjustment', {
    taskQueue,
    workflowId: workflowIds.adjustment(id),
    args: [{ adjustmentId: id, customerId, amount: 10, reason: 'versioning', requestedBy: 'test' }],
  });
}

describe('worker versioning', () => {
  it('an unversioned worker still registers its default build id: version + workflow code hash', async () => {
    const taskQueue = uniqueId('build-id');
    const expected = defaultBuildId(readFileSync(inject('workflowBundlePath'), 'utf8'));
    expect(expected).toMatch(/^\d+\.\d+\.\d+\+[0-9a-f]{12}$/);
    await withWorker(taskQueue, undefined, async (buildId) => {
      expect(buildId).toBe(expected);
      const seen = await eventually(async () => {
        const ids = await pollingBuildIds(taskQueue);
        return ids.length > 0 ? ids : undefined;
      });
      expect(seen).toContain(expected);
      // Unversioned: no current version needed, the worker takes the run.
      const customer = await createCustomer(db);
      const result: AdjustmentState = await startAdjustment(taskQueue, customer.id).then((h) =>
        h.result(),
      );
      expect(result.status).toBe('completed');
    });
  });

  it('with versioning on, a run goes to the current version and stays pinned to it', async () => {
    const taskQueue = uniqueId('versioned');
    const deploymentName = uniqueId('creditflow');
    const namespace = inject('temporalNamespace');
    await withWorker(
      taskQueue,
      { name: deploymentName, buildId: 'v1', versioning: 'pinned' },
      async () => {
        // The deployment and its version exist once the worker has polled.
        await eventually(async () => {
          const res = await temporal.workflowService.listWorkerDeployments({ namespace });
          const ours = (res.workerDeployments ?? []).find((d) => d.name === deploymentName);
          return ours?.latestVersionSummary?.deploymentVersion?.buildId === 'v1' ? true : undefined;
        });
        await temporal.workflowService.setWorkerDeploymentCurrentVersion({
          namespace,
          deploymentName,
          buildId: 'v1',
          identity: 'worker-versioning-test',
        });

        const customer = await createCustomer(db);
        const handle = await startAdjustment(taskQueue, customer.id);
        const result: AdjustmentState = await handle.result();
        expect(result.status).toBe('completed');
        expect(await createLedger(db.sql).walletBalance(customer.id)).toBe(10);

        const described = await temporal.workflowService.describeWorkflowExecution({
          namespace,
          execution: { workflowId: handle.workflowId },
        });
        const versioning = described.workflowExecutionInfo?.versioningInfo;
        expect(versioning?.behavior).toBe(
          proto.api.enums.v1.VersioningBehavior.VERSIONING_BEHAVIOR_PINNED,
        );
        expect(versioning?.deploymentVersion).toMatchObject({ deploymentName, buildId: 'v1' });
      },
    );
  });

  it('the worker process runs WORKFLOW_BUNDLE_PATH, and names its build id in its start log', async () => {
    const codePath = inject('workflowBundlePath');
    const worker = await spawnWorkerProcess(uniqueId('bundle-path'), {
      WORKFLOW_BUNDLE_PATH: codePath,
      WORKER_BUILD_ID: 'release-7',
      LOG_LEVEL: 'info',
      NODE_ENV: 'production',
    });
    try {
      const polling = await eventually(() =>
        Promise.resolve(
          worker.output
            .join('')
            .split('\n')
            .filter((l) => l.startsWith('{'))
            .map((l) => JSON.parse(l) as Record<string, unknown>)
            .find((l) => l['msg'] === 'worker polling'),
        ),
      );
      expect(polling).toMatchObject({
        buildId: 'release-7',
        deploymentName: 'creditflow',
        workflowBundle: codePath,
      });
      expect(worker.output.join('')).not.toContain('Workflow bundle created');
    } finally {
      await worker.stop();
    }
  });

  it('a WORKFLOW_BUNDLE_PATH that does not exist stops the worker, naming the variable', async () => {
    const worker = runWorkerProcess({
      WORKFLOW_BUNDLE_PATH: '/nonexistent/workflow-bundle.js',
      WORKER_METRICS_PORT: String(await freePort()),
    });
    const result = await worker.exited;
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      'WORKFLOW_BUNDLE_PATH: /nonexistent/workflow-bundle.js does not exist',
    );
  });
});
