// Admin credit grants: create one (paid or promotional, future-dated, expiring), read it, list a
// customer's, void what is left. Each grant's life is the `grant-<id>` workflow.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import {
  WorkflowFailedError,
  type Client,
  type WorkflowExecutionDescription,
} from '@temporalio/client';
import { createHash } from 'node:crypto';
import type { Database } from '../../db/client.js';
import {
  grantById,
  grantHistory,
  grantsOfCustomer,
  type GrantHistoryItem,
  type GrantRecord,
} from '../../credits/grants-read.js';
import { DEFAULT_GRANT_PRIORITY, MAX_GRANT_PRIORITY } from '../../ledger/grants.js';
import { MAX_POSTING_AMOUNT } from '../../ledger/ledger.js';
import { searchAttributes, voidGrantSignal, workflowIds } from '../../shared.js';
import type { GrantWorkflowInput, GrantWorkflowResult, grant } from '../../workflows/grant.js';
import { MAX_ADJUSTMENT } from '../adjustments/routes.js';
import { adminOnly, type AuthEnv } from '../auth.js';
import {
  UUID_PATTERN,
  balanceSchema,
  customerIdSchema,
  temporalUiLink,
  temporalUiUrlSchema,
  errorResponse,
  plainText,
  security,
  type AppDeps,
} from '../common.js';
import { ApiError, validationHook } from '../errors.js';
import { describeWorkflow, startOrFindFlow, withStartDeadline } from '../workflow-state.js';

/** The largest single grant an admin can make, in credits (the adjustment limit). */
export const MAX_GRANT_CREDITS = Math.min(MAX_ADJUSTMENT, MAX_POSTING_AMOUNT);

/**
 * An ISO 8601 instant with a four-digit year (PostgreSQL cannot store JavaScript's larger ones);
 * without a zone it is read as UTC.
 */
const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$/;
const instant = z
  .string()
  .max(40, 'must be an ISO 8601 instant such as 2026-12-31T00:00:00Z')
  .refine((v) => ISO_INSTANT.test(v) && !Number.isNaN(Date.parse(v)), {
    message: 'must be an ISO 8601 instant such as 2026-12-31T00:00:00Z',
  })
  .openapi({ example: '2026-12-31T00:00:00Z' });

const reason = plainText({ min: 3, max: 500, what: 'a reason' });

const CreateGrantSchema = z
  .object({
    customerId: customerIdSchema,
    credits: z
      .number({ error: 'must be a positive integer number of credits' })
      .int('must be a positive integer number of credits')
      .positive('must be a positive integer number of credits')
      .max(MAX_GRANT_CREDITS, `must be at most ${MAX_GRANT_CREDITS}`)
      .openapi({ example: 500 }),
    category: z.enum(['paid', 'promotional'], { error: 'must be paid or promotional' }),
    effectiveAt: instant
      .nullish()
      .openapi({ description: 'Not spendable before this instant (default: now)' }),
    expiresAt: instant
      .nullish()
      .openapi({ description: 'What is left then goes to breakage (default: never)' }),
    priority: z
      .number({ error: `must be an integer 0..${MAX_GRANT_PRIORITY}` })
      .int(`must be an integer 0..${MAX_GRANT_PRIORITY}`)
      .min(0, `must be an integer 0..${MAX_GRANT_PRIORITY}`)
      .max(MAX_GRANT_PRIORITY, `must be an integer 0..${MAX_GRANT_PRIORITY}`)
      .optional()
      .openapi({ description: `Lower is spent first (default ${DEFAULT_GRANT_PRIORITY})` }),
    reason,
  })
  .strict()
  .openapi('CreateGrant');

const VoidGrantSchema = z.object({ reason }).strict().openapi('VoidGrant');

const IdempotencyHeader = z.object({
  'idempotency-key': plainText({
    max: 255,
    missing: 'the Idempotency-Key header is required',
  }).openapi({
    example: 'promo-black-friday-2026-0001',
    description: 'Client-chosen key; a retry with the same key and body returns the same grant',
  }),
});

const GrantStatusSchema = z.enum(['pending', 'open', 'expired', 'voided', 'rejected']);

const GrantSchema = z
  .object({
    id: z.string(),
    workflowId: z.string(),
    customerId: z.string(),
    status: GrantStatusSchema.openapi({
      description: 'pending: not posted yet; rejected: the ledger refused it (see error)',
    }),
    credits: balanceSchema,
    remaining: balanceSchema.nullable(),
    category: z.enum(['paid', 'promotional']),
    source: z.string(),
    priority: z.number().int(),
    effectiveAt: z.string().nullable(),
    expiresAt: z.string().nullable(),
    reason: z.string().nullable(),
    entryId: z.number().int().nullable(),
    createdAt: z.string(),
    closedAt: z.string().nullable(),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    temporalUiUrl: temporalUiUrlSchema,
  })
  .openapi('Grant');

