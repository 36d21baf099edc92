// Structured logs (pino). Secrets and e-mail addresses are redacted wherever they appear as fields.
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino({
    name: options.name ?? 'creditflow',
    level: options.level ?? 'info',
    redact: {
      paths: [
        'authorization',
        '*.authorization',
        'headers.authorization',
        'email',
        '*.email',
        'secret',
        '*.secret',
        'token',
        '*.token',
      ],
      censor: '[redacted]',
    },
  });
}
