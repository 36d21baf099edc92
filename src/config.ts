// The one place that reads the environment: parsed once, and a bad value names its variable.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { projectRoot } from './paths.js';
import { DEFAULT_CREDIT_PACKS, creditPacksSchema, type CreditPacks } from './payments/packs.js';
import { DB_STEP_START_TO_CLOSE_MS } from './workflows/timeouts.js';

const port = z.coerce
  .number({ error: 'must be a port number (1-65535)' })
  .int('must be a port number (1-65535)')
  .min(1, 'must be a port number (1-65535)')
  .max(65535, 'must be a port number (1-65535)');
const optionalUrl = z
  .string()
  .trim()
  .transform((v) => (v === '' ? undefined : v))
  .pipe(z.string().url().optional())
  .optional();

function isSmtpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'smtp:' || url.protocol === 'smtps:') && url.hostname !== '';
  } catch {
    return false;
  }
}

const schema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  PORT: port.default(3000),
  WORKER_METRICS_PORT: port.default(9464),
  // Loopback by default: the worker's metrics are for a scraper on the same host or network.
  WORKER_METRICS_HOST: z.string().trim().min(1).default('127.0.0.1'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// connection URL')
    .optional(),
  MIGRATION_DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// connection URL')
    .optional(),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  // Below the activities' start-to-close, so a stuck statement ends before its attempt times
  // out and a retry never overlaps it.
  WORKER_STATEMENT_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .min(100)
    .max(
      DB_STEP_START_TO_CLOSE_MS - 1_000,
      `must be below the ${DB_STEP_START_TO_CLOSE_MS} ms activity start-to-close timeout`,
    )
    .default(8_000),
  ACTIVITY_RETRY_ALERT_AFTER: z.coerce.number().int().min(1).max(1_000).default(5),
  TEMPORAL_ADDRESS: z
    .string()
    .regex(/^[^\s:/]+:\d+$/, 'must be host:port, e.g. localhost:7233')
    .optional(),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_TASK_QUEUE: z.string().min(1).default('creditflow'),
  TEMPORAL_API_KEY: z.string().min(1).optional(),
  TEMPORAL_TLS: z
    .enum(['true', 'false'])
    .default('false')
    .transform((v) => v === 'true'),
  TEMPORAL_UI_URL: optionalUrl,
  // Where the local tools (sms:code, stripe:simulate) send their requests; localhost:PORT unset.
  API_URL: optionalUrl,
  // How long a POST waits for Temporal to accept a workflow start before answering 503.
  TEMPORAL_START_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(3_000),
  AUTH_JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  // Seconds; bearer tokens without `exp`, or living longer than this, are refused.
  AUTH_MAX_TOKEN_LIFETIME: z.coerce
    .number({ error: 'must be a number of seconds' })
    .int('must be a whole number of seconds')
    .min(60, 'must be at least 60 seconds')
    .max(30 * 24 * 60 * 60, 'must be at most 2592000 seconds (30 days)')
    .default(24 * 60 * 60),
  // An identity provider's tokens: RS256/ES256 keys from this JWKS, and the iss/aud they must carry.
  AUTH_JWKS_URL: optionalUrl,
  AUTH_JWT_ISSUER: z.string().trim().min(1).optional(),
  AUTH_JWT_AUDIENCE: z.string().trim().min(1).optional(),
  // Browser origins allowed to call the API (CORS); unset: same-origin only.
  CORS_ORIGINS: z
    .string()
    .default('')
    .transform((v, ctx) => {
      const origins = v
        .split(',')
        .map((o) => o.trim())
        .filter(Boolean);
      for (const origin of origins) {
        let parsed: URL | undefined;
        try {
          parsed = new URL(origin);
        } catch {
          parsed = undefined;
        }
        if (!parsed || !/^https?:$/.test(parsed.protocol) || parsed.origin !== origin) {
          ctx.addIssue({
            code: 'custom',
            message: `${JSON.stringify(origin)} is not an origin; write scheme://host[:port], no path or trailing slash`,
          });
          return z.NEVER;
        }
      }
      return origins;
    }),
  // true: X-Forwarded-Proto from the proxy in front says whether the client used TLS (HSTS), and
  // the last X-Forwarded-For entry is the client's address (rate limits).
  TRUST_PROXY: z
    .enum(['true', 'false'])
    .default('false')
    .transform((v) => v === 'true'),
  SSE_MAX_STREAMS_PER_CUSTOMER: z.coerce.number().int().min(1).max(1000).default(5),
  SSE_MAX_STREAMS_PER_PROCESS: z.coerce.number().int().min(1).max(100_000).default(1000),
  // /metrics on its own port (on METRICS_HOST), or on the API port behind a bearer token.
  METRICS_PORT: port.optional(),
  METRICS_HOST: z.string().trim().min(1).default('127.0.0.1'),
  METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  STRIPE_SECRET_KEY: z
    .string()
    .regex(/^(sk|rk)_(test|live)_/, 'must be a Stripe secret key (sk_test_… or sk_live_…)')
    .optional(),
  STRIPE_WEBHOOK_SECRET: z.string().min(1).optional(),
  STRIPE_API_BASE: optionalUrl,
  CREDIT_PACKS: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return DEFAULT_CREDIT_PACKS;
      let json: unknown;
      try {
        json = JSON.parse(v);
      } catch {
        ctx.addIssue({
          code: 'custom',
          message: 'must be JSON like {"small":{"credits":100,"amount":500,"currency":"eur"}}',
        });
        return z.NEVER;
      }
      const parsed = creditPacksSchema.safeParse(json);
      if (!parsed.success) {
        ctx.addIssue({
          code: 'custom',
          message: parsed.error.issues
            .map((i) => `${i.path.join('.') || 'packs'}: ${i.message}`)
            .join('; '),
        });
        return z.NEVER;
      }
      return parsed.data;
    }),
  // Stripe accepts a Checkout Session expiry between 30 minutes and 24 hours.
  CHECKOUT_EXPIRY_MINUTES: z.coerce.number().int().min(30).max(1440).default(30),
  CHECKOUT_SUCCESS_URL: z.string().url().default('http://localhost:3000/checkout/success'),
  CHECKOUT_CANCEL_URL: z.string().url().default('http://localhost:3000/checkout/cancel'),
  SMS_WEBHOOK_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  SMS_PROVIDER: z.enum(['simulated', 'http']).default('simulated'),
  SMS_PROVIDER_URL: optionalUrl,
  SMS_PROVIDER_API_KEY: z.string().min(1).optional(),
  SMS_SIMULATED_UNAVAILABLE_SERVICES: z.string().default(''),
  SMS_SIMULATED_FAILURE_RATE: z.coerce.number().min(0).max(1).default(0),
  SMS_SIMULATED_DELAY_MS: z.coerce.number().int().min(0).max(60_000).default(0),
  OUTBOX_POLL_INTERVAL_MS: z.coerce.number().int().min(10).max(60_000).default(1000),
  OUTBOX_BATCH_SIZE: z.coerce.number().int().min(1).max(1000).default(50),
  OUTBOX_RETRY_INITIAL_MS: z.coerce.number().int().min(10).max(3_600_000).default(1000),
  OUTBOX_RETRY_MAX_MS: z.coerce.number().int().min(10).max(86_400_000).default(300_000),
  OUTBOX_ALERT_AFTER_ATTEMPTS: z.coerce.number().int().min(1).max(1000).default(5),
  OUTBOX_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100_000).default(50),
  // How long after a top-up its customer may still refund its unused credits themselves.
  REFUND_WINDOW_DAYS: z.coerce.number().int().min(0).max(3650).default(14),
  // Five-field cron (UTC) of the daily reconciliation, and minutes between sweeps.
  RECONCILIATION_CRON: z
    .string()
    .trim()
    .regex(/^(\S+\s+){4}\S+$/, 'must be a five-field cron expression, e.g. "0 2 * * *"')
    .default('0 2 * * *'),
  RECONCILIATION_SWEEP_MINUTES: z.coerce.number().int().min(1).max(1440).default(15),
  // false: the worker leaves the schedules alone (tests, or a second worker fleet).
  RECONCILIATION_SCHEDULES: z
    .enum(['true', 'false'])
    .default('true')
    .transform((v) => v === 'true'),
  // The canary purchase the sweep makes: its price in credits; 0 turns the canary off.
  CANARY_CREDITS: z.coerce.number().int().min(0).max(1_000_000).default(1),
  // Credits: a single deduction above this raises an alert.
  ALERT_LARGE_DEDUCTION: z.coerce.number().int().min(1).max(1_000_000_000_000).default(10_000),
  // More than this many transactions of one customer within ALERT_VELOCITY_MINUTES alert.
  ALERT_VELOCITY_COUNT: z.coerce.number().int().min(1).max(100_000).default(10),
  ALERT_VELOCITY_MINUTES: z.coerce.number().int().min(1).max(1440).default(5),
  // Requests per RATE_LIMIT_WINDOW_SECONDS on /v1, per principal and per client IP; 0 = no limit.
  RATE_LIMIT_PER_CUSTOMER: z.coerce.number().int().min(0).max(1_000_000).default(1200),
  RATE_LIMIT_PER_IP: z.coerce.number().int().min(0).max(1_000_000).default(2400),
  RATE_LIMIT_WINDOW_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60),
  // Shares the rate-limit counts between API processes; unset: each process counts its own.
  REDIS_URL: z
    .string()
    .trim()
    .transform((v) => (v === '' ? undefined : v))
    .pipe(
      z
        .string()
        .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
        .optional(),
    )
    .optional(),
  // Worker versioning: the build id this worker registers (default: package version + a hash
  // of its workflow bundle), its deployment name, and whether Temporal routes tasks by version.
  WORKER_BUILD_ID: z
    .string()
    .trim()
    .regex(/^[\w.+-]{1,128}$/, 'must be 1-128 letters, digits, "_", ".", "+" or "-"')
    .optional(),
  WORKER_DEPLOYMENT_NAME: z
    .string()
    .trim()
    .regex(/^[\w.-]{1,128}$/, 'must be 1-128 letters, digits, "_", "." or "-"')
    .default('creditflow'),
  WORKER_VERSIONING: z
    .enum(['true', 'false'])
    .default('false')
    .transform((v) => v === 'true'),
  WORKER_VERSIONING_BEHAVIOR: z.enum(['pinned', 'auto-upgrade']).default('pinned'),
  // A prebundled workflow bundle for the worker; unset: dist/workflow-bundle.js next to the
  // compiled worker, or bundled at start when running from src/.
  WORKFLOW_BUNDLE_PATH: z.string().trim().min(1).optional(),
  // E-mail notifications: the SMTP server (smtp:// or smtps://, credentials in the URL) and the
  // sender. Unset: the e-mail channel is off (npm start runs mailpit and sets it).
  SMTP_URL: z
    .string()
    .trim()
    .transform((v) => (v === '' ? undefined : v))
    .pipe(
      z
        .string()
        .refine(isSmtpUrl, 'must be an smtp:// or smtps:// URL, e.g. smtp://127.0.0.1:1025')
        .optional(),
    )
    .optional(),
  MAIL_FROM: z
    .string()
    .trim()
    .regex(
      /^(?:[^<>@\r\n]*<[^\s<>@]+@[^\s<>@]+>|[^\s<>@]+@[^\s<>@]+)$/,
      'must be an address, e.g. "creditflow <no-reply@example.com>" or no-reply@example.com',
    )
    .default('creditflow <no-reply@creditflow.localhost>'),
  // Observability. Tracing is on when an OTLP endpoint is set (standard OpenTelemetry variables).
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalUrl,
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: optionalUrl,
  OTEL_SERVICE_NAME: z.string().trim().min(1).optional(),
  // The Temporal worker's own (native runtime) metrics on their own port; unset: not served.
  WORKER_TEMPORAL_METRICS_PORT: port.optional(),
  // How long a stopping worker lets in-flight activities finish before they are cancelled.
  WORKER_SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(3_600_000).default(30_000),
  // How long a stopping API lets in-flight requests finish before it closes their connections.
  API_SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(600_000).default(10_000),
  CREDITFLOW_DATA_DIR: z.string().min(1).optional(),
  CREDITFLOW_TOOLS_DIR: z.string().min(1).optional(),
  TEMPORAL_CLI_PATH: z.string().min(1).optional(),
  STRIPE_MOCK_PATH: z.string().min(1).optional(),
  MAILPIT_PATH: z.string().min(1).optional(),
});

