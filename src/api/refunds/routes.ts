// Refunds: give a top-up's money back (customers within the refund window, admins always), credit
// back a purchase as goodwill (admins), and read refunds of every kind.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import {
  ApplicationFailure,
  WorkflowUpdateFailedError,
  type Client,
  type WorkflowExecutionDescription,
} from '@temporalio/client';
import { checkPurchaseRefund } from '../../activities/refunds/purchase.js';
import { readRefundablePayment, topupRefundRefusal } from '../../activities/refunds/topup.js';
import { toDate, type Database } from '../../db/client.js';
import {
  refundDecidedUpdate,
  refundStateFromInput,
  refundStateQuery,
  searchAttributes,
  workflowIds,
  type RefundInput,
  type RefundKind,
  type RefundState,
  type RefundStatus,
} from '../../shared.js';
import type { refund } from '../../workflows/refund/index.js';
import type { AuthEnv, Principal } from '../auth.js';
import {
  errorResponse,
  flowIdFor,
  plainText,
  security,
  StartedSchema,
  temporalUiLink,
  temporalUiUrlSchema,
  type AppDeps,
} from '../common.js';
import { ApiError, statusForCode, validationHook } from '../errors.js';
import { itemIdSchema } from '../items/routes.js';
import { describeWorkflow, readFlowState, startOrFindFlow } from '../workflow-state.js';

/** Days a customer may refund a top-up's unused credits, when the app is not told otherwise. */
export const DEFAULT_REFUND_WINDOW_DAYS = 14;
/** How long POST waits for the refund to be accepted (or refused) before answering 202 anyway. */
const DECISION_WAIT_MS = 10_000;
const LIST_LIMIT = 100;

const paymentIdSchema = z.string().regex(/^pay_[A-Za-z0-9]{1,64}$/, 'must be a payment id (pay_…)');
const verificationIdSchema = z
  .string()
  .regex(/^ver_[0-9a-f]{32}$/, 'must be a verification id (ver_…)');
const orderIdSchema = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9_-]+$/, 'must be an order id');

const CreateRefundSchema = z
  .object({
    paymentId: paymentIdSchema.optional(),
    verificationId: verificationIdSchema.optional(),
    orderId: orderIdSchema.optional(),
    itemId: itemIdSchema.optional(),
    credits: z
      .number({ error: 'must be a whole number of credits' })
      .int('must be a whole number of credits')
      .min(1, 'must be at least 1 credit')
      .max(1_000_000_000_000, 'must be at most 1000000000000 credits')
      .optional()
      .openapi({ description: 'Credits to refund; all that can be refunded when absent.' }),
    reason: plainText({ max: 500, what: 'a reason (plain text)', missing: 'a reason is required' }),
  })
  .strict()
  .refine(
    (b) => [b.paymentId, b.verificationId, b.orderId].filter((v) => v !== undefined).length === 1,
    { message: 'name exactly one of paymentId, verificationId or orderId' },
  )
  .refine((b) => b.itemId === undefined || b.orderId !== undefined, {
    message: 'itemId: an item is refunded as part of its order; give orderId too',
    path: ['itemId'],
  })
  .openapi('CreateRefund');

type CreateRefund = z.infer<typeof CreateRefundSchema>;

const RefundSchema = z
  .object({
    id: z.string(),
    workflowId: z.string(),
    kind: z.enum(['topup', 'stripe', 'dispute', 'verification', 'order']),
    status: z.enum(['pending', 'processing', 'refunded', 'rejected', 'failed']),
    credits: z.number().int(),
    amount: z.number().int().openapi({ description: 'Money back, minor units (top-ups)' }),
    currency: z.string().nullable(),
    reason: z.string(),
    paymentId: z.string().optional(),
    verificationId: z.string().optional(),
    orderId: z.string().optional(),
    itemId: z.string().optional(),
    debtCredits: z.number().int().optional(),
    error: z.object({ code: z.string(), message: z.string() }).optional(),
    createdAt: z.string(),
    updatedAt: z.string(),
    temporalUiUrl: temporalUiUrlSchema,
  })
  .openapi('Refund');

const idParam = z.object({
  id: z
    .string()
    .min(1)
    .max(120)
    .regex(/^[A-Za-z0-9_-]+$/, 'not a refund id'),
});

