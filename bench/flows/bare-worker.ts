// A worker process for the baseline workflows, built by the same createWorker as the real one
// (same Worker options, interceptors and deployment settings), so the only difference the
// benchmark sees is the work the real flows do.
//   BARE_TASK_QUEUE, BARE_BUNDLE_PATH, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE
import { DefaultLogger, Runtime } from '@temporalio/worker';
import type { Activities } from '../../src/activities/index.js';
import { loadConfigOrExit, processEnv } from '../../src/config.js';
import { createWorker } from '../../src/temporal.js';
import { bareActivities } from './bare-activities.js';

const env = processEnv();
const config = loadConfigOrExit();
const taskQueue = env.BARE_TASK_QUEUE;
const codePath = env.BARE_BUNDLE_PATH;
const address = config.temporal.address;
if (!taskQueue || !codePath || !address) {
  process.stderr.write(
    'bare worker: BARE_TASK_QUEUE, BARE_BUNDLE_PATH and TEMPORAL_ADDRESS are needed\n',
  );
  process.exit(2);
}
Runtime.install({ logger: new DefaultLogger('WARN') });
const { worker } = await createWorker({
  target: { address, namespace: config.temporal.namespace },
  taskQueue,
  workflowBundle: { codePath },
  // The bundle calls only `noop`; createWorker is typed for the real activities.
  activities: bareActivities as unknown as Activities,
  options: { shutdownGraceTime: config.observability.workerShutdownGraceMs },
});
process.stdout.write('bare worker polling\n');
const stop = () => worker.shutdown();
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
await worker.run();
process.exit(0);
