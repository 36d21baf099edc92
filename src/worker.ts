// The worker process: runs every workflow and activity on the task queue.
import type { Worker } from '@temporalio/worker';
import { createServer, type Server } from 'node:http';
import { createActivities } from './activities/index.js';
import type { Client } from '@temporalio/client';
import { ConfigError, loadConfigOrExit, required, type Config } from './config.js';
import {
  autoTopupDispatchSettings,
  createAutoTopupDispatcher,
} from './credits/auto-topup-dispatcher.js';
import { createDatabase, type Database } from './db/client.js';
import { createLogger } from './logger.js';
import { isMainModule } from './main.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createOutboxDispatcher, type DeliverMessage } from './notifications/dispatcher.js';
import { smsProviderFromConfig } from './sms/provider.js';
import { createStripeGateway } from './stripe/gateway.js';
import { migrationProblems, StartupError, temporalSetupProblems } from './readiness/checks.js';
import { ensureReconciliationSchedules } from './reconciliation/schedules.js';
import { connectClient, createWorker } from './temporal.js';
import { startTracing } from './observability/tracing.js';
import { installWorkerLogging } from './worker-logging.js';

export interface RunningWorker {
  worker: Worker;
  /** Settles when the worker has stopped (after stop() or a shutdown signal). */
  done: Promise<void>;
  stop: () => Promise<void>;
}

export interface WorkerOptions {
  /** Shared with the API (npm start); otherwise the worker serves its own. */
  metrics?: Metrics;
  /** Replaces the outbox delivery channel (tests make it fail). */
  deliver?: DeliverMessage;
  /** A prebuilt workflow bundle (tests), instead of bundling at start. */
  workflowBundle?: { codePath: string };
}

/**
 * Starts polling, and the outbox dispatcher beside it; the Temporal runtime also drains the worker
 * on SIGINT/SIGTERM, and the dispatcher stops with it. Without shared `metrics` (npm start shares
 * the API's), the worker serves its own on WORKER_METRICS_PORT.
 */
