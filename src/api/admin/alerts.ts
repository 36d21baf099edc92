// Alerts for operators: list them (open or acknowledged) and acknowledge them.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { toDate } from '../../db/client.js';
import { ALERT_KINDS } from '../../alerts/alerts.js';
import { adminOnly, type AuthEnv } from '../auth.js';
import { errorResponse, security, type AppDeps } from '../common.js';
import { ApiError, validationHook } from '../errors.js';

export const AlertSchema = z
  .object({
    id: z.number().int(),
    key: z.string(),
    kind: z.string(),
    severity: z.enum(['warning', 'critical']),
    status: z.enum(['open', 'acked']),
    message: z.string(),
    details: z.record(z.string(), z.unknown()),
    customerId: z.string().nullable(),
    occurrences: z.number().int(),
    createdAt: z.string(),
    lastSeenAt: z.string(),
    ackedAt: z.string().nullable(),
    ackedBy: z.string().nullable(),
  })
  .openapi('Alert');

export interface AlertRow {
  id: string;
  key: string;
  kind: string;
  severity: 'warning' | 'critical';
  status: 'open' | 'acked';
  message: string;
  details: Record<string, unknown>;
  customer_id: string | null;
  occurrences: number;
  created_at: Date | string;
  last_seen_at: Date | string;
  acked_at: Date | string | null;
  acked_by: string | null;
}

/** An alert row as the API shows it. */
export function presentAlert(row: AlertRow): z.infer<typeof AlertSchema> {
  return {
    id: Number(row.id),
    key: row.key,
    kind: row.kind,
    severity: row.severity,
    status: row.status,
    message: row.message,
    details: row.details,
    customerId: row.customer_id,
    occurrences: row.occurrences,
    createdAt: toDate(row.created_at).toISOString(),
    lastSeenAt: toDate(row.last_seen_at).toISOString(),
    ackedAt: row.acked_at === null ? null : toDate(row.acked_at).toISOString(),
    ackedBy: row.acked_by,
  };
}

const AlertPageSchema = z
  .object({ items: z.array(AlertSchema), nextCursor: z.string().nullable() })
  .openapi('AlertPage');

const ListQuery = z.object({
  status: z.enum(['open', 'acked']).optional().openapi({ description: 'Both when absent' }),
  kind: z.enum(ALERT_KINDS).optional(),
  cursor: z.string().max(200).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});

const AlertIdParam = z.object({
  id: z
    .string()
    .regex(/^[1-9]\d{0,17}$/, 'must be an alert id (a positive integer)')
    .openapi({ example: '42' }),
});

const listAlerts = createRoute({
  method: 'get',
  path: '/v1/admin/alerts',
  tags: ['admin'],
  summary: 'Alerts, newest first, by status and kind (admin)',
  security,
  middleware: [adminOnly] as const,
  request: { query: ListQuery },
  responses: {
    200: { content: { 'application/json': { schema: AlertPageSchema } }, description: 'A page' },
    400: errorResponse('Bad filter or cursor'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
  },
});

const ackAlert = createRoute({
  method: 'post',
  path: '/v1/admin/alerts/{id}/ack',
  tags: ['admin'],
  summary: 'Acknowledge an alert: someone is on it (admin)',
  description:
    'Records who acknowledged it and when, in the alert and in the audit log. Acknowledging an acknowledged alert answers it as it is.',
  security,
  middleware: [adminOnly] as const,
  request: { params: AlertIdParam },
  responses: {
    200: { content: { 'application/json': { schema: AlertSchema } }, description: 'The alert' },
    400: errorResponse('Not an alert id'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
    404: errorResponse('No such alert'),
  },
});

const encodeCursor = (id: number) => Buffer.from(`a:${id}`).toString('base64url');
function decodeCursor(cursor: string): number {
  const match = /^a:(\d{1,18})$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (!match) throw new ApiError(400, 'invalid_cursor', 'cursor: not a cursor this API returned.');
  return Number(match[1]);
}

export function alertRoutes({ db, logger }: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  /** Pages through alerts, newest first. */
  app.openapi(listAlerts, async (c) => {
    const q = c.req.valid('query');
    const before = q.cursor ? decodeCursor(q.cursor) : null;
    const rows = await db.sql<AlertRow[]>`
      select * from alerts
      where true
        ${q.status ? db.sql`and status = ${q.status}` : db.sql``}
        ${q.kind ? db.sql`and kind = ${q.kind}` : db.sql``}
        ${before !== null ? db.sql`and id < ${before}` : db.sql``}
      order by id desc
      limit ${q.limit + 1}`;
    const page = rows.slice(0, q.limit).map(presentAlert);
    const nextCursor = rows.length > q.limit ? encodeCursor(page[page.length - 1]!.id) : null;
    return c.json({ items: page, nextCursor }, 200);
  });

  /** Acknowledges an alert, once; a second acknowledgement changes nothing. */
  app.openapi(ackAlert, async (c) => {
    const id = c.req.valid('param').id;
    const actor = c.get('auth').sub;
    const row = await db.sql.begin(async (tx) => {
      const [acked] = await tx<AlertRow[]>`
        update alerts set status = 'acked', acked_at = now(), acked_by = ${actor}
        where id = ${id} and status = 'open'
        returning *`;
      if (acked) {
        await tx`
          insert into audit_log (idempotency_key, actor, action, target_type, target_id, details)
          values (${`alert-ack:${id}`}, ${actor}, 'alert_ack', 'alert', ${id},
                  ${JSON.stringify({ kind: acked.kind, key: acked.key })}::jsonb)
          on conflict (idempotency_key) do nothing`;
        return acked;
      }
      const [existing] = await tx<AlertRow[]>`select * from alerts where id = ${id}`;
      return existing;
    });
    if (!row) throw new ApiError(404, 'alert_not_found', `No alert with id ${id}.`);
    logger.info({ alertId: Number(row.id), kind: row.kind, actor }, 'alert acknowledged');
    return c.json(presentAlert(row), 200);
  });

  return app;
}
