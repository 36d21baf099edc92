// GDPR erasure: a customer's personal data is scrubbed, their ledger stays whole.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type postgres from 'postgres';
import { toDate } from '../../db/client.js';
import { adminOnly, type AuthEnv } from '../auth.js';
import {
  customerIdSchema,
  errorResponse,
  idempotencyKeyHeader,
  plainText,
  security,
  type AppDeps,
} from '../common.js';
import { ApiError, validationHook } from '../errors.js';

/** What replaces personal data. */
export const REDACTED = '[redacted]';

const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g;
/** International phone numbers (+ and digits, with the usual separators). */
const PHONE = /\+\d[\d ().-]{5,}\d/g;
/**
 * Keys whose value is personal whatever it looks like: ours, and Stripe's objects that carry a
 * name, address, e-mail or phone (customer_details, billing_details, shipping…).
 */
const PERSONAL_KEYS =
  /^(e-?mail|email_?address|phone|phone_?number|msisdn|customer_?email|customer_details|billing_details|shipping(_details)?|address)$/i;

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Replaces personal data in any JSON-like value: the given literals (the customer's e-mail,
 * external id, phone numbers), anything shaped like an e-mail address or an international phone
 * number, and every value under a key that names personal data.
 */
export function redactPersonalData<T>(value: T, literals: readonly string[] = []): T {
  const known = literals
    .filter((l) => l.trim().length >= 3)
    .sort((a, b) => b.length - a.length)
    .map((l) => new RegExp(escapeRegExp(l), 'gi'));
  const text = (s: string) => {
    let out = s;
    for (const re of known) out = out.replace(re, REDACTED);
    return out.replace(EMAIL, REDACTED).replace(PHONE, REDACTED);
  };
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return text(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(
        Object.entries(v as Record<string, unknown>).map(([k, inner]) => [
          k,
          PERSONAL_KEYS.test(k) && inner !== null && inner !== undefined ? REDACTED : walk(inner),
        ]),
      );
    }
    return v;
  };
  return walk(value) as T;
}

const AnonymiseBody = z
  .object({ reason: plainText({ min: 3, max: 500, what: 'a reason' }) })
  .strict()
  .openapi('AnonymiseCustomer');

const AnonymisedSchema = z
  .object({
    customerId: z.string(),
    status: z.enum(['anonymised', 'already_anonymised']),
    anonymisedAt: z.string(),
    scrubbed: z
      .object({
        notifications: z.number().int(),
        outboxMessages: z.number().int(),
        verifications: z.number().int(),
        stripeEvents: z.number().int(),
      })
      .nullable()
      .openapi({ description: 'Rows changed by this call; null when it was already done' }),
  })
  .openapi('CustomerAnonymised');

