// Admin credit adjustments: start the adjustment workflow and read its state.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { type Client, type WorkflowExecutionDescription } from '@temporalio/client';
import { createHash } from 'node:crypto';
import { toDate, type Database } from '../../db/client.js';
import { GRANT_CATEGORIES } from '../../ledger/grants.js';
import { MAX_POSTING_AMOUNT, jsonBalance } from '../../ledger/ledger.js';
import {
  adjustmentStateQuery,
  searchAttributes,
  workflowIds,
  type AdjustmentInput,
  type AdjustmentState,
  type AdjustmentStatus,
} from '../../shared.js';
import type { adjustment } from '../../workflows/adjustment.js';
import { adminOnly, type AuthEnv } from '../auth.js';
import {
  customerIdSchema,
  plainText,
  errorResponse,
  security,
  type AppDeps,
  StartedSchema,
  temporalUiLink,
  temporalUiUrlSchema,
  balanceSchema,
} from '../common.js';
import { ApiError, validationHook } from '../errors.js';
import { readFlowState, startOrFindFlow } from '../workflow-state.js';

/** The largest single adjustment an admin can make, in credits. */
export const MAX_ADJUSTMENT = 1_000_000_000;

const CreateAdjustmentSchema = z
  .object({
    customerId: customerIdSchema,
    amount: z
      .number({ error: 'must be an integer number of credits' })
      .int('must be an integer number of credits')
      .refine((v) => v !== 0, { message: 'must not be zero: positive credits, negative debits' })
      .refine((v) => Math.abs(v) <= Math.min(MAX_ADJUSTMENT, MAX_POSTING_AMOUNT), {
        message: `must be between -${MAX_ADJUSTMENT} and ${MAX_ADJUSTMENT}`,
      })
      .openapi({ example: 500 }),
    reason: plainText({ min: 3, max: 500, what: 'a reason' }),
    category: z
      .enum(GRANT_CATEGORIES, { error: 'must be "paid" or "promotional"' })
      .optional()
      .openapi({
        example: 'promotional',
        description:
          'Category of the grant a credit creates (default paid): promotional credits are spent before paid ones. A debit ignores it.',
      }),
  })
  .strict()
  .openapi('CreateAdjustment');

const IdempotencyHeader = z.object({
  'idempotency-key': plainText({
    max: 255,
    missing: 'the Idempotency-Key header is required',
  }).openapi({
    example: 'goodwill-2026-11-25-0001',
    description: 'Client-chosen key; a retry with the same key returns the same adjustment',
  }),
});