const createRefund = createRoute({
  method: 'post',
  path: '/v1/refunds',
  tags: ['refunds'],
  summary: 'Refund a top-up (money back through Stripe) or, for admins, credit back a purchase',
  description:
    "Customers may refund their own top-up's unused credits within the refund window; admins may refund any top-up, verification or order (item). The money of a partial top-up refund is pro rata, rounded down; the refund that takes the last credits gets exactly what is left. Answers once the refund is accepted or refused.",
  security,
  request: {
    headers: z.object({
      'idempotency-key': plainText({
        max: 255,
        missing: 'the Idempotency-Key header is required',
      }).openapi({
        example: 'refund-2026-11-27-0001',
        description: 'Client-chosen key; a retry with the same key returns the same refund',
      }),
    }),
    body: { required: true, content: { 'application/json': { schema: CreateRefundSchema } } },
  },
  responses: {
    202: {
      content: { 'application/json': { schema: StartedSchema } },
      description: 'Accepted (or the existing refund for this key)',
    },
    400: errorResponse('Invalid body or missing Idempotency-Key'),
    401: errorResponse('No or bad token'),
    403: errorResponse(
      'refund_not_allowed (a customer asking a purchase refund) or refund_window_closed',
    ),
    404: errorResponse('No such payment, verification or order (for this customer)'),
    409: errorResponse('Idempotency-Key reused for a different refund'),
    422: errorResponse(
      'credits_already_spent, nothing_to_refund, refund_exceeds_payment, refund_not_allowed, already_refunded…: nothing was written',
    ),
  },
});

const getRefund = createRoute({
  method: 'get',
  path: '/v1/refunds/{id}',
  tags: ['refunds'],
  summary: 'State of a refund (its customer or an admin)',
  security,
  request: { params: idParam },
  responses: {
    200: { content: { 'application/json': { schema: RefundSchema } }, description: 'State' },
    400: errorResponse('Not a refund id'),
    401: errorResponse('No or bad token'),
    404: errorResponse('No such refund'),
  },
});

const listRefunds = createRoute({
  method: 'get',
  path: '/v1/refunds',
  tags: ['refunds'],
  summary: "Refunds of every kind, newest first: a payment's, or the caller's (admins: all)",
  security,
  request: { query: z.object({ paymentId: paymentIdSchema.optional() }) },
  responses: {
    200: {
      content: { 'application/json': { schema: z.object({ refunds: z.array(RefundSchema) }) } },
      description: 'Refunds (a customer sees only their own)',
    },
    400: errorResponse('Not a payment id'),
    401: errorResponse('No or bad token'),
  },
});

/** Refund ids come from the caller and their Idempotency-Key, so a retried POST names the same refund. */
export function refundIdFor(callerId: string, idempotencyKey: string): string {
  return flowIdFor('rfd', callerId, idempotencyKey);
}

/** The API's view of a refund: optional fields only when they have a value. */
export function present(state: RefundState) {
  return {
    id: state.id,
    workflowId: state.workflowId,
    kind: state.kind,
    status: state.status,
    credits: state.credits,
    amount: state.amount,
    currency: state.currency,
    reason: state.reason,
    ...(state.paymentId ? { paymentId: state.paymentId } : {}),
    ...(state.verificationId ? { verificationId: state.verificationId } : {}),
    ...(state.orderId ? { orderId: state.orderId } : {}),
    ...(state.itemId ? { itemId: state.itemId } : {}),
    ...(state.debtCredits ? { debtCredits: state.debtCredits } : {}),
    ...(state.error ? { error: state.error } : {}),
    createdAt: state.createdAt,
    updatedAt: state.updatedAt,
  };
}

interface RefundRow {
  id: string;
  workflow_id: string;
  kind: RefundKind;
  customer_id: string;
  payment_id: string | null;
  verification_id: string | null;
  order_id: string | null;
  item_id: string | null;
  credits: string;
  amount: string;
  currency: string | null;
  debt_credits: string;
  reason: string;
  status: RefundStatus;
  error_code: string | null;
  error_message: string | null;
  created_at: Date | string;
  updated_at: Date | string;
}

function fromRow(row: RefundRow): RefundState {
  return {
    id: row.id,
    workflowId: row.workflow_id,
    kind: row.kind,
    customerId: row.customer_id,
    paymentId: row.payment_id,
    verificationId: row.verification_id,
    orderId: row.order_id,
    itemId: row.item_id,
    status: row.status,
    credits: Number(row.credits),
    amount: Number(row.amount),
    currency: row.currency,
    debtCredits: Number(row.debt_credits),
    reason: row.reason,
    error: row.error_code ? { code: row.error_code, message: row.error_message ?? '' } : null,
    createdAt: toDate(row.created_at).toISOString(),
    updatedAt: toDate(row.updated_at).toISOString(),
  };
}

/** What the start memo and FlowStatus tell, without a worker. */
function fromDescription(description: WorkflowExecutionDescription): RefundState | undefined {
  const input = description.memo?.input as RefundInput | undefined;
  if (!input) return undefined;
  const status = (description.typedSearchAttributes.get(searchAttributes.flowStatus) ??
    'pending') as RefundStatus;
  return refundStateFromInput(input, {
    workflowId: description.workflowId,
    status,
    createdAt: description.startTime.toISOString(),
    updatedAt: (description.closeTime ?? description.startTime).toISOString(),
  });
}

