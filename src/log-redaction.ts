// What never reaches a log line: credentials, signatures, e-mail addresses and card data. Two
// layers: pino's `redact` censors known fields wherever the app logs them, and a safety net masks
// values that look like secrets in any string (messages, error texts, paths), whatever the field.
import type { LoggerOptions } from 'pino';

export const REDACTED = '[redacted]';

/** Header names whose values are credentials or signatures. */
const SECRET_HEADERS = ['authorization', 'cookie', 'set-cookie', 'stripe-signature', 'x-signature'];
/** Field names whose values are credentials or personal data. */
const SECRET_FIELDS = [
  'authorization',
  'cookie',
  'password',
  'secret',
  'token',
  'accessToken',
  'refreshToken',
  'apiKey',
  'api_key',
  'secretKey',
  'jwtSecret',
  'webhookSecret',
  'stripeWebhookSecret',
  'smsWebhookSecret',
  'signature',
  'client_secret',
  'clientSecret',
  'email',
  'customerEmail',
  'customer_email',
  'receipt_email',
  'card',
  'cardNumber',
  'card_number',
  'last4',
  'cvc',
  'payment_method_details',
  'billing_details',
  'customer_details',
];

/** pino `redact` paths: each field at the top level and one or two levels down, each header under `headers`. */
export const REDACT_PATHS: string[] = [
  ...SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]),
  ...SECRET_HEADERS.flatMap((h) => [`headers["${h}"]`, `*.headers["${h}"]`, `*.*.headers["${h}"]`]),
];

// Each pattern and what it is replaced with; the order matters (a Bearer JWT is one match).
const VALUE_PATTERNS: Array<[RegExp, string]> = [
  [/\bBearer\s+[A-Za-z0-9\-._~+/]+=*/gi, `Bearer ${REDACTED}`],
  [/\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g, '[jwt]'],
  [/\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9]+/g, '[stripe-key]'],
  [/\bwhsec_[A-Za-z0-9+/=]+/g, '[webhook-secret]'],
  [/\bt=\d+(?:,v\d+=[0-9a-f]+)+/g, '[signature]'],
  [/\bsha256=[0-9a-f]{16,}/gi, '[signature]'],
  [/[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g, '[email]'],
  // A %40-encoded e-mail in a logged URL.
  [/[A-Za-z0-9._+-]+%40[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/gi, '[email]'],
];

/** 13-19 digits, optionally grouped by spaces or dashes: masked only when the Luhn check passes. */
const CARD_CANDIDATE = /\b\d(?:[ -]?\d){12,18}\b/g;

function luhn(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** Masks secret-looking values in free text (messages, error texts, URLs). */
export function maskSecrets(text: string): string {
  let out = text;
  for (const [pattern, replacement] of VALUE_PATTERNS) out = out.replace(pattern, replacement);
  return out.replace(CARD_CANDIDATE, (match) =>
    luhn(match.replace(/[ -]/g, '')) ? '[card]' : match,
  );
}

const MAX_DEPTH = 8;

/** A copy of a log value with every string masked; errors become pino's serialized form first. */
export function maskValue(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return maskSecrets(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_DEPTH || seen.has(value)) return value;
  seen.add(value);
  if (value instanceof Error) return maskError(value, depth, seen);
  if (Array.isArray(value)) return value.map((v) => maskValue(v, depth + 1, seen));
  if (value instanceof Date || ArrayBuffer.isView(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = maskValue(v, depth + 1, seen);
  return out;
}

/** The same error (prototype, so pino's serializer still sees its type) with its texts masked. */
function maskError(err: Error, depth: number, seen: WeakSet<object>): Error {
  const copy = Object.create(Object.getPrototypeOf(err) as object) as Error;
  for (const key of Object.getOwnPropertyNames(err)) {
    const descriptor = Object.getOwnPropertyDescriptor(err, key)!;
    if ('value' in descriptor) descriptor.value = maskValue(descriptor.value, depth + 1, seen);
    Object.defineProperty(copy, key, descriptor);
  }
  return copy;
}

/**
 * The redaction part of every creditflow logger's options: `redact` for known fields, a `log`
 * formatter masking the fields' string values, and a hook masking the message and its arguments.
 */
export function logRedactionOptions(): Pick<LoggerOptions, 'redact' | 'formatters' | 'hooks'> {
  return {
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    formatters: {
      log: (object) => maskValue(object) as Record<string, unknown>,
    },
    hooks: {
      logMethod(args, method) {
        const masked = args.map((arg) => (typeof arg === 'string' ? maskSecrets(arg) : arg));
        return method.apply(this, masked as Parameters<typeof method>);
      },
    },
  };
}
