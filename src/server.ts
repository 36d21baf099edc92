// The API process: connects to PostgreSQL and Temporal, serves the Hono app on PORT (and the
// Prometheus metrics on METRICS_PORT when set).
import { serve, type ServerType } from '@hono/node-server';
import { createApp } from './api/app.js';
import { createRateLimits } from './api/rate-limit.js';
import { metricsAccess, metricsApp } from './api/security.js';
import { loadConfigOrExit, required, type Config, ConfigError } from './config.js';
import { createDatabase } from './db/client.js';
import { createLedger } from './ledger/ledger.js';
import { createLogger } from './logger.js';
import { isMainModule } from './main.js';
import { createMetrics, type Metrics } from './metrics.js';
import { startTracing } from './observability/tracing.js';
import { connectClient } from './temporal.js';

export interface RunningApi {
  url: string;
  /** Where GET /metrics answers when it has a port of its own. */
  metricsUrl: string | undefined;
  stop: () => Promise<void>;
}

/** Listens on `port`; a port in use is a configuration error naming `variable`, not a stack trace. */
function listen(
  fetch: (request: Request) => Response | Promise<Response>,
  port: number,
  hostname: string | undefined,
  variable: string,
): Promise<ServerType> {
  return new Promise((resolve, reject) => {
    const s = serve({ fetch, port, ...(hostname ? { hostname } : {}) }, () => resolve(s));
    s.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new ConfigError([
              `${variable}: ${port} is already in use; set ${variable} to a free port`,
            ])
          : err,
      ),
    );
  });
}

const closeServer = (server: ServerType) =>
  new Promise<void>((resolve) => server.close(() => resolve()));

/**
 * Stops accepting connections and lets the requests in flight finish: keep-alive connections are
 * closed as soon as they are idle, and whatever is still open after `graceMs` is cut.
 */
async function drainServer(server: ServerType, graceMs: number): Promise<void> {
  const closed = closeServer(server);
  const http = 'closeIdleConnections' in server ? server : undefined;
  http?.closeIdleConnections();
  const idle = setInterval(() => http?.closeIdleConnections(), 50);
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'expired'>((resolve) => {
    timer = setTimeout(() => resolve('expired'), graceMs);
  });
  try {
    if ((await Promise.race([closed, expired])) === 'expired') {
      http?.closeAllConnections();
      await closed;
    }
  } finally {
    clearInterval(idle);
    clearTimeout(timer);
  }
}