/** Live from the workflow while it runs; from the refunds table once it has closed. */
export async function readRefund(
  temporal: Client,
  db: Database,
  id: string,
): Promise<RefundState | undefined> {
  return readFlowState(temporal, {
    workflowId: workflowIds.refund(id),
    query: refundStateQuery,
    fromRecord: async () => {
      const [row] = await db.sql<RefundRow[]>`select * from refunds where id = ${id}`;
      return row ? fromRow(row) : undefined;
    },
    fromDescription,
  });
}

/** The same refund asked again. Credits are compared only when the first request is known whole. */
const sameRequest = (input: RefundInput & { creditsUnknown?: boolean }, body: CreateRefund) =>
  (input.paymentId ?? undefined) === body.paymentId &&
  (input.verificationId ?? undefined) === body.verificationId &&
  (input.orderId ?? undefined) === body.orderId &&
  (input.itemId ?? undefined) === body.itemId &&
  (input.creditsUnknown === true || (input.credits ?? undefined) === body.credits) &&
  input.reason === body.reason;

/** The refund workflow's input the first request with this key started, if any. */
async function existingInput(temporal: Client, db: Database, id: string) {
  const description = await describeWorkflow(temporal.workflow.getHandle(workflowIds.refund(id)));
  const input = description?.memo?.input as RefundInput | undefined;
  if (input) return input;
  const [row] = await db.sql<RefundRow[]>`select * from refunds where id = ${id}`;
  if (!row) return undefined;
  const state = fromRow(row);
  return {
    refundId: state.id,
    kind: state.kind,
    customerId: state.customerId,
    paymentId: state.paymentId,
    verificationId: state.verificationId,
    orderId: state.orderId,
    itemId: state.itemId,
    // The row keeps the credits refunded, not the credits asked (absent meant "all").
    creditsUnknown: true,
    reason: state.reason,
  } as RefundInput & { creditsUnknown: boolean };
}

function updateRefusal(err: unknown): ApplicationFailure | undefined {
  if (err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure) {
    return err.cause;
  }
  return undefined;
}

