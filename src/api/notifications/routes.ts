// The caller's notifications (newest first, paged) and their notification preferences: kinds,
// channels (in-app, e-mail) per kind, and the minimum amount.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { NOTIFICATION_KINDS, type NotificationKind } from '../../activities/notifications.js';
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
import {
  NOTIFICATION_CHANNELS,
  effectiveChannels,
  readPreferences,
  type NotificationPreferences,
} from '../../notifications/preferences.js';

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

const channelList = z
  .array(z.enum(NOTIFICATION_CHANNELS))
  .max(NOTIFICATION_CHANNELS.length)
  .refine((list) => new Set(list).size === list.length, 'names a channel twice')
  .openapi({ example: ['in_app', 'email'] });

const channelsShape = <T extends z.ZodTypeAny>(value: T) =>
  Object.fromEntries(NOTIFICATION_KINDS.map((kind) => [kind, value])) as Record<
    NotificationKind,
    T
  >;

const kindsField = z
  .array(z.enum(NOTIFICATION_KINDS))
  .nullable()
  .openapi({ description: 'Kinds to receive at all; null for every kind' });
const minAmountField = z.number().int().min(0).max(1_000_000_000).openapi({
  description:
    'Messages about fewer credits than this (either sign) are not delivered on any channel',
});

const PreferencesSchema = z
  .object({
    kinds: kindsField,
    minAmount: minAmountField,
    channels: z.object(channelsShape(channelList)).openapi({
      description: 'The channels each kind is delivered on',
    }),
  })
  .openapi('NotificationPreferences');

const PreferencesInputSchema = z
  .object({
    kinds: kindsField,
    minAmount: minAmountField,
    channels: z
      .object(channelsShape(channelList.optional()))
      .strict()
      .nullable()
      .optional()
      .openapi({
        description:
          'Channels by kind (`in_app`, `email`); a kind left out goes to every channel, `[]` to none. ' +
          'Omitted: the stored channels stay; null: every kind on every channel. E-mail goes to the ' +
          "customer's address on file, and only when the server has SMTP_URL set.",
        example: { credits_refunded: ['in_app', 'email'], credits_deducted: ['in_app'] },
      }),
  })
  .strict()
  .openapi('NotificationPreferencesInput');

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
    body: {
      required: true,
      content: { 'application/json': { schema: PreferencesInputSchema } },
    },
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
    return c.json(preferencesView(await readPreferences(db.sql, customerId)), 200);
  });

  /** Replaces the kinds and minimum; the channels too when the body has them. */
  app.openapi(putPreferences, async (c) => {
    const customerId = actingCustomer(c.get('auth'), c.req.valid('query').customerId);
    const body = c.req.valid('json');
    const [customer] = await db.sql`select 1 from customers where id = ${customerId}`;
    if (!customer) throw new ApiError(404, 'customer_not_found', 'No such customer.');
    // Only the kinds the body names: a kind left out keeps meaning "every channel".
    const channels =
      body.channels == null
        ? null
        : Object.fromEntries(
            Object.entries(body.channels).filter(([, list]) => list !== undefined),
          );
    const keepChannels = body.channels === undefined;
    await db.sql`
      insert into notification_preferences (customer_id, kinds, min_amount, channels)
      values (${customerId}, ${body.kinds}, ${body.minAmount},
              ${channels === null ? null : JSON.stringify(channels)}::jsonb)
      on conflict (customer_id) do update
        set kinds = excluded.kinds, min_amount = excluded.min_amount,
            channels = case when ${keepChannels} then notification_preferences.channels
                            else excluded.channels end,
            updated_at = now()`;
    return c.json(preferencesView(await readPreferences(db.sql, customerId)), 200);
  });

  return app;
}

function preferencesView(preferences: NotificationPreferences) {
  return {
    kinds: preferences.kinds,
    minAmount: Number(preferences.minAmount),
    channels: effectiveChannels(preferences),
  };
}
