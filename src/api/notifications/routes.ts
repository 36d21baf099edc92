// The caller's notifications (newest first, paged) and their notification preferences.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { NOTIFICATION_KINDS } from '../../activities/notifications.js';
import { toDate } from '../../db/client.js';
import { actingCustomer, type AuthEnv } from '../auth.js';
import { jsonBalance } from '../../ledger/ledger.js';
import {
  balanceSchema,
  customerIdSchema,
  errorResponse,
  security,
  type AppDeps,
} from '../common.js';
import { ApiError, validationHook } from '../errors.js';

const NotificationSchema = z
  .object({
    id: z.number().int(),
    kind: z.string(),
    title: z.string(),
    body: z.string(),
    amount: z.number().int().nullable(),
    balanceAfter: balanceSchema.nullable(),
    data: z.record(z.string(), z.unknown()),
    createdAt: z.string(),
  })
  .openapi('Notification');

const PreferencesSchema = z
  .object({
    kinds: z
      .array(z.enum(NOTIFICATION_KINDS))
      .nullable()
      .openapi({ description: 'Kinds to receive; null for every kind' }),
    minAmount: z.number().int().min(0).max(1_000_000_000),
  })
  .strict()
  .openapi('NotificationPreferences');

const listNotifications = createRoute({
  method: 'get',
  path: '/v1/notifications',
  tags: ['notifications'],
  summary: "The caller's notifications, newest first",
  security,
  request: {
    query: z.object({
      customerId: customerIdSchema.optional(),
      cursor: z
        .string()
        .regex(/^\d{1,18}$/, 'not a cursor this API returned')
        .optional(),
      limit: z.coerce.number().int().min(1).max(200).default(50),
    }),
  },
  responses: {
    200: {
      content: {
        'application/json': {
          schema: z.object({
            items: z.array(NotificationSchema),
            nextCursor: z.string().nullable(),
          }),
        },
      },
      description: 'A page',
    },
    400: errorResponse('Bad cursor or limit'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Another customer'),
  },
});

const getPreferences = createRoute({
  method: 'get',
  path: '/v1/notifications/preferences',
  tags: ['notifications'],
  summary: "The caller's notification preferences",
  security,
  request: { query: z.object({ customerId: customerIdSchema.optional() }) },
  responses: {
    200: {
      content: { 'application/json': { schema: PreferencesSchema } },
      description: 'Preferences',
    },
    401: errorResponse('No or bad token'),
    403: errorResponse('Another customer'),
  },
});

const putPreferences = createRoute({
  method: 'put',
  path: '/v1/notifications/preferences',
  tags: ['notifications'],
  summary: "Replace the caller's notification preferences",
  security,
  request: {
    query: z.object({ customerId: customerIdSchema.optional() }),
    body: { required: true, content: { 'application/json': { schema: PreferencesSchema } } },
  },
  responses: {
    200: { content: { 'application/json': { schema: PreferencesSchema } }, description: 'Saved' },
    400: errorResponse('Invalid body'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Another customer'),
    404: errorResponse('No such customer'),
  },
});

export function notificationRoutes({ db }: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  /** Newest first; the cursor is the last id seen. */
  app.openapi(listNotifications, async (c) => {
    const q = c.req.valid('query');
    const customerId = actingCustomer(c.get('auth'), q.customerId);
    const rows = await db.sql<
      {
        id: string;
        kind: string;
        title: string;
        body: string;
        amount: string | null;
        balance_after: string | null;
        data: Record<string, unknown>;
        created_at: Date | string;
      }[]
    >`
      select id, kind, title, body, amount, balance_after, data, created_at
      from notifications
      where customer_id = ${customerId}
        ${q.cursor ? db.sql`and id < ${q.cursor}` : db.sql``}
      order by id desc
      limit ${q.limit + 1}`;
    const page = rows.slice(0, q.limit);
    return c.json(
      {
        items: page.map((r) => ({
          id: Number(r.id),
          kind: r.kind,
          title: r.title,
          body: r.body,
          amount: r.amount === null ? null : Number(r.amount),
          balanceAfter: r.balance_after === null ? null : jsonBalance(r.balance_after),
          data: r.data,
          createdAt: toDate(r.created_at).toISOString(),
        })),
        nextCursor: rows.length > q.limit ? String(page[page.length - 1]!.id) : null,
      },
      200,
    );
  });

  app.openapi(getPreferences, async (c) => {
    const customerId = actingCustomer(c.get('auth'), c.req.valid('query').customerId);
    const [row] = await db.sql<{ kinds: string[] | null; min_amount: string }[]>`
      select kinds, min_amount from notification_preferences where customer_id = ${customerId}`;
    return c.json(
      {
        kinds: (row?.kinds ?? null) as (typeof NOTIFICATION_KINDS)[number][] | null,
        minAmount: Number(row?.min_amount ?? 0),
      },
      200,
    );
  });

  app.openapi(putPreferences, async (c) => {
    const customerId = actingCustomer(c.get('auth'), c.req.valid('query').customerId);
    const body = c.req.valid('json');
    const [customer] = await db.sql`select 1 from customers where id = ${customerId}`;
    if (!customer) throw new ApiError(404, 'customer_not_found', 'No such customer.');
    await db.sql`
      insert into notification_preferences (customer_id, kinds, min_amount)
      values (${customerId}, ${body.kinds}, ${body.minAmount})
      on conflict (customer_id) do update
        set kinds = excluded.kinds, min_amount = excluded.min_amount, updated_at = now()`;
    return c.json(body, 200);
  });

  return app;
}
