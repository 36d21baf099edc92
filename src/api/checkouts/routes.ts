// Credit top-ups: start the checkout workflow (which opens a Stripe Checkout Session) and read it.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import {
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
} from '@temporalio/client';
import { readPayment, type PaymentRecord } from '../../activities/checkout.js';
import type { Database } from '../../db/client.js';
import { DEFAULT_CREDIT_PACKS } from '../../payments/packs.js';
import { PAYMENT_STATUSES } from '../../payments/state-machine.js';
import {
  checkoutSessionUpdate,
  checkoutStateQuery,
  searchAttributes,
  workflowIds,
  type CheckoutInput,
  type CheckoutState,
} from '../../shared.js';
import type { checkout } from '../../workflows/checkout.js';
import { customerOnly, type AuthEnv } from '../auth.js';
import {
  errorResponse,
  security,
  type AppDeps,
  flowIdFor,
  plainText,
  idempotencyKeyHeader,
} from '../common.js';
import { ApiError, validationHook } from '../errors.js';
import { ensureTemporalAnswers, readFlowState } from '../workflow-state.js';

/** Stripe's shortest Checkout Session expiry, and our default. */
export const DEFAULT_CHECKOUT_EXPIRY_SECONDS = 30 * 60;

const CreateCheckoutSchema = z
  .object({
    pack: plainText({ max: 32, missing: 'must name a credit pack, e.g. "small"' }).openapi({
      example: 'small',
    }),
    saveCard: z
      .boolean({ error: 'must be true or false' })
      .optional()
      .openapi({ description: 'Keep the card for auto top-up (charged later without you)' }),
  })
  .strict()
  .openapi('CreateCheckout');

const IdempotencyHeader = idempotencyKeyHeader('checkout', 'topup-2026-11-25-0001');

const CheckoutStartedSchema = z
  .object({
    id: z.string(),
    workflowId: z.string(),
    status: z.string(),
    checkoutUrl: z.string().nullable(),
  })
  .openapi('CheckoutStarted');

