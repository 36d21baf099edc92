// Routes the Temporal SDK's logs — its own messages, the workflow bundler's output and the native
// runtime's (Rust core) warnings — into pino, so a worker writes one JSON line per message.
import type { LogLevel, LogMetadata, Logger as TemporalLogger } from '@temporalio/common';
import { Runtime, makeTelemetryFilterString } from '@temporalio/worker';
import { ConfigError } from './config.js';
import type { Logger } from './logger.js';

const PINO_METHOD = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
} as const satisfies Record<LogLevel, string>;

/**
 * A Temporal `Logger` over pino. Each line names where it came from: `source` is `temporal-core`
 * for the native runtime and `temporal-sdk` otherwise, `component` the SDK's own `sdkComponent`
 * (worker, core, workflow, activity). Errors in `error` become pino's serialised `err`.
 */
export function temporalLogger(logger: Logger): TemporalLogger {
  const write = (level: LogLevel, message: string, meta: LogMetadata = {}) => {
    const { sdkComponent, error, ...rest } = meta as LogMetadata & {
      sdkComponent?: unknown;
      error?: unknown;
    };
    const fields: Record<string, unknown> = {
      ...rest,
      source: sdkComponent === 'core' ? 'temporal-core' : 'temporal-sdk',
      component: typeof sdkComponent === 'string' ? sdkComponent : 'worker',
    };
    if (error !== undefined) fields[error instanceof Error ? 'err' : 'error'] = error;
    logger[PINO_METHOD[level] ?? 'info'](fields, message);
  };
  return {
    log: write,
    trace: (message, meta) => write('TRACE', message, meta),
    debug: (message, meta) => write('DEBUG', message, meta),
    info: (message, meta) => write('INFO', message, meta),
    warn: (message, meta) => write('WARN', message, meta),
    error: (message, meta) => write('ERROR', message, meta),
  };
}

/** The native runtime's own level: WARN unless LOG_LEVEL asks for less; its INFO is chatty. */
export function coreLogLevel(logLevel: string): LogLevel {
  if (logLevel === 'error' || logLevel === 'fatal' || logLevel === 'silent') return 'ERROR';
  return 'WARN';
}

/** `host:port` for a socket address, with an IPv6 host in brackets. */
function socketAddress(at: { host: string; port: number }): string {
  return `${at.host.includes(':') ? `[${at.host}]` : at.host}:${at.port}`;
}

/**
 * Installs the process's Temporal runtime with its logs forwarded to `logger`, and, when
 * `prometheus` is given, the runtime's own metrics (temporal_*: polls, task latencies, slots,
 * workflow and activity counts) served on that address at /metrics. Returns false and changes
 * nothing when a runtime already exists (the test set-up installs a quiet one first).
 */
export function installWorkerLogging(
  logger: Logger,
  logLevel: string,
  prometheus?: { host: string; port: number },
): boolean {
  if (Runtime._instance !== undefined) return false;
  const level = coreLogLevel(logLevel);
  try {
    Runtime.install({
      logger: temporalLogger(logger),
      telemetryOptions: {
        logging: {
          filter: makeTelemetryFilterString({ core: level, other: 'ERROR' }),
          forward: {},
        },
        ...(prometheus
          ? { metrics: { prometheus: { bindAddress: socketAddress(prometheus) } } }
          : {}),
      },
    });
  } catch (err) {
    if (prometheus && /address|in use|bind/i.test((err as Error).message)) {
      throw new ConfigError([
        `WORKER_TEMPORAL_METRICS_PORT: ${prometheus.port} cannot be served on ${prometheus.host} (${(err as Error).message}); set WORKER_TEMPORAL_METRICS_PORT to a free port`,
      ]);
    }
    throw err;
  }
  return true;
}
