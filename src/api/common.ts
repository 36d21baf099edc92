// Pieces every resource's routes share: the error schema, placeholders, the app's dependencies.
import { z } from '@hono/zod-openapi';
import { createHash, randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import type { Database } from '../db/client.js';
import type { Ledger } from '../ledger/ledger.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { RateLimits } from './rate-limit.js';
import type { WalletEventHub } from './wallet/events.js';
import type { CreditPacks } from '../payments/packs.js';

export interface AppDeps {
  db: Database;
  ledger: Ledger;
  temporal: Client;
  logger: Logger;
  jwtSecret: string;
  /** The longest lifetime (exp - iat) a bearer token may have; one day when absent. */
  maxTokenLifetimeSeconds?: number | undefined;
  taskQueue: string;
  temporalUiUrl?: string | undefined;
  /** How long a POST waits for Temporal to accept a workflow start before a 503 (3 s when absent). */
  temporalStartTimeoutMs?: number | undefined;
  /** Shared with an in-process worker; the app makes its own when absent. */
  metrics?: Metrics;
  /** One LISTEN connection per process; the app makes its own when absent. */
  walletEvents?: WalletEventHub;
  /** Verifies POST /webhooks/sms; the route answers 503 without it. */
  smsWebhookSecret?: string | undefined;
  /** Credit packs on sale and how long a customer has to pay; the defaults when absent. */
  checkout?: { packs?: CreditPacks; expirySeconds?: number };
  /** Verifies Stripe-Signature on POST /webhooks/stripe; that route answers 503 without it. */
  stripeWebhookSecret?: string | undefined;
  /** Days a customer may refund a top-up's unused credits themselves (14 when absent). */
  refundWindowDays?: number | undefined;
  /** Limits on /v1 per principal and per IP; in-memory with the default limits when absent. */
  rateLimits?: RateLimits;
  /** Aborted when the API stops: open event streams end, so the server can close. */
  shutdownSignal?: AbortSignal | undefined;
}

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: 'invalid_request' }),
      message: z.string().openapi({ example: 'amount: must be a non-zero integer' }),
    }),
  })
  .openapi('Error');

export const errorResponse = (description: string) => ({
  content: { 'application/json': { schema: ErrorSchema } },
  description,
});

export const security = [{ bearerAuth: [] }];

const PLACEHOLDER = /^(<.*>|\{.*\}|:.+|null|undefined|nil|none|nan|\$\{.*\})$/i;

/** Values people paste from docs or templates by mistake (`<email>`, `null`, `{id}`, …). */
export function isPlaceholder(value: string): boolean {
  const trimmed = value.trim();
  return trimmed === '' || PLACEHOLDER.test(trimmed);
}

export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * C0 and C1 control characters (NUL, escape, …) and unpaired surrogates. PostgreSQL refuses a NUL
 * in text and a lone surrogate is not UTF-8, so text with them would fail deep inside a workflow
 * instead of at the edge.
 */
export const CONTROL_CHARACTERS =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** True when the text has no control characters and no unpaired surrogates. */
export function isPlainText(value: string): boolean {
  return !CONTROL_CHARACTERS.test(value);
}

/**
 * Every free-text input goes through this: a string without control characters, trimmed,
 * between `min` and `max` characters. Messages say what was wrong.
 */
export function plainText({
  min = 1,
  max,
  what = 'text',
  missing,
}: {
  min?: number;
  max: number;
  what?: string;
  /** The message when the value is absent or not a string. */
  missing?: string;
}) {
  // Trimmed first (edge whitespace, tabs and newlines are dropped, never stored), then refused
  // if any control character is left.
  return z
    .string({ error: missing ?? `must be ${what}` })
    .trim()
    .min(min, min <= 1 ? 'must not be empty' : `must be at least ${min} characters`)
    .max(max, `must be at most ${max} characters`)
    .refine(isPlainText, { message: 'must not contain control characters' });
}

/** A customer id field: a UUID, and a clear message when it is a placeholder. */
export const customerIdSchema = z
  .string()
  .trim()
  .max(100, 'must be a customer id (UUID)')
  .refine((v) => !isPlaceholder(v), { message: 'is a placeholder, not a customer id' })
  .refine((v) => UUID_PATTERN.test(v), { message: 'must be a customer id (UUID)' })
  .transform((v) => v.toLowerCase())
  .openapi({ example: '7f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f' });

/** An operator's link to a workflow in the Temporal UI; present only when TEMPORAL_UI_URL is set. */
export const temporalUiUrlSchema = z.string().optional().openapi({
  description:
    "The workflow's page in the Temporal UI, for operators; present when the API has TEMPORAL_UI_URL",
  example: 'https://temporal-ui.example.com/namespaces/default/workflows/adjustment-adj_1',
});

/**
 * `{ temporalUiUrl }` naming the workflow's page in the Temporal UI
 * (`<TEMPORAL_UI_URL>/namespaces/<namespace>/workflows/<workflowId>`), or `{}` without
 * TEMPORAL_UI_URL: spread into the responses operators read.
 */
export function temporalUiLink(
  deps: Pick<AppDeps, 'temporalUiUrl' | 'temporal'>,
  workflowId: string,
): { temporalUiUrl?: string } {
  if (!deps.temporalUiUrl) return {};
  const base = deps.temporalUiUrl.replace(/\/+$/, '');
  const namespace = encodeURIComponent(deps.temporal.options.namespace);
  return {
    temporalUiUrl: `${base}/namespaces/${namespace}/workflows/${encodeURIComponent(workflowId)}`,
  };
}

/** What every POST that starts work answers (202). */
export const StartedSchema = z
  .object({
    id: z.string(),
    workflowId: z.string().openapi({ description: 'The Temporal workflow id, for the UI' }),
    status: z.string(),
    temporalUiUrl: temporalUiUrlSchema,
  })
  .openapi('Started');

/**
 * Ids of flows a customer starts: from the customer and their Idempotency-Key, so a retried
 * POST names the same flow (and two customers' keys never collide), or fresh without a key.
 */
export function flowIdFor(prefix: string, customerId: string, idempotencyKey?: string): string {
  if (!idempotencyKey) return `${prefix}_${randomUUID().replaceAll('-', '')}`;
  const digest = createHash('sha256').update(`${customerId}\n${idempotencyKey}`).digest('hex');
  return `${prefix}_${digest.slice(0, 32)}`;
}

/** The optional Idempotency-Key header of a POST that starts a flow. */
export function idempotencyKeyHeader(what: string, example: string) {
  return z.object({
    'idempotency-key': plainText({ max: 255 })
      .optional()
      .openapi({
        example,
        description: `Client-chosen key; a retry with the same key returns the same ${what}`,
      }),
  });
}

/** A balance: a JSON number while it is a safe integer, else a decimal string (never rounded). */
export const balanceSchema = z.union([z.number().int(), z.string().regex(/^-?\d+$/)]).openapi({
  description:
    'Credits. A JSON number up to 2^53 - 1 in magnitude; beyond that a decimal string, so it is never rounded.',
  example: 750,
});
