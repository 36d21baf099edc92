// Marketplace orders: start the order workflow for a cart and read its per-item outcome.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { type Client, type WorkflowExecutionDescription } from '@temporalio/client';
import { toDate, type Database } from '../../db/client.js';
import {
  orderStateQuery,
  searchAttributes,
  workflowIds,
  type OrderInput,
  type OrderState,
  type OrderStatus,
  type OrderStep,
} from '../../shared.js';
import type { order } from '../../workflows/order.js';
import { customerOnly, requireOwnerOrAdmin, type AuthEnv } from '../auth.js';
import {
  errorResponse,
  security,
  type AppDeps,
  StartedSchema,
  flowIdFor,
  idempotencyKeyHeader,
} from '../common.js';
import { ApiError, statusForCode, validationHook } from '../errors.js';
import { describeWorkflow, readFlowState, startOrFindFlow } from '../workflow-state.js';
import { itemIdSchema, requireCustomer } from '../items/routes.js';

/** The most items one cart may hold. */
export const MAX_CART_ITEMS = 50;

/**
 * How long POST waits for the order to pass validation, so a refused cart (not enough credits,
 * nothing buyable) is answered directly; past it the caller gets 202 and reads the outcome.
 */
const VALIDATION_WAIT_MS = 3000;
const VALIDATION_POLL_MS = 50;

const CreateOrderSchema = z
  .object({
    itemIds: z
      .array(itemIdSchema, { error: 'must be a list of item ids' })
      .min(1, 'must hold at least one item id')
      .max(MAX_CART_ITEMS, `must hold at most ${MAX_CART_ITEMS} item ids`)
      .refine((ids) => new Set(ids).size === ids.length, {
        message: 'must not list the same item twice',
      }),
  })
  .strict()
  .openapi('CreateOrder');

const IdempotencyHeader = idempotencyKeyHeader('order', 'cart-2026-11-25-0001');

