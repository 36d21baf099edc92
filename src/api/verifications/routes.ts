// Phone verifications: buy one with credits, follow it, cancel it (which refunds it).
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import {
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  ApplicationFailure,
  type Client,
  type WorkflowExecutionDescription,
} from '@temporalio/client';
import { toDate, type Database } from '../../db/client.js';
import {
  cancelVerificationUpdate,
  debitSettledUpdate,
  searchAttributes,
  verificationStateQuery,
  workflowIds,
  type VerificationInput,
  type VerificationState,
} from '../../shared.js';
import type { verificationPurchase } from '../../workflows/verification.js';
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
import {
  TemporalUnavailableError,
  ensureTemporalAnswers,
  flowStartOperation,
  readFlowState,
} from '../workflow-state.js';
import { isTemporalUnavailable } from '../../readiness/temporal-availability.js';

/** How long POST waits for the debit before answering 202 pending anyway. */
const DEBIT_WAIT_MS = 10_000;
const CANCEL_WAIT_MS = 30_000;
export const DEFAULT_TIMEOUT_SECONDS = 900;

const CreateVerificationSchema = z
  .object({
    service: z
      .string()
      .trim()
      .toLowerCase()
      .regex(/^[a-z0-9_-]{1,40}$/, 'must be a service name such as whatsapp (see GET /v1/prices)'),
    country: z
      .string()
      .trim()
      .toUpperCase()
      .regex(/^[A-Z]{2}$/, 'must be a two-letter country code such as US'),
    timeoutSeconds: z
      .number({ error: 'must be a whole number of seconds' })
      .int('must be a whole number of seconds')
      .min(1, 'must be at least 1 second')
      .max(86_400, 'must be at most 86400 seconds (one day)')
      .default(DEFAULT_TIMEOUT_SECONDS),
  })
  .strict()
  .openapi('CreateVerification');