/** Starts the API; the returned stop() closes the socket, then the connections. */
export async function startApi(
  config: Config,
  options: { metrics?: Metrics } = {},
): Promise<RunningApi> {
  const logger = createLogger({
    level: config.logLevel,
    name: 'creditflow-api',
    nodeEnv: config.nodeEnv,
  });
  const databaseUrl = required(config.databaseUrl, 'DATABASE_URL', 'by the API (postgres://…)');
  const temporalAddress = required(
    config.temporal.address,
    'TEMPORAL_ADDRESS',
    'by the API (host:port)',
  );
  if (!config.auth.jwtSecret && !config.auth.jwksUrl) {
    throw new ConfigError([
      'AUTH_JWT_SECRET: required to verify bearer tokens (32+ characters), unless AUTH_JWKS_URL names an identity provider',
    ]);
  }
  const metricsExposure = metricsAccess(config);
  if (config.metrics.port !== undefined && config.metrics.port === config.port) {
    throw new ConfigError([`METRICS_PORT: must differ from PORT (${config.port})`]);
  }
  const metrics = options.metrics ?? createMetrics({ defaultMetrics: true });

  const db = createDatabase(databaseUrl, {
    max: config.databasePoolSize,
    applicationName: 'creditflow-api',
  });
  const tracing = startTracing({
    endpoint: config.observability.tracesEndpoint,
    serviceName: config.observability.serviceName ?? 'creditflow-api',
  });
  const temporal = await connectClient(
    {
      address: temporalAddress,
      namespace: config.temporal.namespace,
      apiKey: config.temporal.apiKey,
      tls: config.temporal.tls,
    },
    { tracing },
  );
  // Aborted by stop(): open event streams end so the server can close.
  const shutdown = new AbortController();
  const rateLimits = createRateLimits(config.rateLimit, logger);
  if (rateLimits.backend === 'redis' && !(await rateLimits.ready())) {
    logger.warn('REDIS_URL does not answer yet: rate limits are off until it does');
  }
  const app = createApp(
    {
      db,
      ledger: createLedger(db.sql, undefined, { latency: metrics.ledgerWriteDuration }),
      temporal,
      logger,
      jwtSecret: config.auth.jwtSecret ?? '',
      maxTokenLifetimeSeconds: config.auth.maxTokenLifetimeSeconds,
      taskQueue: config.temporal.taskQueue,
      temporalUiUrl: config.temporal.uiUrl,
      temporalStartTimeoutMs: config.temporal.startTimeoutMs,
      metrics,
      smsWebhookSecret: config.sms.webhookSecret,
      checkout: { packs: config.checkout.packs, expirySeconds: config.checkout.expirySeconds },
      stripeWebhookSecret: config.stripe.webhookSecret,
      refundWindowDays: config.refunds.windowDays,
      rateLimits,
      shutdownSignal: shutdown.signal,
    },
    {
      security: {
        trustProxy: config.http.trustProxy,
        corsOrigins: config.http.corsOrigins,
        metrics: metricsExposure,
      },
      auth: {
        jwks: config.auth.jwksUrl,
        issuer: config.auth.issuer,
        audience: config.auth.audience,
      },
      sseMaxStreamsPerCustomer: config.http.sseMaxStreamsPerCustomer,
      sseMaxStreamsPerProcess: config.http.sseMaxStreamsPerProcess,
    },
  );
  const closeConnections = async () => {
    await temporal.connection.close();
    await rateLimits.close();
    await db.close();
  };
  let server: ServerType;
  let metricsServer: ServerType | undefined;
  try {
    server = await listen(app.fetch, config.port, undefined, 'PORT');
    try {
      if (config.metrics.port !== undefined) {
        metricsServer = await listen(
          metricsApp(metrics.registry, config.metrics.token).fetch,
          config.metrics.port,
          config.metrics.host,
          'METRICS_PORT',
        );
      }
    } catch (err) {
      await closeServer(server);
      throw err;
    }
  } catch (err) {
    await closeConnections();
    throw err;
  }
  let metricsUrl: string | undefined;
  if (config.metrics.port !== undefined) {
    const host = config.metrics.host.includes(':')
      ? `[${config.metrics.host}]`
      : config.metrics.host;
    metricsUrl = `http://${host}:${config.metrics.port}/metrics`;
    logger.info({ url: metricsUrl }, 'API metrics listening');
  } else if (metricsExposure.mode === 'open') {
    logger.warn(
      'GET /metrics is open to anyone on the API port; set METRICS_PORT or METRICS_TOKEN before exposing the API',
    );
  }
  const url = `http://localhost:${config.port}`;
  logger.info({ url }, 'API listening');
  if (!config.stripe.webhookSecret) {
    logger.warn('STRIPE_WEBHOOK_SECRET is not set: POST /webhooks/stripe answers 503');
  }
  return {
    url,
    metricsUrl,
    // New connections are refused at once; requests in flight finish (API_SHUTDOWN_GRACE_MS at
    // most), event streams end; then the pools close.
    stop: async () => {
      logger.info('API stopping');
      shutdown.abort();
      await drainServer(server, config.observability.apiShutdownGraceMs);
      if (metricsServer) await drainServer(metricsServer, config.observability.apiShutdownGraceMs);
      await closeConnections();
      await tracing?.flush().catch(() => undefined);
      logger.info('API stopped');
    },
  };
}

if (isMainModule(import.meta.url)) {
  const config = loadConfigOrExit();
  startApi(config).then(
    (api) => {
      const stop = () => void api.stop().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