export type RawConfig = z.infer<typeof schema>;

export interface Config {
  nodeEnv: RawConfig['NODE_ENV'];
  logLevel: RawConfig['LOG_LEVEL'];
  port: number;
  workerMetricsPort: number;
  /** The interface the standalone worker's /metrics listens on. */
  workerMetricsHost: string;
  /** What the API and worker connect as: in production, a member of creditflow_app. */
  databaseUrl: string | undefined;
  /** What migrations run as (the schema owner); DATABASE_URL when unset. */
  migrationDatabaseUrl: string | undefined;
  databasePoolSize: number;
  /** statement_timeout on the worker's database connections. */
  workerStatementTimeoutMs: number;
  /** Failed attempts from which an activity still retrying is logged at error level and counted. */
  activityRetryAlertAfter: number;
  temporal: {
    address: string | undefined;
    namespace: string;
    taskQueue: string;
    apiKey: string | undefined;
    tls: boolean;
    uiUrl: string | undefined;
    /** Deadline for starting a workflow from an API request. */
    startTimeoutMs: number;
  };
  auth: {
    jwtSecret: string | undefined;
    maxTokenLifetimeSeconds: number;
    jwksUrl: string | undefined;
    issuer: string | undefined;
    audience: string | undefined;
  };
  http: {
    corsOrigins: string[];
    trustProxy: boolean;
    /** Open wallet event streams one customer may hold per API process. */
    sseMaxStreamsPerCustomer: number;
    sseMaxStreamsPerProcess: number;
  };
  metrics: { port: number | undefined; host: string; token: string | undefined };
  stripe: {
    secretKey: string | undefined;
    webhookSecret: string | undefined;
    apiBase: string | undefined;
  };
  checkout: {
    packs: CreditPacks;
    expirySeconds: number;
    successUrl: string;
    cancelUrl: string;
  };
  sms: {
    webhookSecret: string | undefined;
    provider: 'simulated' | 'http';
    providerUrl: string | undefined;
    providerApiKey: string | undefined;
    simulated: { unavailableServices: string[]; failureRate: number; delayMs: number };
  };
  refunds: {
    /** Days after a top-up during which its customer may refund its unused credits. */
    windowDays: number;
  };
  reconciliation: {
    cron: string;
    sweepMinutes: number;
    /** Whether the worker creates or updates the schedules at start. */
    manageSchedules: boolean;
    /** Credits of the sweep's canary purchase; 0 = no canary. */
    canaryCredits: number;
  };
  alerts: {
    largeDeduction: number;
    velocityCount: number;
    velocityMinutes: number;
  };
  /** Limits on /v1 (0 = none); counted in Redis when `redisUrl` is set. */
  rateLimit: {
    perCustomer: number;
    perIp: number;
    windowSeconds: number;
    redisUrl: string | undefined;
  };
  /** The notification outbox dispatcher that runs in every worker. */
  outbox: {
    pollIntervalMs: number;
    batchSize: number;
    retryInitialMs: number;
    retryMaxMs: number;
    alertAfterAttempts: number;
    maxAttempts: number;
  };
  /** The worker's deployment version, and whether Temporal routes its tasks by that version. */
  workerBuild: {
    buildId: string | undefined;
    deploymentName: string;
    versioning: false | 'pinned' | 'auto-upgrade';
    workflowBundlePath: string | undefined;
  };
  /** E-mail notifications; `smtpUrl` unset: the e-mail channel is off. */
  mail: {
    smtpUrl: string | undefined;
    from: string;
  };
  /** Tracing, metrics of the Temporal runtime, and how the processes stop. */
  observability: {
    /** Where spans go (OTLP over HTTP); tracing is off when unset. */
    tracesEndpoint: string | undefined;
    /** OTEL_SERVICE_NAME; each process falls back to its own name (creditflow-api, creditflow-worker). */
    serviceName: string | undefined;
    workerTemporalMetricsPort: number | undefined;
    workerShutdownGraceMs: number;
    apiShutdownGraceMs: number;
  };
  /** The API the local tools talk to (sms:code, stripe:simulate); http://localhost:PORT unset. */
  apiUrl: string | undefined;
  paths: {
    dataDir: string | undefined;
    toolsDir: string | undefined;
    temporalCli: string | undefined;
    stripeMock: string | undefined;
    mailpit: string | undefined;
  };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment; throws ConfigError listing every bad variable by name. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`),
    );
  }
  const e = parsed.data;
  const unsafe = e.NODE_ENV === 'production' ? productionProblems(e) : [];
  if (unsafe.length > 0) throw new ConfigError(unsafe);
  return {
    nodeEnv: e.NODE_ENV,
    logLevel: e.LOG_LEVEL,
    port: e.PORT,
    workerMetricsPort: e.WORKER_METRICS_PORT,
    workerMetricsHost: e.WORKER_METRICS_HOST,
    databaseUrl: e.DATABASE_URL,
    migrationDatabaseUrl: e.MIGRATION_DATABASE_URL ?? e.DATABASE_URL,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    workerStatementTimeoutMs: e.WORKER_STATEMENT_TIMEOUT_MS,
    activityRetryAlertAfter: e.ACTIVITY_RETRY_ALERT_AFTER,
    temporal: {
      address: e.TEMPORAL_ADDRESS,
      namespace: e.TEMPORAL_NAMESPACE,
      taskQueue: e.TEMPORAL_TASK_QUEUE,
      apiKey: e.TEMPORAL_API_KEY,
      tls: e.TEMPORAL_TLS,
      uiUrl: e.TEMPORAL_UI_URL,
      startTimeoutMs: e.TEMPORAL_START_TIMEOUT_MS,
    },
    auth: {
      jwtSecret: e.AUTH_JWT_SECRET,
      maxTokenLifetimeSeconds: e.AUTH_MAX_TOKEN_LIFETIME,
      jwksUrl: e.AUTH_JWKS_URL,
      issuer: e.AUTH_JWT_ISSUER,
      audience: e.AUTH_JWT_AUDIENCE,
    },
    http: {
      corsOrigins: e.CORS_ORIGINS,
      trustProxy: e.TRUST_PROXY,
      sseMaxStreamsPerCustomer: e.SSE_MAX_STREAMS_PER_CUSTOMER,
      sseMaxStreamsPerProcess: e.SSE_MAX_STREAMS_PER_PROCESS,
    },
    metrics: { port: e.METRICS_PORT, host: e.METRICS_HOST, token: e.METRICS_TOKEN },
    stripe: {
      secretKey: e.STRIPE_SECRET_KEY,
      webhookSecret: e.STRIPE_WEBHOOK_SECRET,
      apiBase: e.STRIPE_API_BASE,
    },
    checkout: {
      packs: e.CREDIT_PACKS,
      expirySeconds: e.CHECKOUT_EXPIRY_MINUTES * 60,
      successUrl: e.CHECKOUT_SUCCESS_URL,
      cancelUrl: e.CHECKOUT_CANCEL_URL,
    },
    sms: {
      webhookSecret: e.SMS_WEBHOOK_SECRET,
      provider: e.SMS_PROVIDER,
      providerUrl: e.SMS_PROVIDER_URL,
      providerApiKey: e.SMS_PROVIDER_API_KEY,
      simulated: {
        unavailableServices: e.SMS_SIMULATED_UNAVAILABLE_SERVICES.split(',')
          .map((s) => s.trim())
          .filter(Boolean),
        failureRate: e.SMS_SIMULATED_FAILURE_RATE,
        delayMs: e.SMS_SIMULATED_DELAY_MS,
      },
    },
    outbox: {
      pollIntervalMs: e.OUTBOX_POLL_INTERVAL_MS,
      batchSize: e.OUTBOX_BATCH_SIZE,
      retryInitialMs: e.OUTBOX_RETRY_INITIAL_MS,
      retryMaxMs: Math.max(e.OUTBOX_RETRY_MAX_MS, e.OUTBOX_RETRY_INITIAL_MS),
      alertAfterAttempts: e.OUTBOX_ALERT_AFTER_ATTEMPTS,
      maxAttempts: e.OUTBOX_MAX_ATTEMPTS,
    },
    refunds: { windowDays: e.REFUND_WINDOW_DAYS },
    reconciliation: {
      cron: e.RECONCILIATION_CRON,
      sweepMinutes: e.RECONCILIATION_SWEEP_MINUTES,
      manageSchedules: e.RECONCILIATION_SCHEDULES,
      canaryCredits: e.CANARY_CREDITS,
    },
    alerts: {
      largeDeduction: e.ALERT_LARGE_DEDUCTION,
      velocityCount: e.ALERT_VELOCITY_COUNT,
      velocityMinutes: e.ALERT_VELOCITY_MINUTES,
    },
    rateLimit: {
      perCustomer: e.RATE_LIMIT_PER_CUSTOMER,
      perIp: e.RATE_LIMIT_PER_IP,
      windowSeconds: e.RATE_LIMIT_WINDOW_SECONDS,
      redisUrl: e.REDIS_URL,
    },
    workerBuild: {
      buildId: e.WORKER_BUILD_ID,
      deploymentName: e.WORKER_DEPLOYMENT_NAME,
      versioning: e.WORKER_VERSIONING && e.WORKER_VERSIONING_BEHAVIOR,
      workflowBundlePath: e.WORKFLOW_BUNDLE_PATH,
    },
    mail: { smtpUrl: e.SMTP_URL, from: e.MAIL_FROM },
    observability: {
      tracesEndpoint:
        e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
        (e.OTEL_EXPORTER_OTLP_ENDPOINT
          ? `${e.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces`
          : undefined),
      serviceName: e.OTEL_SERVICE_NAME,
      workerTemporalMetricsPort: e.WORKER_TEMPORAL_METRICS_PORT,
      workerShutdownGraceMs: e.WORKER_SHUTDOWN_GRACE_MS,
      apiShutdownGraceMs: e.API_SHUTDOWN_GRACE_MS,
    },
    apiUrl: e.API_URL,
    paths: {
      dataDir: e.CREDITFLOW_DATA_DIR,
      toolsDir: e.CREDITFLOW_TOOLS_DIR,
      temporalCli: e.TEMPORAL_CLI_PATH,
      stripeMock: e.STRIPE_MOCK_PATH,
      mailpit: e.MAILPIT_PATH,
    },
  };
}

/** Placeholder secrets from docker-compose.yml and the docs, refused in production. */
const PLACEHOLDER_SECRET = /change-?me|placeholder|example/i;

/**
 * What development tolerates and production must not: a JWT secret anyone can read in this
 * repository, or one too short or too uniform to resist guessing.
 */
function productionProblems(e: RawConfig): string[] {
  const secret = e.AUTH_JWT_SECRET;
  if (secret === undefined) return [];
  if (PLACEHOLDER_SECRET.test(secret) || new Set(secret).size < 10) {
    return [
      'AUTH_JWT_SECRET: is a placeholder or too weak for NODE_ENV=production; ' +
        'set 32+ random characters, e.g. from `openssl rand -base64 48`',
    ];
  }
  return [];
}

/** Returns the value or stops with a message naming the variable a process needs. */
export function required<T>(value: T | undefined, variable: string, purpose: string): T {
  if (value === undefined) {
    throw new ConfigError([`${variable}: required ${purpose}`]);
  }
  return value;
}

/** Loads config for a process entry point; on error prints the problems and exits 1. */
export function loadConfigOrExit(env: Record<string, string | undefined> = process.env): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

/** Environment passthrough for child processes and tools (kept here so nothing else reads env). */
export function processEnv(): Record<string, string | undefined> {
  return process.env;
}

/** Where `npm start` keeps local state (embedded PostgreSQL, Temporal's SQLite file, dev secrets). */
export function dataDir(config: Config): string {
  return config.paths.dataDir ?? join(projectRoot, '.data');
}

/**
 * For local helper scripts: fills unset variables from the env file `npm start` writes, so
 * `npm run token` or `npm run check:ledger` talk to the running local stack.
 */
export function loadLocalStackEnv(): void {
  const file = join(dataDir(loadConfig()), 'stack.env');
  if (!existsSync(file)) return;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match && process.env[match[1]!] === undefined) process.env[match[1]!] = match[2];
  }
}