const VerificationSchema = z
  .object({
    id: z.string(),
    status: z.enum(['pending', 'active', 'completed', 'refunded', 'failed']),
    service: z.string(),
    country: z.string(),
    price: z.number().int(),
    phoneNumber: z.string().optional(),
    code: z.string().optional(),
    refundReason: z.enum(['timeout', 'cancelled', 'provider_failed', 'invalid_code']).optional(),
    error: z.object({ code: z.string(), message: z.string() }).optional(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('Verification');

const idParam = z.object({ id: z.string().regex(/^ver_[0-9a-f]{32}$/, 'not a verification id') });

const createVerification = createRoute({
  method: 'post',
  path: '/v1/verifications',
  tags: ['verifications'],
  summary: 'Buy a phone verification with credits',
  description:
    'Debits the price, rents a number and waits for the code. On timeout, cancel or provider failure the credits come back automatically. Answers once the debit is settled.',
  security,
  middleware: [customerOnly] as const,
  request: {
    headers: idempotencyKeyHeader('verification', 'verify-2026-11-25-0001'),
    body: { required: true, content: { 'application/json': { schema: CreateVerificationSchema } } },
  },
  responses: {
    202: {
      content: { 'application/json': { schema: StartedSchema } },
      description: 'Debited (or being debited)',
    },
    400: errorResponse('Invalid body, or no price for that service and country'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not a customer token'),
    404: errorResponse('The caller is not an active customer'),
    409: errorResponse('Idempotency-Key reused for a different purchase'),
    422: errorResponse('insufficient_credits: nothing was debited'),
  },
});

const getVerification = createRoute({
  method: 'get',
  path: '/v1/verifications/{id}',
  tags: ['verifications'],
  summary: 'State of a verification (owner or admin)',
  security,
  request: { params: idParam },
  responses: {
    200: { content: { 'application/json': { schema: VerificationSchema } }, description: 'State' },
    400: errorResponse('Not a verification id'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Another customer'),
    404: errorResponse('No such verification'),
  },
});

const cancelVerification = createRoute({
  method: 'post',
  path: '/v1/verifications/{id}/cancel',
  tags: ['verifications'],
  summary: 'Cancel a verification that has no code yet; answers once refunded',
  security,
  request: { params: idParam },
  responses: {
    200: {
      content: { 'application/json': { schema: VerificationSchema } },
      description: 'Refunded',
    },
    401: errorResponse('No or bad token'),
    403: errorResponse('Another customer'),
    404: errorResponse('No such verification'),
    409: errorResponse('Already completed or refunded'),
  },
});

/** Ids from an Idempotency-Key are per customer, so two customers' keys never collide. */
export function verificationIdFor(customerId: string, idempotencyKey: string | undefined): string {
  return flowIdFor('ver', customerId, idempotencyKey);
}

/** The API's view: optional fields only when they have a value. */
export function present(state: VerificationState) {
  return {
    id: state.id,
    status: state.status,
    service: state.service,
    country: state.country,
    price: state.price,
    ...(state.phoneNumber ? { phoneNumber: state.phoneNumber } : {}),
    ...(state.code ? { code: state.code } : {}),
    ...(state.refundReason ? { refundReason: state.refundReason } : {}),
    ...(state.error ? { error: state.error } : {}),
    createdAt: state.createdAt,
    updatedAt: state.updatedAt,
  };
}

function fromDescription(description: WorkflowExecutionDescription): VerificationState | undefined {
  const input = description.memo?.input as VerificationInput | undefined;
  if (!input) return undefined;
  const status = (description.typedSearchAttributes.get(searchAttributes.flowStatus) ??
    'pending') as VerificationState['status'];
  return {
    id: input.verificationId,
    workflowId: description.workflowId,
    customerId: input.customerId,
    status,
    service: input.service,
    country: input.country,
    price: input.price,
    timeoutSeconds: input.timeoutSeconds,
    phoneNumber: null,
    code: null,
    refundReason: null,
    error: null,
    createdAt: description.startTime.toISOString(),
    updatedAt: (description.closeTime ?? description.startTime).toISOString(),
  };
}

async function fromDatabase(db: Database, id: string): Promise<VerificationState | undefined> {
  const [row] = await db.sql<
    {
      id: string;
      workflow_id: string;
      customer_id: string;
      status: VerificationState['status'];
      service: string;
      country: string;
      price: string;
      timeout_seconds: number;
      phone_number: string | null;
      code: string | null;
      refund_reason: VerificationState['refundReason'];
      error: string | null;
      created_at: Date | string;
      updated_at: Date | string;
    }[]
  >`select * from verifications where id = ${id}`;
  if (!row) return undefined;
  return {
    id: row.id,
    workflowId: row.workflow_id,
    customerId: row.customer_id,
    status: row.status,
    service: row.service,
    country: row.country,
    price: Number(row.price),
    timeoutSeconds: row.timeout_seconds,
    phoneNumber: row.phone_number,
    code: row.code,
    refundReason: row.refund_reason,
    error: row.error
      ? {
          code: row.error,
          message: row.error === 'insufficient_credits' ? 'Not enough credits.' : row.error,
        }
      : null,
    createdAt: toDate(row.created_at).toISOString(),
    updatedAt: toDate(row.updated_at).toISOString(),
  };
}

/** Live from the workflow while it runs; from the database once it has closed. */
export async function readVerification(
  temporal: Client,
  db: Database,
  id: string,
): Promise<VerificationState | undefined> {
  return readFlowState(temporal, {
    workflowId: workflowIds.verification(id),
    query: verificationStateQuery,
    fromRecord: () => fromDatabase(db, id),
    fromDescription,
  });
}

function updateRefusal(err: unknown): ApplicationFailure | undefined {
  if (err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure)
    return err.cause;
  return undefined;
}

export function verificationRoutes({
  db,
  temporal,
  taskQueue,
  logger,
  temporalStartTimeoutMs,
}: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  /** Starts (or finds) the purchase and answers once the debit is settled. */
  app.openapi(createVerification, async (c) => {
    const principal = c.get('auth');
    const body = c.req.valid('json');
    const key = c.req.valid('header')['idempotency-key'];
    // Before any workflow starts: a token whose customer does not exist must not start a
    // purchase that can never debit anyone.
    const [customer] = await db.sql<{ id: string }[]>`
      select id from customers where id = ${principal.sub} and anonymised_at is null`;
    if (!customer) {
      throw new ApiError(404, 'customer_not_found', 'The caller is not an active customer.');
    }
    const [price] = await db.sql<{ price: string }[]>`
      select price from prices where service = ${body.service} and country = ${body.country}`;
    if (!price) {
      throw new ApiError(
        400,
        'unknown_service',
        `No price for ${body.service} in ${body.country}: see GET /v1/prices for what can be bought.`,
      );
    }
    const id = verificationIdFor(principal.sub, key);
    const workflowId = workflowIds.verification(id);
    const input: VerificationInput = {
      verificationId: id,
      customerId: principal.sub,
      service: body.service,
      country: body.country,
      price: Number(price.price),
      timeoutSeconds: body.timeoutSeconds,
    };
    // The update below waits for the worker, so the short start deadline cannot cover it: ask
    // first whether Temporal answers at all (503 with Retry-After when it does not).
    await ensureTemporalAnswers(temporal, temporalStartTimeoutMs);
    const start = flowStartOperation<typeof verificationPurchase>({
      workflowType: 'verificationPurchase',
      workflowId,
      taskQueue,
      input,
      customerId: principal.sub,
      initialStatus: 'pending',
    });

    let state: VerificationState | undefined;
    try {
      // One call starts the purchase (or finds the running one) and waits for its debit.
      state = await temporal.connection.withDeadline(Date.now() + DEBIT_WAIT_MS, () =>
        temporal.workflow.executeUpdateWithStart(debitSettledUpdate, {
          startWorkflowOperation: start,
        }),
      );
    } catch (err) {
      const refusal = updateRefusal(err);
      if (refusal?.type) {
        throw new ApiError(statusForCode(refusal.type), refusal.type, refusal.message);
      }
      // Closed already (a retried POST), or no worker answered in time: report what is known.
      state = await readVerification(temporal, db, id);
      // Temporal stopped answering between the check and the start: nothing was started.
      if (!state && isTemporalUnavailable(err)) throw new TemporalUnavailableError();
      if (state?.status === 'failed' && state.error) {
        throw new ApiError(statusForCode(state.error.code), state.error.code, state.error.message);
      }
      logger.info({ verificationId: id, err: (err as Error).message }, 'debit not settled yet');
    }
    if (
      state &&
      (state.service !== input.service ||
        state.country !== input.country ||
        state.timeoutSeconds !== input.timeoutSeconds)
    ) {
      throw new ApiError(
        409,
        'idempotency_conflict',
        'This Idempotency-Key was already used for a different verification; use a new key.',
      );
    }
    logger.info(
      { verificationId: id, workflowId, customerId: principal.sub },
      'verification accepted',
    );
    return c.json({ id, workflowId, status: state?.status ?? 'pending' }, 202);
  });

  /** State of one verification. */
  app.openapi(getVerification, async (c) => {
    const { id } = c.req.valid('param');
    const state = await readVerification(temporal, db, id);
    if (!state) throw new ApiError(404, 'verification_not_found', `No verification with id ${id}.`);
    requireOwnerOrAdmin(c.get('auth'), state.customerId);
    return c.json(present(state), 200);
  });

  /** Cancels through a workflow Update, which answers once the refund is booked. */
  app.openapi(cancelVerification, async (c) => {
    const { id } = c.req.valid('param');
    const current = await readVerification(temporal, db, id);
    if (!current)
      throw new ApiError(404, 'verification_not_found', `No verification with id ${id}.`);
    requireOwnerOrAdmin(c.get('auth'), current.customerId);
    const closed = () =>
      new ApiError(
        409,
        'verification_closed',
        current.status === 'completed'
          ? 'This verification already received its code; it cannot be cancelled.'
          : `This verification is already ${current.status}; there is nothing to cancel.`,
      );
    if (['completed', 'refunded', 'failed'].includes(current.status)) throw closed();
    try {
      const state = await temporal.connection.withDeadline(Date.now() + CANCEL_WAIT_MS, () =>
        temporal.workflow.getHandle(current.workflowId).executeUpdate(cancelVerificationUpdate),
      );
      return c.json(present(state), 200);
    } catch (err) {
      const refusal = updateRefusal(err);
      if (refusal?.type)
        throw new ApiError(statusForCode(refusal.type), refusal.type, refusal.message);
      if (err instanceof WorkflowNotFoundError) throw closed();
      throw err;
    }
  });

  return app;
}
