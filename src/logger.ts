// Structured logs (pino). Secrets, e-mail addresses and card data never reach a line: see
// src/log-redaction.ts for the fields censored and the values masked.
import { createRequire } from 'node:module';
import pino, { type DestinationStream, type Logger } from 'pino';
import { logRedactionOptions } from './log-redaction.js';
import { currentRequestId } from './observability/request-context.js';

export type { Logger };

export interface LoggerOptions {
  level?: string;
  name?: string;
  /**
   * NODE_ENV. `development` writes readable, coloured lines when stdout is a terminal and
   * pino-pretty (a dev dependency) is installed; anything else, and every non-terminal, writes one
   * JSON object per line.
   */
  nodeEnv?: 'development' | 'test' | 'production';
  /** Where lines go (tests); stdout otherwise. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      name: options.name ?? 'creditflow',
      level: options.level ?? 'info',
      // Redaction: field paths censored, secret-looking values masked (kept in its own module).
      ...logRedactionOptions(),
      // Every line written while serving a request (or running an activity of a flow a request
      // started) names that request; fields given to the call itself take precedence.
      mixin: () => {
        const requestId = currentRequestId();
        return requestId ? { requestId } : {};
      },
    },
    options.destination ?? prettyDestination(options.nodeEnv),
  );
}

/** `json` unless this is development on a terminal with pino-pretty installed. */
export function logFormat(
  nodeEnv: LoggerOptions['nodeEnv'],
  isTerminal: boolean,
): 'json' | 'pretty' {
  return nodeEnv === 'development' && isTerminal ? 'pretty' : 'json';
}

/** A synchronous pino-pretty stream in development on a terminal; undefined (JSON) otherwise. */
function prettyDestination(nodeEnv: LoggerOptions['nodeEnv']): DestinationStream | undefined {
  if (logFormat(nodeEnv, process.stdout.isTTY === true) !== 'pretty') return undefined;
  try {
    // Loaded only here: production installs omit dev dependencies and never ask for it.
    const pretty = createRequire(import.meta.url)('pino-pretty') as (options: {
      sync: boolean;
      colorize: boolean;
    }) => DestinationStream;
    return pretty({ sync: true, colorize: true });
  } catch {
    return undefined;
  }
}