export async function startWorker(
  config: Config,
  options: WorkerOptions = {},
): Promise<RunningWorker> {
  const logger = createLogger({
    level: config.logLevel,
    name: 'creditflow-worker',
    nodeEnv: config.nodeEnv,
  });
  // Before the first connection creates the runtime: SDK and native logs as pino JSON lines, and
  // the runtime's own metrics on their port when one is set.
  const temporalMetricsPort = config.observability.workerTemporalMetricsPort;
  const temporalMetrics =
    temporalMetricsPort !== undefined
      ? { host: config.workerMetricsHost, port: temporalMetricsPort }
      : undefined;
  if (installWorkerLogging(logger, config.logLevel, temporalMetrics) && temporalMetrics) {
    logger.info(temporalMetrics, 'Temporal worker runtime metrics at /metrics');
  }
  const tracing = startTracing({
    endpoint: config.observability.tracesEndpoint,
    serviceName: config.observability.serviceName ?? 'creditflow-worker',
  });
  const databaseUrl = required(config.databaseUrl, 'DATABASE_URL', 'by the worker (postgres://…)');
  const address = required(
    config.temporal.address,
    'TEMPORAL_ADDRESS',
    'by the worker (host:port)',
  );
  const db = createDatabase(databaseUrl, {
    max: config.databasePoolSize,
    applicationName: 'creditflow-worker',
    statementTimeoutMs: config.workerStatementTimeoutMs,
  });
  const target = {
    address,
    namespace: config.temporal.namespace,
    apiKey: config.temporal.apiKey,
    tls: config.temporal.tls,
  };
  // Reconciliation repairs start and signal workflows through a client of the worker's own.
  const temporal = await connectClient(target, { tracing }).catch(async (err: unknown) => {
    await db.close();
    throw new StartupError(
      `creditflow worker cannot start: Temporal at ${address} (TEMPORAL_ADDRESS) is not reachable: ${(err as Error).message}`,
    );
  });
  let metricsServer: Server | undefined;
  const metrics = options.metrics ?? createMetrics({ defaultMetrics: true });
  try {
    await refuseIncompleteSetup(temporal, db, config.temporal.namespace);
    if (!options.metrics) {
      metricsServer = await serveMetrics(metrics, {
        port: config.workerMetricsPort,
        host: config.workerMetricsHost,
      });
      logger.info(
        { host: config.workerMetricsHost, port: config.workerMetricsPort },
        'worker metrics at /metrics',
      );
    }
  } catch (err) {
    await temporal.connection.close();
    await db.close();
    throw err;
  }
  if (config.reconciliation.manageSchedules) {
    try {
      const ids = await ensureReconciliationSchedules(temporal, {
        taskQueue: config.temporal.taskQueue,
        cron: config.reconciliation.cron,
        sweepMinutes: config.reconciliation.sweepMinutes,
        canaryCredits: config.reconciliation.canaryCredits,
      });
      logger.info(
        {
          ...ids,
          cron: config.reconciliation.cron,
          sweepMinutes: config.reconciliation.sweepMinutes,
        },
        'reconciliation schedules in place',
      );
    } catch (err) {
      // The money path does not wait on the schedules: run the flows, and say loudly what is off.
      logger.error(
        { err, alert: 'reconciliation_schedules' },
        'reconciliation schedules could not be created or updated; reconciliation will not run on schedule',
      );
    }
  }
  const { worker, connection } = await createWorker({
    target,
    taskQueue: config.temporal.taskQueue,
    ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : {}),
    observability: { tracing, workflowOutcomes: metrics.workflowOutcomes },
    // On SIGTERM/SIGINT or stop(): no new tasks, and running activities get this long to finish.
    options: { shutdownGraceTime: config.observability.workerShutdownGraceMs },
    activities: createActivities({
      db,
      metrics,
      alertAfterAttempts: config.activityRetryAlertAfter,
      alertRules: { ...config.alerts, logger },
      sms: smsProviderFromConfig(config),
      temporal,
      taskQueue: config.temporal.taskQueue,
      packs: config.checkout.packs,
      // Without a key the worker still runs everything else; checkouts retry until it is set.
      stripe: config.stripe.secretKey
        ? createStripeGateway({
            secretKey: config.stripe.secretKey,
            apiBase: config.stripe.apiBase,
            successUrl: config.checkout.successUrl,
            cancelUrl: config.checkout.cancelUrl,
          })
        : undefined,
    }),
  });
  // Notifications are delivered here, off the workflows' money path.
  const dispatcher = createOutboxDispatcher({
    sql: db.sql,
    taskQueue: config.temporal.taskQueue,
    logger,
    metrics,
    settings: config.outbox,
    deliver: options.deliver,
  });
  dispatcher.start();
  // Auto top-up charges requested in posting transactions are handed to their workflows here.
  const autoTopups = createAutoTopupDispatcher({
    sql: db.sql,
    temporal,
    taskQueue: config.temporal.taskQueue,
    logger,
    settings: autoTopupDispatchSettings(config.outbox.pollIntervalMs),
  });
  autoTopups.start();
  logger.info(
    { taskQueue: config.temporal.taskQueue, namespace: config.temporal.namespace },
    'worker polling',
  );
  const done = worker.run().finally(async () => {
    await dispatcher.stop();
    await autoTopups.stop();
    metricsServer?.close();
    await connection.close();
    await temporal.connection.close();
    await db.close();
    await tracing?.flush().catch(() => undefined);
    logger.info('worker stopped');
  });
  return {
    worker,
    done,
    stop: async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
    },
  };
}

/**
 * The namespace, its search attributes and the migrations this build ships must all be in place:
 * otherwise every workflow would fail at its first step, so the worker does not start.
 */
async function refuseIncompleteSetup(temporal: Client, db: Database, namespace: string) {
  const problems = [
    ...(await temporalSetupProblems(temporal.connection, namespace)),
    ...(await migrationProblems(db.sql).catch((err: unknown) => {
      throw new StartupError(
        `creditflow worker cannot start: PostgreSQL (DATABASE_URL) is not reachable: ${(err as Error).message}`,
      );
    })),
  ];
  if (problems.length > 0) throw StartupError.fromProblems('creditflow worker', problems);
}

/** A bare HTTP server for Prometheus to scrape the worker; a taken port is a config error. */
function serveMetrics(metrics: Metrics, at: { port: number; host: string }): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    metrics.registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      () => res.writeHead(500).end(),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new ConfigError([
              `WORKER_METRICS_PORT: ${at.port} is already in use on ${at.host}; set WORKER_METRICS_PORT to a free port`,
            ])
          : err,
      ),
    );
    server.listen(at.port, at.host, () => resolve(server));
  });
}

if (isMainModule(import.meta.url)) {
  const config = loadConfigOrExit();
  startWorker(config)
    .then((running) => running.done)
    .then(
      () => process.exit(0),
      (err: unknown) => {
        // What an operator fixes outside the process gets its message alone; anything else its stack.
        const known = err instanceof ConfigError || err instanceof StartupError;
        process.stderr.write(
          `${err instanceof Error ? (known ? err.message : (err.stack ?? err.message)) : String(err)}\n`,
        );
        process.exit(1);
      },
    );
}