const OrderSchema = z
  .object({
    id: z.string(),
    workflowId: z.string(),
    buyerId: z.string(),
    itemIds: z.array(z.string()),
    status: z.enum(['processing', 'completed', 'partially_completed', 'failed']),
    step: z.enum(['validating', 'charging', 'transferring', 'refunding', 'done']),
    purchased: z.array(z.string()),
    failed: z.array(z.object({ itemId: z.string(), reason: z.string() })),
    charged: z.number().int(),
    refunded: z.number().int(),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('Order');

const createOrder = createRoute({
  method: 'post',
  path: '/v1/orders',
  tags: ['marketplace'],
  summary: 'Buy the items of a cart with credits; each item succeeds or fails on its own',
  security,
  middleware: [customerOnly] as const,
  request: {
    headers: IdempotencyHeader,
    body: { required: true, content: { 'application/json': { schema: CreateOrderSchema } } },
  },
  responses: {
    202: {
      content: { 'application/json': { schema: StartedSchema } },
      description: 'Started (or the existing one for this key)',
    },
    400: errorResponse('Invalid body'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not a customer'),
    404: errorResponse('The buyer is not an active customer'),
    409: errorResponse('Idempotency-Key reused with a different cart'),
    422: errorResponse(
      'Refused before anything was charged: insufficient credits, or no item can be bought',
    ),
  },
});

const getOrder = createRoute({
  method: 'get',
  path: '/v1/orders/{id}',
  tags: ['marketplace'],
  summary: 'State of an order: what was bought, what failed and why, what was charged',
  security,
  request: {
    params: z.object({
      id: z
        .string()
        .min(1)
        .max(100)
        .regex(/^[A-Za-z0-9_-]+$/, 'must be an order id'),
    }),
  },
  responses: {
    200: { content: { 'application/json': { schema: OrderSchema } }, description: 'State' },
    400: errorResponse('Not an order id'),
    401: errorResponse('No or bad token'),
    403: errorResponse("Another customer's order"),
    404: errorResponse('No such order'),
  },
});

/** Order ids come from the buyer's Idempotency-Key, so a retried POST names the same order. */
export function orderIdFor(buyerId: string, idempotencyKey: string | undefined): string {
  return flowIdFor('ord', buyerId, idempotencyKey);
}

/** The state a workflow describes about itself (start memo, step memo, FlowStatus), no worker needed. */
function stateFromDescription(description: WorkflowExecutionDescription): OrderState | undefined {
  const input = description.memo?.input as OrderInput | undefined;
  if (!input) return undefined;
  const status = (description.typedSearchAttributes.get(searchAttributes.flowStatus) ??
    'processing') as OrderStatus;
  const step = (description.memo?.step as OrderStep | undefined) ?? 'validating';
  return {
    id: input.orderId,
    workflowId: description.workflowId,
    buyerId: input.buyerId,
    itemIds: input.itemIds,
    status,
    step: status === 'processing' ? step : 'done',
    purchased: [],
    failed: [],
    charged: 0,
    refunded: 0,
    error: null,
    createdAt: description.startTime.toISOString(),
    updatedAt: (description.closeTime ?? description.startTime).toISOString(),
  };
}

interface OrderRow {
  id: string;
  workflow_id: string;
  buyer_id: string;
  item_ids: string[];
  status: OrderStatus;
  purchased: string[];
  failed: OrderState['failed'];
  charged: string;
  refunded: string;
  error_code: string | null;
  error_message: string | null;
  created_at: Date | string;
  updated_at: Date | string;
}

/** The orders read model, written by the workflow as it finishes. */
async function readRecord(db: Database, id: string): Promise<OrderState | undefined> {
  const [row] = await db.sql<OrderRow[]>`select * from orders where id = ${id}`;
  if (!row) return undefined;
  return {
    id: row.id,
    workflowId: row.workflow_id,
    buyerId: row.buyer_id,
    itemIds: row.item_ids,
    status: row.status,
    step: row.status === 'processing' ? 'validating' : 'done',
    purchased: row.purchased,
    failed: row.failed,
    charged: Number(row.charged),
    refunded: Number(row.refunded),
    error: row.error_code ? { code: row.error_code, message: row.error_message ?? '' } : null,
    createdAt: toDate(row.created_at).toISOString(),
    updatedAt: toDate(row.updated_at).toISOString(),
  };
}

/**
 * Live state from the workflow query while it runs, the orders read model once it has closed,
 * the workflow's own description when neither answers.
 */
export async function readOrder(
  temporal: Client,
  db: Database,
  id: string,
): Promise<OrderState | undefined> {
  return readFlowState(temporal, {
    workflowId: workflowIds.order(id),
    query: orderStateQuery,
    fromRecord: () => readRecord(db, id),
    fromDescription: stateFromDescription,
  });
}

/**
 * Follows the order until it is past validation (money is moving, or it has closed) or the
 * wait is over, whichever comes first.
 * It reads the workflow's description (step memo) rather than querying, so it needs no worker
 * and never races the workflow's own task.
 */
async function readOrderAfterValidation(
  temporal: Client,
  db: Database,
  id: string,
): Promise<OrderState | undefined> {
  const deadline = Date.now() + VALIDATION_WAIT_MS;
  for (;;) {
    const description = await describeWorkflow(temporal.workflow.getHandle(workflowIds.order(id)));
    if (description?.status.name !== 'RUNNING') {
      const record = await readRecord(db, id);
      return record ?? (description ? stateFromDescription(description) : undefined);
    }
    const state = stateFromDescription(description);
    // 'done' while still running: the outcome is being recorded; it is worth the short wait.
    const settling = state?.step === 'validating' || state?.step === 'done';
    if (!settling || Date.now() + VALIDATION_POLL_MS >= deadline) return state;
    await new Promise((resolve) => setTimeout(resolve, VALIDATION_POLL_MS));
  }
}

const sameCart = (a: string[], b: string[]) =>
  a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',');

/** The order routes: start a cart checkout, read its outcome. */
export function orderRoutes({ db, temporal, taskQueue, logger, temporalStartTimeoutMs }: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  /** Starts (or finds, for a repeated Idempotency-Key) the order workflow for a cart. */
  app.openapi(createOrder, async (c) => {
    const buyerId = requireCustomer(c.get('auth'));
    const { itemIds } = c.req.valid('json');
    const key = c.req.valid('header')['idempotency-key'];

    const [buyer] = await db.sql<{ id: string }[]>`
      select id from customers where id = ${buyerId} and anonymised_at is null`;
    if (!buyer) {
      throw new ApiError(404, 'customer_not_found', 'The caller is not an active customer.');
    }

    const id = orderIdFor(buyerId, key);
    const workflowId = workflowIds.order(id);
    const input: OrderInput = { orderId: id, buyerId, itemIds };
    await startOrFindFlow<typeof order>(temporal, {
      workflowType: 'order',
      workflowId,
      taskQueue,
      input,
      customerId: buyerId,
      initialStatus: 'processing',
      startTimeoutMs: temporalStartTimeoutMs,
    });

    const state = await readOrderAfterValidation(temporal, db, id);
    if (!state) throw new Error(`order ${id} has neither a workflow state nor a record`);
    if (!sameCart(state.itemIds, itemIds)) {
      throw new ApiError(
        409,
        'idempotency_conflict',
        'This Idempotency-Key was already used for a different cart; use a new key.',
      );
    }
    logger.info({ orderId: id, workflowId, buyerId, items: itemIds.length }, 'order accepted');
    // Refused before anything moved: say why now rather than make the caller poll for it.
    if (state.status === 'failed' && state.charged === 0 && state.error) {
      throw new ApiError(
        statusForCode(state.error.code),
        state.error.code,
        `${state.error.message} (order ${id})`,
      );
    }
    return c.json({ id, workflowId, status: state.status }, 202);
  });

  /** Reads an order's state: its buyer or an admin. */
  app.openapi(getOrder, async (c) => {
    const { id } = c.req.valid('param');
    const state = await readOrder(temporal, db, id);
    if (!state) throw new ApiError(404, 'order_not_found', `No order with id ${id}.`);
    requireOwnerOrAdmin(c.get('auth'), state.buyerId);
    return c.json(state, 200);
  });

  return app;
}
