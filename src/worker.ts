// The worker process: runs every workflow and activity on the task queue.
import type { Worker } from '@temporalio/worker';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { Gauge } from 'prom-client';
import { createActivities } from './activities/index.js';
import type { Client } from '@temporalio/client';
import { ConfigError, loadConfigOrExit, required, type Config } from './config.js';
import {
  autoTopupDispatchSettings,
  createAutoTopupDispatcher,
} from './credits/auto-topup-dispatcher.js';
import { createDatabase, type Database } from './db/client.js';
import { createLogger, type Logger } from './logger.js';
import { isMainModule } from './main.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createOutboxDispatcher, type DeliverMessage } from './notifications/dispatcher.js';
import { createSmtpSender, type EmailSender } from './notifications/email.js';
import { smsProviderFromConfig } from './sms/provider.js';
import { createStripeGateway } from './stripe/gateway.js';
import { migrationProblems, StartupError, temporalSetupProblems } from './readiness/checks.js';
import { ensureReconciliationSchedules } from './reconciliation/schedules.js';
import { connectClient, createWorker, prebundledWorkflowsPath } from './temporal.js';
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
  /** A prebuilt workflow bundle (tests), instead of WORKFLOW_BUNDLE_PATH or the build's. */
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
  const workflowBundle = options.workflowBundle ?? prebuiltWorkflowBundle(config);
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
  const { worker, connection, buildId } = await createWorker({
    target,
    taskQueue: config.temporal.taskQueue,
    ...(workflowBundle ? { workflowBundle } : {}),
    deployment: {
      name: config.workerBuild.deploymentName,
      buildId: config.workerBuild.buildId,
      versioning: config.workerBuild.versioning,
    },
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
  const emailSender = emailChannel(config, logger);
  // Notifications are delivered here, off the workflows' money path.
  const dispatcher = createOutboxDispatcher({
    sql: db.sql,
    taskQueue: config.temporal.taskQueue,
    logger,
    metrics,
    settings: config.outbox,
    deliver: options.deliver,
    email: emailSender ? { sender: emailSender, from: config.mail.from } : undefined,
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
  const versioning = config.workerBuild.versioning || 'off';
  buildInfoGauge(metrics).set(
    { deployment_name: config.workerBuild.deploymentName, build_id: buildId, versioning },
    1,
  );
  logger.info(
    {
      taskQueue: config.temporal.taskQueue,
      namespace: config.temporal.namespace,
      deploymentName: config.workerBuild.deploymentName,
      buildId,
      versioning,
      workflowBundle: workflowBundle?.codePath ?? 'bundled at start',
    },
    'worker polling',
  );
  const done = worker.run().finally(async () => {
    await dispatcher.stop();
    emailSender?.close();
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

/** The SMTP sender when SMTP_URL is set; says at start whether notifications are e-mailed. */
function emailChannel(config: Config, logger: Logger): EmailSender | undefined {
  if (!config.mail.smtpUrl) {
    logger.info(
      'e-mail notifications off: SMTP_URL is not set; preferences asking for e-mail are kept, ' +
        'but messages are only delivered in-app',
    );
    return undefined;
  }
  const sender = createSmtpSender({ smtpUrl: config.mail.smtpUrl, from: config.mail.from });
  logger.info({ smtp: sender.target }, 'e-mail notifications on');
  return sender;
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

/**
 * The prebundled workflows to run: WORKFLOW_BUNDLE_PATH (built with the same tracing setting as
 * this worker's), else the build's own next to the compiled worker. Undefined under tsx, which bundles src/workflows at start instead.
 */
function prebuiltWorkflowBundle(config: Config): { codePath: string } | undefined {
  const configured = config.workerBuild.workflowBundlePath;
  if (configured !== undefined) {
    if (!existsSync(configured)) {
      throw new ConfigError([
        `WORKFLOW_BUNDLE_PATH: ${configured} does not exist; run \`npm run build\` or unset it to bundle at start`,
      ]);
    }
    return { codePath: configured };
  }
  // A tracing worker runs the bundle that also holds OpenTelemetry's workflow interceptors.
  const prebundled = prebundledWorkflowsPath({
    tracing: config.observability.tracesEndpoint !== undefined,
  });
  if (prebundled === undefined) return undefined;
  if (!existsSync(prebundled)) {
    throw new StartupError(
      `creditflow worker cannot start: the build has no workflow bundle at ${prebundled}; run \`npm run build\` again`,
    );
  }
  return { codePath: prebundled };
}

type BuildInfoLabel = 'deployment_name' | 'build_id' | 'versioning';

/** `creditflow_worker_build_info{deployment_name,build_id,versioning} 1`: which code is polling. */
function buildInfoGauge(metrics: Metrics): Gauge<BuildInfoLabel> {
  const name = 'creditflow_worker_build_info';
  const existing = metrics.registry.getSingleMetric(name);
  if (existing) return existing as Gauge<BuildInfoLabel>;
  return new Gauge({
    name,
    help: 'The worker deployment version this process polls as (always 1)',
    labelNames: ['deployment_name', 'build_id', 'versioning'],
    registers: [metrics.registry],
  });
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
