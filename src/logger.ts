// Structured logs (pino). Secrets, e-mail addresses and card data never reach a line: see
// src/log-redaction.ts for the fields censored and the values masked.
import pino, { type DestinationStream, type Logger } from 'pino';
import { logRedactionOptions } from './log-redaction.js';

export type { Logger };

export function createLogger(
  options: { level?: string; name?: string; destination?: DestinationStream } = {},
): Logger {
  return pino(
    {
      name: options.name ?? 'creditflow',
      level: options.level ?? 'info',
      // Redaction: field paths censored, secret-looking values masked (kept in its own module).
      ...logRedactionOptions(),
    },
    options.destination,
  );
}