const anonymiseCustomer = createRoute({
  method: 'post',
  path: '/v1/admin/customers/{id}/anonymise',
  tags: ['admin'],
  summary: "Erase a customer's personal data (GDPR); the ledger stays whole (admin)",
  description:
    'Clears the e-mail and external id, scrubs e-mail addresses and phone numbers from the ' +
    "customer's notifications, outbox messages, verifications and Stripe event payloads, and " +
    'records the erasure in the audit log. Ledger entries and postings are kept. A second call ' +
    'answers `already_anonymised`.',
  security,
  middleware: [adminOnly] as const,
  request: {
    params: z.object({ id: customerIdSchema }),
    headers: idempotencyKeyHeader('answer', 'gdpr-ticket-4711'),
    body: { required: true, content: { 'application/json': { schema: AnonymiseBody } } },
  },
  responses: {
    200: { content: { 'application/json': { schema: AnonymisedSchema } }, description: 'Done' },
    400: errorResponse('Invalid id or body'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
    404: errorResponse('No such customer'),
  },
});

type Tx = postgres.TransactionSql;

/** Rewrites the JSON column of each row whose redacted value differs; returns how many changed. */
async function scrubRows<R extends { id: string }>(
  rows: readonly R[],
  redact: (row: R) => R,
  write: (row: R) => Promise<unknown>,
): Promise<number> {
  let changed = 0;
  for (const row of rows) {
    const clean = redact(row);
    if (JSON.stringify(clean) === JSON.stringify(row)) continue;
    await write(clean);
    changed += 1;
  }
  return changed;
}

/** Scrubs one customer in the caller's transaction (the customer row is already locked). */
async function scrubCustomer(
  tx: Tx,
  customer: { id: string; email: string | null; external_id: string | null },
) {
  const phones = await tx<{ phone_number: string }[]>`
    select distinct phone_number from verifications
    where customer_id = ${customer.id} and phone_number is not null`;
  const literals = [
    customer.email,
    customer.external_id,
    ...phones.map((p) => p.phone_number),
  ].filter((l): l is string => typeof l === 'string' && l.length > 0);
  const redact = <T>(v: T) => redactPersonalData(v, literals);

  const notifications = await scrubRows(
    await tx<{ id: string; title: string; body: string; data: Record<string, unknown> }[]>`
      select id, title, body, data from notifications where customer_id = ${customer.id}`,
    (row) => ({ ...row, title: redact(row.title), body: redact(row.body), data: redact(row.data) }),
    (row) => tx`
      update notifications set title = ${row.title}, body = ${row.body},
             data = ${JSON.stringify(row.data)}::jsonb
      where id = ${row.id}`,
  );
  const outboxMessages = await scrubRows(
    await tx<{ id: string; payload: Record<string, unknown> }[]>`
      select id, payload from notification_outbox where customer_id = ${customer.id}`,
    (row) => ({ ...row, payload: redact(row.payload) }),
    (row) => tx`
      update notification_outbox set payload = ${JSON.stringify(row.payload)}::jsonb
      where id = ${row.id}`,
  );
  const stripeEvents = await scrubRows(
    await tx<{ id: string; payload: Record<string, unknown> }[]>`
      select id, payload from stripe_events
      where payment_id in (select id from payments where customer_id = ${customer.id})`,
    (row) => ({ ...row, payload: redact(row.payload) }),
    (row) => tx`
      update stripe_events set payload = ${JSON.stringify(row.payload)}::jsonb
      where id = ${row.id}`,
  );
  const verifications = await tx`
    update verifications set phone_number = null, code = null, updated_at = now()
    where customer_id = ${customer.id} and (phone_number is not null or code is not null)`;
  return { notifications, outboxMessages, verifications: verifications.count, stripeEvents };
}

export function adminAnonymiseRoutes({ db, logger }: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  /** Anonymises a customer once, in one transaction; a repeat answers what was done. */
  app.openapi(anonymiseCustomer, async (c) => {
    const { id } = c.req.valid('param');
    const { reason } = c.req.valid('json');
    const key = c.req.valid('header')['idempotency-key'];
    const actor = c.get('auth').sub;
    const result = await db.sql.begin(async (tx) => {
      const [customer] = await tx<
        {
          id: string;
          email: string | null;
          external_id: string | null;
          anonymised_at: Date | string | null;
        }[]
      >`select id, email, external_id, anonymised_at from customers where id = ${id} for update`;
      if (!customer) return undefined;
      if (customer.anonymised_at !== null) {
        return {
          status: 'already_anonymised' as const,
          anonymisedAt: toDate(customer.anonymised_at),
          scrubbed: null,
        };
      }
      const scrubbed = await scrubCustomer(tx, customer);
      const [done] = await tx<{ anonymised_at: Date | string }[]>`
        update customers set email = null, external_id = null, anonymised_at = now()
        where id = ${id} returning anonymised_at`;
      await tx`
        insert into audit_log (idempotency_key, actor, action, target_type, target_id, reason, details)
        values (${`anonymise:${id}`}, ${actor}, 'customer_anonymise', 'customer', ${id}, ${reason},
                ${JSON.stringify({ scrubbed, ...(key ? { idempotencyKey: key } : {}) })}::jsonb)
        on conflict (idempotency_key) do nothing`;
      return {
        status: 'anonymised' as const,
        anonymisedAt: toDate(done!.anonymised_at),
        scrubbed,
      };
    });
    if (!result) throw new ApiError(404, 'customer_not_found', `No customer with id ${id}.`);
    if (result.status === 'anonymised') {
      logger.info({ customerId: id, actor, scrubbed: result.scrubbed }, 'customer anonymised');
    }
    return c.json(
      {
        customerId: id,
        status: result.status,
        anonymisedAt: result.anonymisedAt.toISOString(),
        scrubbed: result.scrubbed,
      },
      200,
    );
  });

  return app;
}