const CheckoutSchema = z
  .object({
    id: z.string(),
    workflowId: z.string(),
    pack: z.string(),
    credits: z.number().int(),
    amount: z.number().int().openapi({ description: 'Price in minor units of the currency' }),
    currency: z.string(),
    status: z.enum(PAYMENT_STATUSES),
    checkoutUrl: z.string().optional(),
    sessionId: z
      .string()
      .optional()
      .openapi({ description: 'The Stripe Checkout Session id, once the session is open' }),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('Checkout');

const createCheckout = createRoute({
  method: 'post',
  path: '/v1/checkouts',
  tags: ['checkouts'],
  summary: 'Buy a credit pack: returns the Stripe Checkout URL to send the customer to',
  security,
  middleware: [customerOnly] as const,
  request: {
    headers: IdempotencyHeader,
    body: { required: true, content: { 'application/json': { schema: CreateCheckoutSchema } } },
  },
  responses: {
    202: {
      content: { 'application/json': { schema: CheckoutStartedSchema } },
      description: 'Started (or the existing one for this key)',
    },
    400: errorResponse('Invalid body or unknown pack'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not a customer token'),
    404: errorResponse('No such customer'),
    409: errorResponse('Idempotency-Key reused for a different pack'),
  },
});

const getCheckout = createRoute({
  method: 'get',
  path: '/v1/checkouts/{id}',
  tags: ['checkouts'],
  summary: 'State of a checkout (its owner or an admin)',
  security,
  request: {
    params: z.object({ id: z.string().regex(/^pay_[A-Za-z0-9]{1,64}$/, 'not a checkout id') }),
  },
  responses: {
    200: { content: { 'application/json': { schema: CheckoutSchema } }, description: 'State' },
    400: errorResponse('Not a checkout id'),
    401: errorResponse('No or bad token'),
    404: errorResponse('No such checkout'),
  },
});

/** Payment ids come from the customer and their Idempotency-Key, so a retry names the same one. */
export function paymentIdFor(customerId: string, idempotencyKey: string | undefined): string {
  return flowIdFor('pay', customerId, idempotencyKey);
}

function fromPayment(payment: PaymentRecord): CheckoutState {
  return {
    id: payment.id,
    workflowId: payment.workflowId,
    customerId: payment.customerId,
    pack: payment.pack,
    credits: payment.credits,
    amount: payment.amount,
    currency: payment.currency,
    status: payment.status,
    checkoutUrl: payment.checkoutUrl,
    sessionId: payment.sessionId,
    paymentIntentId: payment.paymentIntentId,
    entryId: payment.topupEntryId,
    balanceAfter: null,
    error: null,
    createdAt: payment.createdAt,
    updatedAt: payment.updatedAt,
  };
}

/** Live state from the workflow query while it runs; the payment record otherwise. */
export async function readCheckout(
  temporal: Client,
  db: Database,
  id: string,
): Promise<CheckoutState | undefined> {
  return readFlowState(temporal, {
    workflowId: workflowIds.checkout(id),
    query: checkoutStateQuery,
    fromRecord: async () => {
      const payment = await readPayment(db, id);
      return payment ? fromPayment(payment) : undefined;
    },
  });
}

function view(state: CheckoutState) {
  return {
    id: state.id,
    workflowId: state.workflowId,
    pack: state.pack,
    credits: state.credits,
    amount: state.amount,
    currency: state.currency,
    status: state.status,
    ...(state.checkoutUrl ? { checkoutUrl: state.checkoutUrl } : {}),
    ...(state.sessionId ? { sessionId: state.sessionId } : {}),
    createdAt: state.createdAt,
    updatedAt: state.updatedAt,
  };
}

export function checkoutRoutes({
  db,
  temporal,
  taskQueue,
  logger,
  temporalStartTimeoutMs,
  checkout: options,
}: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });
  const packs = options?.packs ?? DEFAULT_CREDIT_PACKS;
  const expiresInSeconds = options?.expirySeconds ?? DEFAULT_CHECKOUT_EXPIRY_SECONDS;

  /** Starts (or finds, for a repeated Idempotency-Key) a checkout and returns its Stripe URL. */
  app.openapi(createCheckout, async (c) => {
    const principal = c.get('auth');
    const { pack: packName, saveCard } = c.req.valid('json');
    const pack = Object.hasOwn(packs, packName) ? packs[packName] : undefined;
    if (!pack) {
      throw new ApiError(
        400,
        'unknown_pack',
        `pack: no pack "${packName}"; choose one of ${Object.keys(packs).join(', ')}.`,
      );
    }
    const [customer] = await db.sql<{ id: string }[]>`
      select id from customers where id = ${principal.sub} and anonymised_at is null`;
    if (!customer) {
      throw new ApiError(404, 'customer_not_found', `No customer with id ${principal.sub}.`);
    }

    const id = paymentIdFor(principal.sub, c.req.valid('header')['idempotency-key']);
    const workflowId = workflowIds.checkout(id);
    const input: CheckoutInput = {
      paymentId: id,
      customerId: principal.sub,
      pack: packName,
      credits: pack.credits,
      amount: pack.amount,
      currency: pack.currency,
      expiresInSeconds,
      startedBy: 'api',
      ...(saveCard ? { saveCard: true } : {}),
    };
    // The update below waits for the worker, so the short start deadline cannot cover it: ask
    // first whether Temporal answers at all (503 with Retry-After when it does not).
    await ensureTemporalAnswers(temporal, temporalStartTimeoutMs);
    let state: CheckoutState | undefined;
    try {
      const start = new WithStartWorkflowOperation<typeof checkout>('checkout', {
        taskQueue,
        workflowId,
        args: [input],
        memo: { input },
        workflowIdConflictPolicy: 'USE_EXISTING',
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        typedSearchAttributes: [
          { key: searchAttributes.customerId, value: principal.sub },
          { key: searchAttributes.flowStatus, value: 'init' },
        ],
      });
      // The workflow answers once the Stripe session exists: no polling for the URL.
      state = await temporal.workflow.executeUpdateWithStart(checkoutSessionUpdate, {
        startWorkflowOperation: start,
      });
    } catch (err) {
      // A closed workflow with this id: the key was used before; answer with that checkout.
      if (
        !(err instanceof WorkflowExecutionAlreadyStartedError) &&
        !(err instanceof WorkflowUpdateFailedError) &&
        !(err instanceof WorkflowNotFoundError)
      ) {
        throw err;
      }
      state = await readCheckout(temporal, db, id);
    }
    if (!state) throw new Error(`checkout ${id} has neither a workflow state nor a record`);
    if (state.pack !== packName) {
      throw new ApiError(
        409,
        'idempotency_conflict',
        'This Idempotency-Key was already used for a different pack; use a new key.',
      );
    }
    logger.info({ paymentId: id, workflowId, pack: packName }, 'checkout accepted');
    return c.json({ id, workflowId, status: state.status, checkoutUrl: state.checkoutUrl }, 202);
  });

  /** Reads a checkout's state; a customer sees only their own. */
  app.openapi(getCheckout, async (c) => {
    const principal = c.get('auth');
    const { id } = c.req.valid('param');
    const state = await readCheckout(temporal, db, id);
    if (!state) throw new ApiError(404, 'checkout_not_found', `No checkout with id ${id}.`);
    if (principal.role !== 'admin' && principal.sub !== state.customerId) {
      // Other customers' checkouts do not exist, as far as this caller can tell.
      throw new ApiError(404, 'checkout_not_found', `No checkout with id ${id}.`);
    }
    return c.json(view(state), 200);
  });

  return app;
}