/** The refund routes: request one, read one, list a payment's. */
export function refundRoutes(deps: AppDeps) {
  const { db, temporal, taskQueue, logger, temporalStartTimeoutMs, refundWindowDays } = deps;
  // Operators get the workflow's Temporal UI link; customers never see the internal UI.
  const linkFor = (principal: Principal, workflowId: string) =>
    principal.role === 'admin' ? temporalUiLink(deps, workflowId) : {};
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });
  const windowDays = refundWindowDays ?? DEFAULT_REFUND_WINDOW_DAYS;

  /** Checks a top-up refund as far as it can be checked now; answers the input to start. */
  async function topupInput(
    principal: Principal,
    id: string,
    body: CreateRefund,
  ): Promise<RefundInput> {
    const payment = await readRefundablePayment(db.sql, body.paymentId!);
    // A customer learns nothing about other customers' payments, not even that they exist.
    if (!payment || (principal.role !== 'admin' && payment.customerId !== principal.sub)) {
      throw new ApiError(404, 'payment_not_found', `No payment with id ${body.paymentId}.`);
    }
    if (principal.role !== 'admin') {
      const closesAt = payment.createdAt.getTime() + windowDays * 24 * 60 * 60 * 1000;
      if (Date.now() > closesAt) {
        throw new ApiError(
          403,
          'refund_window_closed',
          `Top-ups can be refunded within ${windowDays} days of the payment; payment ${payment.id} is older. Contact support.`,
        );
      }
    }
    const refused = topupRefundRefusal(payment, payment.customerId, body.credits);
    if (refused) {
      throw new ApiError(
        refused.code === 'payment_not_found' ? 404 : 422,
        refused.code,
        refused.message,
      );
    }
    const left = payment.credits - payment.refundedCredits;
    const asked = body.credits ?? left;
    const [wallet] = await db.sql<{ balance: string }[]>`
      select balance from accounts where kind = 'wallet' and customer_id = ${payment.customerId}`;
    const balance = Number(wallet?.balance ?? 0);
    if (balance < asked) {
      const possible = Math.min(balance, left);
      throw new ApiError(
        422,
        'credits_already_spent',
        `The wallet holds ${balance} credits; refunding ${asked} needs them unspent. ` +
          (possible > 0
            ? `Ask for a partial refund of at most ${possible} credits (credits: ${possible}).`
            : 'Nothing of this top-up can be refunded now.'),
      );
    }
    return {
      refundId: id,
      kind: 'topup',
      customerId: payment.customerId,
      paymentId: payment.id,
      ...(body.credits !== undefined ? { credits: body.credits } : {}),
      reason: body.reason,
      requestedBy:
        principal.role === 'admin' ? `admin:${principal.sub}` : `customer:${principal.sub}`,
      startedBy: 'api',
    };
  }

  /** Purchase refunds are an operator's goodwill: whose purchase it is decides the wallet. */
  async function purchaseInput(
    principal: Principal,
    id: string,
    body: CreateRefund,
  ): Promise<RefundInput> {
    const target = {
      refundId: id,
      verificationId: body.verificationId ?? null,
      orderId: body.orderId ?? null,
      itemId: body.itemId ?? null,
      credits: body.credits ?? null,
    };
    let checked;
    try {
      checked = await checkPurchaseRefund(db, target);
    } catch (err) {
      if (err instanceof ApplicationFailure && err.type) {
        throw new ApiError(err.type.endsWith('_not_found') ? 404 : 422, err.type, err.message);
      }
      throw err;
    }
    return {
      ...target,
      kind: body.verificationId ? 'verification' : 'order',
      customerId: checked.customerId,
      reason: body.reason,
      requestedBy: `admin:${principal.sub}`,
      startedBy: 'api',
    };
  }

  /** Starts (or finds, for a repeated Idempotency-Key) the refund and answers once it is decided. */
  app.openapi(createRefund, async (c) => {
    const principal = c.get('auth');
    const body = c.req.valid('json');
    const key = c.req.valid('header')['idempotency-key'];
    if (principal.role !== 'admin' && !body.paymentId) {
      throw new ApiError(
        403,
        'refund_not_allowed',
        'Customers can refund their own top-ups (paymentId); purchases are refunded by support.',
      );
    }
    const id = refundIdFor(principal.sub, key);
    const workflowId = workflowIds.refund(id);

    // A retried request answers with the refund it started, whatever has happened since.
    const existing = await existingInput(temporal, db, id);
    if (existing && !sameRequest(existing, body)) {
      throw new ApiError(
        409,
        'idempotency_conflict',
        'This Idempotency-Key was already used for a different refund; use a new key.',
      );
    }
    const input =
      existing ??
      (body.paymentId
        ? await topupInput(principal, id, body)
        : await purchaseInput(principal, id, body));
    const handle = await startOrFindFlow<typeof refund>(temporal, {
      workflowType: 'refund',
      workflowId,
      taskQueue,
      input,
      customerId: input.customerId,
      initialStatus: 'pending',
      startTimeoutMs: temporalStartTimeoutMs,
    });

    let state: RefundState | undefined;
    try {
      state = await temporal.connection.withDeadline(Date.now() + DECISION_WAIT_MS, () =>
        handle.executeUpdate(refundDecidedUpdate),
      );
    } catch (err) {
      const refusal = updateRefusal(err);
      if (refusal?.type) {
        throw new ApiError(statusForCode(refusal.type), refusal.type, refusal.message);
      }
      // Closed already (a retried POST), or no worker answered in time: report what is known.
      state = await readRefund(temporal, db, id);
      logger.info({ refundId: id, err: (err as Error).message }, 'refund not decided yet');
    }
    if (state?.status === 'rejected' && state.error) {
      throw new ApiError(statusForCode(state.error.code), state.error.code, state.error.message);
    }
    logger.info(
      { refundId: id, workflowId, kind: input.kind, customerId: input.customerId },
      'refund accepted',
    );
    return c.json(
      { id, workflowId, status: state?.status ?? 'pending', ...linkFor(principal, workflowId) },
      202,
    );
  });

  /** One refund, of any kind: its customer or an admin. */
  app.openapi(getRefund, async (c) => {
    const { id } = c.req.valid('param');
    const principal = c.get('auth');
    const state = await readRefund(temporal, db, id);
    // Someone else's refund is "not found": its existence is nobody else's business.
    if (!state || (principal.role !== 'admin' && state.customerId !== principal.sub)) {
      throw new ApiError(404, 'refund_not_found', `No refund with id ${id}.`);
    }
    return c.json({ ...present(state), ...linkFor(principal, state.workflowId) }, 200);
  });

  /** A payment's refunds (all kinds), or the caller's; customers see only their own. */
  app.openapi(listRefunds, async (c) => {
    const { paymentId } = c.req.valid('query');
    const principal = c.get('auth');
    const owner = principal.role === 'admin' ? null : principal.sub;
    const rows = await db.sql<RefundRow[]>`
      select * from refunds
      where (${paymentId ?? null}::text is null or payment_id = ${paymentId ?? null})
        and (${owner}::uuid is null or customer_id = ${owner}::uuid)
      order by created_at desc, id desc
      limit ${LIST_LIMIT}`;
    return c.json(
      {
        refunds: rows.map((row) => {
          const view = present(fromRow(row));
          return { ...view, ...linkFor(principal, view.workflowId) };
        }),
      },
      200,
    );
  });

  return app;
}