const GrantDetailSchema = GrantSchema.extend({
  history: z.array(
    z.object({
      entryId: z.number().int().nullable(),
      entryType: z.string().nullable(),
      kind: z.string(),
      amount: balanceSchema,
      createdAt: z.string(),
    }),
  ),
}).openapi('GrantDetail');

const grantIdParam = z.object({
  id: z
    .string()
    .regex(UUID_PATTERN, 'not a grant id (a UUID)')
    .transform((v) => v.toLowerCase())
    .openapi({ example: '0b6f3c1e-5d2a-5f4b-8c7d-9e0f1a2b3c4d' }),
});

const createGrant = createRoute({
  method: 'post',
  path: '/v1/admin/grants',
  tags: ['admin'],
  summary: 'Grant paid or promotional credits, optionally future-dated and expiring (admin)',
  security,
  middleware: [adminOnly] as const,
  request: {
    headers: IdempotencyHeader,
    body: { required: true, content: { 'application/json': { schema: CreateGrantSchema } } },
  },
  responses: {
    202: {
      content: { 'application/json': { schema: GrantSchema } },
      description: 'Accepted (or the existing grant for this key); Location names it',
    },
    400: errorResponse('Invalid body or dates, or missing Idempotency-Key'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
    404: errorResponse('No such customer'),
    409: errorResponse('Idempotency-Key reused with a different body'),
  },
});

const getGrant = createRoute({
  method: 'get',
  path: '/v1/admin/grants/{id}',
  tags: ['admin'],
  summary: 'A grant: credits, remaining, dates, status and its history (admin)',
  security,
  middleware: [adminOnly] as const,
  request: { params: grantIdParam },
  responses: {
    200: { content: { 'application/json': { schema: GrantDetailSchema } }, description: 'Grant' },
    400: errorResponse('Not a grant id'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
    404: errorResponse('No such grant'),
  },
});

const listGrants = createRoute({
  method: 'get',
  path: '/v1/admin/grants',
  tags: ['admin'],
  summary: "A customer's grants, newest first (admin)",
  security,
  middleware: [adminOnly] as const,
  request: {
    query: z.object({
      customerId: customerIdSchema,
      status: z.enum(['open', 'expired', 'voided']).optional(),
      limit: z.coerce.number().int().min(1).max(200).default(50),
    }),
  },
  responses: {
    200: {
      content: { 'application/json': { schema: z.object({ items: z.array(GrantSchema) }) } },
      description: 'Grants',
    },
    400: errorResponse('Bad filter'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
  },
});

const voidGrant = createRoute({
  method: 'post',
  path: '/v1/admin/grants/{id}/void',
  tags: ['admin'],
  summary: 'Remove what is left of a grant (to breakage), with a reason (admin)',
  security,
  middleware: [adminOnly] as const,
  request: {
    params: grantIdParam,
    body: { required: true, content: { 'application/json': { schema: VoidGrantSchema } } },
  },
  responses: {
    200: {
      content: { 'application/json': { schema: GrantSchema } },
      description: 'Already voided: the grant as the void left it',
    },
    202: {
      content: { 'application/json': { schema: GrantSchema } },
      description: 'Void requested; GET the grant until its status is voided',
    },
    400: errorResponse('Invalid body or grant id'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
    404: errorResponse('No such grant'),
    409: errorResponse('The grant expired already: nothing is left to void'),
  },
});

type GrantView = z.infer<typeof GrantSchema>;
type CreateGrantBody = z.infer<typeof CreateGrantSchema>;

/**
 * Grant ids are derived from the Idempotency-Key (a name-based, version-5-shaped UUID), so a
 * retried POST names the same grant and workflow before anything is stored.
 */
export function grantIdFor(idempotencyKey: string): string {
  const bytes = createHash('sha256').update(`creditflow-grant\n${idempotencyKey}`).digest();
  bytes[6] = (bytes[6]! & 0x0f) | 0x50;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const isoOrNull = (value: string | null | undefined) =>
  value ? new Date(value).toISOString() : null;

/** What "the same body" means for a repeated key: the grant it asks for, defaults applied. */
export function grantRequestHash(body: CreateGrantBody): string {
  const canonical = JSON.stringify([
    body.customerId,
    body.credits,
    body.category,
    isoOrNull(body.effectiveAt),
    isoOrNull(body.expiresAt),
    body.priority ?? DEFAULT_GRANT_PRIORITY,
    body.reason,
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}

/** Dates the schema cannot judge alone: refused before anything is written. */
function checkDates(body: CreateGrantBody, now: Date): void {
  const effective = body.effectiveAt ? new Date(body.effectiveAt) : null;
  const expires = body.expiresAt ? new Date(body.expiresAt) : null;
  if (expires && expires.getTime() <= now.getTime()) {
    throw new ApiError(400, 'invalid_grant', 'expiresAt: must be in the future.');
  }
  if (expires && effective && expires.getTime() <= effective.getTime()) {
    throw new ApiError(400, 'invalid_grant', 'expiresAt: must be later than effectiveAt.');
  }
}

function viewOfRecord(record: GrantRecord): GrantView {
  return {
    id: record.id,
    workflowId: workflowIds.grant(record.id),
    customerId: record.customerId,
    status: record.status,
    credits: record.credits,
    remaining: record.remaining,
    category: record.category as GrantView['category'],
    source: record.source,
    priority: record.priority,
    effectiveAt: record.effectiveAt,
    expiresAt: record.expiresAt,
    reason: record.reason,
    entryId: record.entryId,
    createdAt: record.createdAt,
    closedAt: record.closedAt,
    error: null,
  };
}

/** A grant not posted (yet): what its workflow was started with, and how it ended if it did. */
interface UnpostedGrant {
  view: GrantView;
  requestHash: string | null;
  running: boolean;
}

async function unpostedGrant(
  temporal: Client,
  id: string,
  description: WorkflowExecutionDescription,
): Promise<UnpostedGrant | undefined> {
  const input = description.memo?.['input'] as GrantWorkflowInput | undefined;
  const create = input?.create;
  if (!input || !create) return undefined;
  const running = description.status.name === 'RUNNING';
  let error: GrantView['error'] = null;
  if (!running) {
    try {
      const result = (await temporal.workflow
        .getHandle(description.workflowId, description.runId)
        .result()) as GrantWorkflowResult;
      error = result.error ?? { code: 'rejected', message: 'the grant was not posted' };
    } catch (err) {
      const message = err instanceof WorkflowFailedError ? err.message : String(err);
      error = { code: 'workflow_failed', message };
    }
  }
  return {
    running,
    requestHash: create.requestHash ?? null,
    view: {
      id,
      workflowId: description.workflowId,
      customerId: input.customerId,
      status: running ? 'pending' : 'rejected',
      credits: create.credits,
      remaining: null,
      category: create.category,
      source: create.source,
      priority: create.priority ?? DEFAULT_GRANT_PRIORITY,
      effectiveAt: create.effectiveAt ?? null,
      expiresAt: input.expiresAt ?? null,
      reason: create.reason,
      entryId: null,
      createdAt: description.startTime.toISOString(),
      closedAt: description.closeTime?.toISOString() ?? null,
      error,
    },
  };
}

type FoundGrant =
  { posted: true; record: GrantRecord; view: GrantView } | ({ posted: false } & UnpostedGrant);

/**
 * The grant row once the grant is posted (the ledger is the truth for as long as it lives, which
 * may be months of a waiting workflow); before that, what the creating workflow says.
 */
async function findGrant(
  temporal: Client,
  db: Database,
  id: string,
): Promise<FoundGrant | undefined> {
  const record = await grantById(db.sql, id);
  if (record) return { posted: true, record, view: viewOfRecord(record) };
  const description = await describeWorkflow(temporal.workflow.getHandle(workflowIds.grant(id)));
  if (!description) return undefined;
  const unposted = await unpostedGrant(temporal, id, description);
  if (unposted) return { posted: false, ...unposted };
  // The run that posted it may have closed between the two reads.
  const late = await grantById(db.sql, id);
  return late ? { posted: true, record: late, view: viewOfRecord(late) } : undefined;
}

export function grantRoutes(deps: AppDeps) {
  const { db, temporal, taskQueue, logger, temporalStartTimeoutMs } = deps;
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });
  const linked = (view: GrantView) => ({ ...view, ...temporalUiLink(deps, view.workflowId) });

  const same = (found: FoundGrant, hash: string) =>
    (found.posted ? found.record.requestHash : found.requestHash) === hash;
  const conflict = () =>
    new ApiError(
      409,
      'idempotency_conflict',
      'This Idempotency-Key was already used for a different grant; use a new key.',
    );

  /** Starts (or finds, for a repeated Idempotency-Key) the grant's workflow, which posts it. */
  app.openapi(createGrant, async (c) => {
    const principal = c.get('auth');
    const body = c.req.valid('json');
    const key = c.req.valid('header')['idempotency-key'];
    const id = grantIdFor(key);
    const workflowId = workflowIds.grant(id);
    const hash = grantRequestHash(body);
    const location = `/v1/admin/grants/${id}`;

    // A repeat is answered before the dates are judged: "in the future" was true the first time.
    const existing = await findGrant(temporal, db, id);
    if (existing) {
      if (!same(existing, hash)) throw conflict();
      c.header('Location', location);
      return c.json(linked(existing.view), 202);
    }

    const now = new Date();
    checkDates(body, now);
    const [customer] = await db.sql<{ id: string }[]>`
      select id from customers where id = ${body.customerId}`;
    if (!customer) {
      throw new ApiError(404, 'customer_not_found', `No customer with id ${body.customerId}.`);
    }
    const input: GrantWorkflowInput = {
      grantId: id,
      customerId: body.customerId,
      create: {
        credits: body.credits,
        category: body.category,
        source: body.category === 'promotional' ? 'promotion' : 'adjustment',
        // Effective from the request, not from whenever the worker posts it.
        effectiveAt: isoOrNull(body.effectiveAt) ?? now.toISOString(),
        priority: body.priority ?? DEFAULT_GRANT_PRIORITY,
        reason: body.reason,
        requestedBy: principal.sub,
        requestHash: hash,
      },
      expiresAt: isoOrNull(body.expiresAt),
    };
    await startOrFindFlow<typeof grant>(temporal, {
      workflowType: 'grant',
      workflowId,
      taskQueue,
      input,
      customerId: body.customerId,
      initialStatus: 'pending',
      startTimeoutMs: temporalStartTimeoutMs,
    });
    // A concurrent request with the same key and another body may have started it first.
    const found = await findGrant(temporal, db, id);
    if (!found) throw new Error(`grant ${id} has neither a workflow nor a row`);
    if (!same(found, hash)) throw conflict();
    logger.info(
      { grantId: id, workflowId, customerId: body.customerId, credits: body.credits },
      'grant accepted',
    );
    c.header('Location', location);
    return c.json(linked(found.view), 202);
  });

  /** Reads a grant with its history (every share it gave, got back, lost to expiry or void). */
  app.openapi(getGrant, async (c) => {
    const { id } = c.req.valid('param');
    const found = await findGrant(temporal, db, id);
    if (!found) throw new ApiError(404, 'grant_not_found', `No grant with id ${id}.`);
    const history: GrantHistoryItem[] = found.posted ? await grantHistory(db.sql, id) : [];
    return c.json({ ...linked(found.view), history }, 200);
  });

  /** Lists a customer's grants. */
  app.openapi(listGrants, async (c) => {
    const q = c.req.valid('query');
    const records = await grantsOfCustomer(db.sql, q.customerId, {
      status: q.status,
      limit: q.limit,
    });
    return c.json({ items: records.map((record) => linked(viewOfRecord(record))) }, 200);
  });

  /**
   * Voids a grant through its workflow (signal-with-start: the run waiting for its expiry takes
   * the signal; if none runs, a fresh run starts and voids). A repeat answers the voided grant.
   */
  app.openapi(voidGrant, async (c) => {
    const principal = c.get('auth');
    const { id } = c.req.valid('param');
    const { reason: why } = c.req.valid('json');
    const request = { reason: why, requestedBy: principal.sub };
    const workflowId = workflowIds.grant(id);
    const found = await findGrant(temporal, db, id);
    if (!found) throw new ApiError(404, 'grant_not_found', `No grant with id ${id}.`);
    if (!found.posted) {
      if (!found.running) throw new ApiError(404, 'grant_not_found', `No grant with id ${id}.`);
      // Still being posted: its run voids it right after.
      await temporal.workflow.getHandle(workflowId).signal(voidGrantSignal, request);
      return c.json(linked(found.view), 202);
    }
    const { record } = found;
    if (record.status === 'voided') return c.json(linked(found.view), 200);
    if (record.status === 'expired') {
      throw new ApiError(
        409,
        'grant_closed',
        `Grant ${id} expired at ${record.closedAt}; nothing is left to void.`,
      );
    }
    const input: GrantWorkflowInput = {
      grantId: id,
      customerId: record.customerId,
      expiresAt: record.expiresAt,
    };
    await withStartDeadline(temporal, temporalStartTimeoutMs, () =>
      temporal.workflow.signalWithStart<typeof grant, [typeof request]>('grant', {
        workflowId,
        taskQueue,
        args: [input],
        memo: { input },
        signal: voidGrantSignal,
        signalArgs: [request],
        typedSearchAttributes: [
          { key: searchAttributes.customerId, value: record.customerId },
          { key: searchAttributes.flowStatus, value: 'open' },
        ],
      }),
    );
    logger.info({ grantId: id, workflowId, customerId: record.customerId }, 'grant void requested');
    return c.json(linked(found.view), 202);
  });

  return app;
}
