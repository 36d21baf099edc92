// The verification price table: anyone signed in reads it; admins change it (audited).
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { randomUUID } from 'node:crypto';
import { adminOnly, type AuthEnv } from '../auth.js';
import { errorResponse, plainText, security, type AppDeps } from '../common.js';
import { validationHook } from '../errors.js';

const PriceSchema = z
  .object({ service: z.string(), country: z.string(), price: z.number().int() })
  .openapi('Price');

const listPrices = createRoute({
  method: 'get',
  path: '/v1/prices',
  tags: ['verifications'],
  summary: 'Verification prices in credits, by service and country',
  security,
  responses: {
    200: {
      content: { 'application/json': { schema: z.object({ items: z.array(PriceSchema) }) } },
      description: 'Prices',
    },
    401: errorResponse('No or bad token'),
  },
});

const setPrice = createRoute({
  method: 'put',
  path: '/v1/admin/prices/{service}/{country}',
  tags: ['admin'],
  summary: 'Set the price of a verification (admin)',
  security,
  middleware: [adminOnly] as const,
  request: {
    params: z.object({
      service: z.string().regex(/^[a-z0-9_-]{1,40}$/, 'must be a lowercase service name'),
      country: z.string().regex(/^[A-Z]{2}$/, 'must be a two-letter upper-case country code'),
    }),
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z
            .object({
              price: z
                .number()
                .int('must be whole credits')
                .min(1, 'must be at least 1')
                .max(1_000_000),
              reason: plainText({ min: 3, max: 500, what: 'a reason' }).optional(),
            })
            .strict(),
        },
      },
    },
  },
  responses: {
    200: { content: { 'application/json': { schema: PriceSchema } }, description: 'Saved' },
    400: errorResponse('Invalid price'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
  },
});

export function priceRoutes({ db }: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  /** The whole table, sorted. */
  app.openapi(listPrices, async (c) => {
    const rows = await db.sql<{ service: string; country: string; price: string }[]>`
      select service, country, price from prices order by service, country`;
    return c.json({ items: rows.map((r) => ({ ...r, price: Number(r.price) })) }, 200);
  });

  /** Creates or changes one price; the change is in the audit log. */
  app.openapi(setPrice, async (c) => {
    const principal = c.get('auth');
    const { service, country } = c.req.valid('param');
    const { price, reason } = c.req.valid('json');
    await db.sql.begin(async (tx) => {
      const [before] = await tx<{ price: string }[]>`
        select price from prices where service = ${service} and country = ${country} for update`;
      await tx`
        insert into prices (service, country, price) values (${service}, ${country}, ${price})
        on conflict (service, country) do update set price = excluded.price, updated_at = now()`;
      await tx`
        insert into audit_log (idempotency_key, actor, action, target_type, target_id, reason, details)
        values (${`price:${service}:${country}:${randomUUID()}`}, ${principal.sub}, 'set_price',
                'price', ${`${service}/${country}`}, ${reason ?? null},
                ${JSON.stringify({ from: before ? Number(before.price) : null, to: price })}::jsonb)`;
    });
    return c.json({ service, country, price }, 200);
  });

  return app;
}
