// The API process: connects to PostgreSQL and Temporal, serves the Hono app on PORT.
import { serve, type ServerType } from '@hono/node-server';
import { createApp } from './api/app.js';
import { loadConfigOrExit, required, type Config, ConfigError } from './config.js';
import { createDatabase } from './db/client.js';
import { createLedger } from './ledger/ledger.js';
import { createLogger } from './logger.js';
import { isMainModule } from './main.js';
import type { Metrics } from './metrics.js';
import { connectClient } from './temporal.js';

export interface RunningApi {
  url: string;
  stop: () => Promise<void>;
}

/** Starts the API; the returned stop() closes the socket, then the connections. */
export async function startApi(
  config: Config,
  options: { metrics?: Metrics } = {},
): Promise<RunningApi> {
  const logger = createLogger({ level: config.logLevel, name: 'creditflow-api' });
  const databaseUrl = required(config.databaseUrl, 'DATABASE_URL', 'by the API (postgres://…)');
  const temporalAddress = required(
    config.temporal.address,
    'TEMPORAL_ADDRESS',
    'by the API (host:port)',
  );
  const jwtSecret = required(
    config.auth.jwtSecret,
    'AUTH_JWT_SECRET',
    'to verify bearer tokens (32+ characters)',
  );

  const db = createDatabase(databaseUrl, {
    max: config.databasePoolSize,
    applicationName: 'creditflow-api',
  });
  const temporal = await connectClient({
    address: temporalAddress,
    namespace: config.temporal.namespace,
    apiKey: config.temporal.apiKey,
    tls: config.temporal.tls,
  });
  const app = createApp(
    {
      db,
      ledger: createLedger(db.sql),
      temporal,
      logger,
      jwtSecret,
      maxTokenLifetimeSeconds: config.auth.maxTokenLifetimeSeconds,
      taskQueue: config.temporal.taskQueue,
      temporalUiUrl: config.temporal.uiUrl,
      temporalStartTimeoutMs: config.temporal.startTimeoutMs,
      metrics: options.metrics,
      smsWebhookSecret: config.sms.webhookSecret,
      checkout: { packs: config.checkout.packs, expirySeconds: config.checkout.expirySeconds },
      stripeWebhookSecret: config.stripe.webhookSecret,
      refundWindowDays: config.refunds.windowDays,
    },
    { defaultMetrics: true },
  );
  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: config.port }, () => resolve(s));
    s.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new ConfigError([`PORT: ${config.port} is already in use; set PORT to a free port`])
          : err,
      ),
    );
  });
  const url = `http://localhost:${config.port}`;
  logger.info({ url }, 'API listening');
  if (!config.stripe.webhookSecret) {
    logger.warn('STRIPE_WEBHOOK_SECRET is not set: POST /webhooks/stripe answers 503');
  }
  return {
    url,
    stop: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await temporal.connection.close();
      await db.close();
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