const AdjustmentSchema = z
  .object({
    id: z.string(),
    workflowId: z.string(),
    customerId: z.string(),
    amount: z.number().int(),
    reason: z.string(),
    requestedBy: z.string(),
    category: z.enum(GRANT_CATEGORIES).optional().openapi({
      description: 'Category of the grant a credit created (paid unless asked otherwise)',
    }),
    status: z.enum(['pending', 'completed', 'rejected']),
    entryId: z.number().int().nullable(),
    balanceAfter: balanceSchema.nullable(),
    temporalUiUrl: temporalUiUrlSchema,
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('Adjustment');

const createAdjustment = createRoute({
  method: 'post',
  path: '/v1/admin/adjustments',
  tags: ['admin'],
  summary: 'Credit (positive) or debit (negative) a wallet, with a reason (admin)',
  security,
  middleware: [adminOnly] as const,
  request: {
    headers: IdempotencyHeader,
    body: { required: true, content: { 'application/json': { schema: CreateAdjustmentSchema } } },
  },
  responses: {
    202: {
      content: { 'application/json': { schema: StartedSchema } },
      description: 'Started (or the existing one for this key)',
    },
    400: errorResponse('Invalid body or missing Idempotency-Key'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
    404: errorResponse('No such customer'),
    409: errorResponse('Idempotency-Key reused with a different body'),
  },
});

const getAdjustment = createRoute({
  method: 'get',
  path: '/v1/admin/adjustments/{id}',
  tags: ['admin'],
  summary: 'State of an adjustment (admin)',
  security,
  middleware: [adminOnly] as const,
  request: {
    params: z.object({ id: z.string().regex(/^adj_[A-Za-z0-9]{1,64}$/, 'not an adjustment id') }),
  },
  responses: {
    200: { content: { 'application/json': { schema: AdjustmentSchema } }, description: 'State' },
    401: errorResponse('No or bad token'),
    400: errorResponse('Not an adjustment id'),
    403: errorResponse('Not an admin'),
    404: errorResponse('No such adjustment'),
  },
});

/** Adjustment ids are derived from the Idempotency-Key, so a retried POST names the same one. */
export function adjustmentIdFor(idempotencyKey: string): string {
  return `adj_${createHash('sha256').update(idempotencyKey).digest('hex').slice(0, 32)}`;
}

/** Builds the state a workflow describes about itself (start memo + FlowStatus), no worker needed. */
function stateFromDescription(
  description: WorkflowExecutionDescription,
): AdjustmentState | undefined {
  const input = description.memo?.input as AdjustmentInput | undefined;
  if (!input) return undefined;
  const status = (description.typedSearchAttributes.get(searchAttributes.flowStatus) ??
    'pending') as AdjustmentStatus;
  const at = (description.closeTime ?? description.startTime).toISOString();
  return {
    ...input,
    id: input.adjustmentId,
    workflowId: description.workflowId,
    status,
    entryId: null,
    balanceAfter: null,
    error: null,
    createdAt: description.startTime.toISOString(),
    updatedAt: at,
  };
}

/**
 * Live state from the workflow query while it runs (`live`), the database once it has closed.
 * Without `live`, or when no worker answers the query in time, the workflow's own description.
 */
export async function readAdjustment(
  temporal: Client,
  db: Database,
  id: string,
  options: { live: boolean },
): Promise<AdjustmentState | undefined> {
  return readFlowState(
    temporal,
    {
      workflowId: workflowIds.adjustment(id),
      query: adjustmentStateQuery,
      fromRecord: () => adjustmentRecord(db, id),
      fromDescription: stateFromDescription,
    },
    options,
  );
}

async function adjustmentRecord(db: Database, id: string): Promise<AdjustmentState | undefined> {
  const [row] = await db.sql<
    {
      id: string;
      workflow_id: string;
      customer_id: string;
      amount: string;
      reason: string;
      requested_by: string;
      status: AdjustmentState['status'];
      entry_id: string | null;
      balance_after: string | null;
      error_code: string | null;
      error_message: string | null;
      created_at: Date | string;
      updated_at: Date | string;
      category: 'paid' | 'promotional' | null;
    }[]
  >`select a.*, (select g.category from grants g where g.entry_id = a.entry_id limit 1) as category
    from adjustments a where a.id = ${id}`;
  if (!row) return undefined;
  return {
    id: row.id,
    workflowId: row.workflow_id,
    customerId: row.customer_id,
    amount: Number(row.amount),
    reason: row.reason,
    requestedBy: row.requested_by,
    ...(row.category ? { category: row.category } : {}),
    status: row.status,
    entryId: row.entry_id === null ? null : Number(row.entry_id),
    balanceAfter: row.balance_after === null ? null : jsonBalance(row.balance_after),
    error: row.error_code ? { code: row.error_code, message: row.error_message ?? '' } : null,
    createdAt: toDate(row.created_at).toISOString(),
    updatedAt: toDate(row.updated_at).toISOString(),
  };
}

export function adjustmentRoutes(deps: AppDeps) {
  const { db, temporal, taskQueue, logger, temporalStartTimeoutMs } = deps;
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  /** Starts (or finds, for a repeated Idempotency-Key) the adjustment workflow. */
  app.openapi(createAdjustment, async (c) => {
    const principal = c.get('auth');
    const body = c.req.valid('json');
    const key = c.req.valid('header')['idempotency-key'];

    const [customer] = await db.sql<{ id: string }[]>`
      select id from customers where id = ${body.customerId}`;
    if (!customer) {
      throw new ApiError(404, 'customer_not_found', `No customer with id ${body.customerId}.`);
    }

    const id = adjustmentIdFor(key);
    const workflowId = workflowIds.adjustment(id);
    const input: AdjustmentInput = {
      adjustmentId: id,
      customerId: body.customerId,
      amount: body.amount,
      reason: body.reason,
      requestedBy: principal.sub,
      ...(body.amount > 0 ? { category: body.category ?? 'paid' } : {}),
    };
    await startOrFindFlow<typeof adjustment>(temporal, {
      workflowType: 'adjustment',
      workflowId,
      taskQueue,
      input,
      customerId: body.customerId,
      initialStatus: 'pending',
      startTimeoutMs: temporalStartTimeoutMs,
    });

    const state = await readAdjustment(temporal, db, id, { live: false });
    if (!state) {
      throw new Error(`adjustment ${id} has neither a workflow state nor a record`);
    }
    if (
      state.customerId !== input.customerId ||
      state.amount !== input.amount ||
      state.reason !== input.reason ||
      (state.amount > 0 && (state.category ?? 'paid') !== (input.category ?? 'paid'))
    ) {
      throw new ApiError(
        409,
        'idempotency_conflict',
        'This Idempotency-Key was already used for a different adjustment; use a new key.',
      );
    }
    logger.info(
      { adjustmentId: id, workflowId, customerId: input.customerId, amount: input.amount },
      'adjustment accepted',
    );
    return c.json(
      { id, workflowId, status: state.status, ...temporalUiLink(deps, workflowId) },
      202,
    );
  });

  /** Reads an adjustment's state. */
  app.openapi(getAdjustment, async (c) => {
    const { id } = c.req.valid('param');
    const state = await readAdjustment(temporal, db, id, { live: true });
    if (!state) throw new ApiError(404, 'adjustment_not_found', `No adjustment with id ${id}.`);
    return c.json({ ...state, ...temporalUiLink(deps, state.workflowId) }, 200);
  });

  return app;
}
