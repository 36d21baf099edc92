// Disputes, as the customer and the operator see them: what was disputed, what is held, how it ended.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { toDate } from '../../db/client.js';
import type { AuthEnv } from '../auth.js';
import { customerIdSchema, errorResponse, security, type AppDeps } from '../common.js';
import { ApiError, validationHook } from '../errors.js';

const DISPUTE_STATUSES = ['open', 'won', 'lost'] as const;

/** Stripe dispute ids (`dp_…`, `du_…` for inquiries). */
export const disputeIdSchema = z
  .string()
  .regex(/^(dp|du)_[A-Za-z0-9_]{1,100}$/, 'not a dispute id')
  .openapi({ example: 'dp_1QxExample' });

const DisputeSchema = z
  .object({
    id: z.string(),
    workflowId: z.string(),
    paymentId: z.string(),
    customerId: z.string(),
    /** Disputed money, minor units. */
    amount: z.number().int(),
    currency: z.string(),
    credits: z.number().int().openapi({ description: "The disputed money's share of the credits" }),
    heldCredits: z
      .number()
      .int()
      .openapi({ description: 'Credits moved out of the spendable balance while it is open' }),
    status: z.enum(DISPUTE_STATUSES),
    reason: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
    closedAt: z.string().nullable(),
  })
  .openapi('Dispute');

const listDisputes = createRoute({
  method: 'get',
  path: '/v1/disputes',
  tags: ['disputes'],
  summary: "Disputes, newest first: a customer's own; an admin's all, or one customer's",
  security,
  request: {
    query: z.object({
      customerId: customerIdSchema.optional(),
      status: z.enum(DISPUTE_STATUSES).optional(),
      cursor: disputeIdSchema.optional(),
      limit: z.coerce.number().int().min(1).max(200).default(50),
    }),
  },
  responses: {
    200: {
      content: {
        'application/json': {
          schema: z.object({ items: z.array(DisputeSchema), nextCursor: z.string().nullable() }),
        },
      },
      description: 'A page',
    },
    400: errorResponse('Bad filter, cursor or limit'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Another customer'),
  },
});

const getDispute = createRoute({
  method: 'get',
  path: '/v1/disputes/{id}',
  tags: ['disputes'],
  summary: 'One dispute (its customer or an admin)',
  security,
  request: { params: z.object({ id: disputeIdSchema }) },
  responses: {
    200: { content: { 'application/json': { schema: DisputeSchema } }, description: 'The dispute' },
    400: errorResponse('Not a dispute id'),
    401: errorResponse('No or bad token'),
    404: errorResponse('No such dispute'),
  },
});

interface DisputeRow {
  id: string;
  workflow_id: string;
  payment_id: string;
  customer_id: string;
  amount: string;
  currency: string;
  credits: string;
  held_credits: string;
  status: (typeof DISPUTE_STATUSES)[number];
  reason: string | null;
  created_at: Date | string;
  updated_at: Date | string;
  closed_at: Date | string | null;
}

const view = (r: DisputeRow) => ({
  id: r.id,
  workflowId: r.workflow_id,
  paymentId: r.payment_id,
  customerId: r.customer_id,
  amount: Number(r.amount),
  currency: r.currency,
  credits: Number(r.credits),
  heldCredits: Number(r.held_credits),
  status: r.status,
  reason: r.reason,
  createdAt: toDate(r.created_at).toISOString(),
  updatedAt: toDate(r.updated_at).toISOString(),
  closedAt: r.closed_at === null ? null : toDate(r.closed_at).toISOString(),
});

export function disputeRoutes({ db }: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  /** Lists disputes; a customer sees only their own, an admin may filter by customer and status. */
  app.openapi(listDisputes, async (c) => {
    const principal = c.get('auth');
    const q = c.req.valid('query');
    if (
      principal.role !== 'admin' &&
      q.customerId &&
      q.customerId.toLowerCase() !== principal.sub.toLowerCase()
    ) {
      throw new ApiError(403, 'forbidden', 'You can only see your own disputes.');
    }
    const customerId = principal.role === 'admin' ? q.customerId : principal.sub;
    const rows = await db.sql<DisputeRow[]>`
      select * from disputes
      where true
        ${customerId ? db.sql`and customer_id = ${customerId}` : db.sql``}
        ${q.status ? db.sql`and status = ${q.status}` : db.sql``}
        ${
          q.cursor
            ? db.sql`and (created_at, id) < (select created_at, id from disputes where id = ${q.cursor})`
            : db.sql``
        }
      order by created_at desc, id desc
      limit ${q.limit + 1}`;
    const page = rows.slice(0, q.limit);
    return c.json(
      {
        items: page.map(view),
        nextCursor: rows.length > q.limit ? page[page.length - 1]!.id : null,
      },
      200,
    );
  });

  /** Reads one dispute; another customer's does not exist as far as the caller can tell. */
  app.openapi(getDispute, async (c) => {
    const principal = c.get('auth');
    const { id } = c.req.valid('param');
    const [row] = await db.sql<DisputeRow[]>`select * from disputes where id = ${id}`;
    if (!row || (principal.role !== 'admin' && row.customer_id !== principal.sub.toLowerCase())) {
      throw new ApiError(404, 'dispute_not_found', `No dispute with id ${id}.`);
    }
    return c.json(view(row), 200);
  });

  return app;
}
