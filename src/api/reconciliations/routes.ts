// Admin reconciliation runs: start one now, list the reports, read one with its findings.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { createHash, randomUUID } from 'node:crypto';
import { toDate, type Database } from '../../db/client.js';
import { windowProblem } from '../../reconciliation/plan.js';
import { workflowIds, type ReconciliationInput } from '../../shared.js';
import type { reconciliation } from '../../workflows/reconciliation.js';
import { adminOnly, type AuthEnv } from '../auth.js';
import {
  errorResponse,
  idempotencyKeyHeader,
  security,
  StartedSchema,
  temporalUiLink,
  temporalUiUrlSchema,
  type AppDeps,
} from '../common.js';
import { ApiError, validationHook } from '../errors.js';
import { withStartDeadline } from '../workflow-state.js';

/** A manual run without a window covers the last day. */
const DEFAULT_MANUAL_WINDOW_MS = 24 * 60 * 60 * 1000;
const MAX_FINDINGS_SHOWN = 1000;

const instant = z
  .string()
  .max(64, 'must be an ISO 8601 instant')
  .openapi({ example: '2026-11-27T00:00:00Z' });

const StartReconciliationSchema = z
  .object({ from: instant.optional(), to: instant.optional() })
  .strict()
  .openapi('StartReconciliation');

const CategorySchema = z.object({
  count: z.number().int(),
  sums: z.record(z.string(), z.number()),
  repaired: z.number().int(),
  flagged: z.number().int(),
});

const RunSchema = z
  .object({
    id: z.string(),
    workflowId: z.string(),
    trigger: z.string(),
    status: z.enum(['running', 'completed', 'failed']),
    window: z.object({ from: z.string(), to: z.string() }),
    matched: z.number().int(),
    findingsCount: z.number().int(),
    summary: z
      .object({ categories: z.record(z.string(), CategorySchema).optional() })
      .passthrough()
      .openapi({ description: 'Counts and sums per finding kind, listings, cut-offs, canary' }),
    error: z.string().nullable(),
    startedAt: z.string(),
    finishedAt: z.string().nullable(),
    temporalUiUrl: temporalUiUrlSchema,
  })
  .openapi('ReconciliationRun');

const FindingSchema = z
  .object({
    key: z.string(),
    kind: z.string(),
    refs: z.record(z.string(), z.unknown()),
    amount: z.number().nullable(),
    currency: z.string().nullable(),
    action: z.enum(['repaired', 'flagged', 'none']),
    outcome: z.string(),
    details: z.record(z.string(), z.unknown()),
    createdAt: z.string(),
  })
  .openapi('ReconciliationFinding');

const RunIdParam = z.object({
  id: z.string().regex(/^[A-Za-z0-9_.:-]{1,200}$/, 'not a reconciliation run id'),
});

const startReconciliation = createRoute({
  method: 'post',
  path: '/v1/admin/reconciliations',
  tags: ['admin'],
  summary: 'Start a reconciliation run now, for a window (admin)',
  description:
    'Compares Stripe, the payments and the ledger for [from, to) (default: the last 24 hours), repairs what is safe and flags the rest. At most 31 days per run.',
  security,
  middleware: [adminOnly] as const,
  request: {
    headers: idempotencyKeyHeader('run', 'reconcile-2026-11-27'),
    body: {
      required: false,
      content: { 'application/json': { schema: StartReconciliationSchema } },
    },
  },
  responses: {
    202: {
      content: { 'application/json': { schema: StartedSchema } },
      description: 'Started (or the run this Idempotency-Key started)',
    },
    400: errorResponse('Bad window: unparseable, from not before to, or too long'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
    409: errorResponse('Idempotency-Key reused for another window'),
  },
});

const listReconciliations = createRoute({
  method: 'get',
  path: '/v1/admin/reconciliations',
  tags: ['admin'],
  summary: 'Reconciliation runs, newest first (admin)',
  security,
  middleware: [adminOnly] as const,
  request: {
    query: z.object({
      limit: z.coerce.number().int().min(1).max(100).default(20),
      cursor: z.string().max(300).optional(),
    }),
  },
  responses: {
    200: {
      content: {
        'application/json': {
          schema: z.object({ items: z.array(RunSchema), nextCursor: z.string().nullable() }),
        },
      },
      description: 'One page of runs',
    },
    400: errorResponse('Bad limit or cursor'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
  },
});

const getReconciliation = createRoute({
  method: 'get',
  path: '/v1/admin/reconciliations/{id}',
  tags: ['admin'],
  summary: 'One reconciliation report with its findings (admin)',
  security,
  middleware: [adminOnly] as const,
  request: { params: RunIdParam },
  responses: {
    200: {
      content: {
        'application/json': {
          schema: RunSchema.extend({
            findings: z.array(FindingSchema),
            findingsTruncated: z.boolean(),
          }),
        },
      },
      description: 'The report',
    },
    400: errorResponse('Not a run id'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
    404: errorResponse('No such run'),
  },
});

/** Run ids from an Idempotency-Key, so a retried POST names the same run. */
export function reconciliationRunIdFor(idempotencyKey: string | undefined): string {
  if (!idempotencyKey) return `rec_${randomUUID().replaceAll('-', '')}`;
  return `rec_${createHash('sha256').update(idempotencyKey).digest('hex').slice(0, 32)}`;
}

interface RunRow {
  id: string;
  workflow_id: string;
  trigger: string;
  status: 'running' | 'completed' | 'failed';
  window_from: Date | string;
  window_to: Date | string;
  summary: Record<string, unknown>;
  matched: number;
  findings_count: number;
  error: string | null;
  started_at: Date | string;
  finished_at: Date | string | null;
}

function runBody(row: RunRow) {
  return {
    id: row.id,
    workflowId: row.workflow_id,
    trigger: row.trigger,
    status: row.status,
    window: {
      from: toDate(row.window_from).toISOString(),
      to: toDate(row.window_to).toISOString(),
    },
    matched: row.matched,
    findingsCount: row.findings_count,
    summary: row.summary,
    error: row.error,
    startedAt: toDate(row.started_at).toISOString(),
    finishedAt: row.finished_at === null ? null : toDate(row.finished_at).toISOString(),
  };
}

function parseInstant(value: string | undefined, name: string): Date | undefined {
  if (value === undefined) return undefined;
  // ISO 8601 with a date and a time zone, so "yesterday" or a bare date is never guessed at.
  const iso = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;
  const date = new Date(value);
  if (!iso.test(value) || Number.isNaN(date.getTime())) {
    throw new ApiError(
      400,
      'invalid_window',
      `${name}: must be an ISO 8601 instant with a time zone, e.g. 2026-11-27T00:00:00Z.`,
    );
  }
  return date;
}

const encodeCursor = (row: RunRow) =>
  Buffer.from(JSON.stringify([toDate(row.started_at).toISOString(), row.id])).toString('base64url');

function decodeCursor(cursor: string): [string, string] {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString());
    if (
      Array.isArray(value) &&
      value.length === 2 &&
      typeof value[0] === 'string' &&
      typeof value[1] === 'string' &&
      !Number.isNaN(new Date(value[0]).getTime())
    ) {
      return [value[0], value[1]];
    }
  } catch {
    // fall through to the refusal
  }
  throw new ApiError(400, 'invalid_cursor', 'cursor: not a cursor this API returned.');
}

async function readRun(db: Database, id: string): Promise<RunRow | undefined> {
  const [row] = await db.sql<RunRow[]>`select * from reconciliation_runs where id = ${id}`;
  return row;
}

export function reconciliationRoutes(deps: AppDeps) {
  const { db, temporal, taskQueue, logger, temporalStartTimeoutMs } = deps;
  const linked = (row: RunRow) => {
    const body = runBody(row);
    return { ...body, ...temporalUiLink(deps, body.workflowId) };
  };
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  /** Starts a reconciliation run for a window (or finds the one this Idempotency-Key started). */
  app.openapi(startReconciliation, async (c) => {
    const principal = c.get('auth');
    const key = c.req.valid('header')['idempotency-key'];
    const body =
      (c.req.valid('json') as z.infer<typeof StartReconciliationSchema> | undefined) ?? {};
    const fromGiven = parseInstant(body.from, 'from');
    const toGiven = parseInstant(body.to, 'to');
    const to = toGiven ?? new Date();
    const from = fromGiven ?? new Date(to.getTime() - DEFAULT_MANUAL_WINDOW_MS);
    const problem = windowProblem(from, to);
    if (problem) throw new ApiError(400, 'invalid_window', `${problem}.`);

    const id = reconciliationRunIdFor(key);
    const workflowId = workflowIds.reconciliation(id);
    const input: ReconciliationInput = {
      runId: id,
      trigger: 'manual',
      from: from.toISOString(),
      to: to.toISOString(),
    };
    try {
      await withStartDeadline(temporal, temporalStartTimeoutMs, () =>
        temporal.workflow.start<typeof reconciliation>('reconciliation', {
          taskQueue,
          workflowId,
          args: [input],
          memo: { input, requestedBy: principal.sub },
          workflowIdConflictPolicy: 'USE_EXISTING',
          workflowIdReusePolicy: 'REJECT_DUPLICATE',
        }),
      );
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    }
    // A repeated key: the same run, provided it asked for the same window.
    const description = await temporal.workflow.getHandle(workflowId).describe();
    const first = description.memo?.input as ReconciliationInput | undefined;
    const explicit = body.from !== undefined || body.to !== undefined;
    if (
      first &&
      explicit &&
      ((fromGiven && first.from !== input.from) || (toGiven && first.to !== input.to))
    ) {
      throw new ApiError(
        409,
        'idempotency_conflict',
        'This Idempotency-Key was already used for a run over another window; use a new key.',
      );
    }
    const row = await readRun(db, id);
    logger.info(
      { runId: id, workflowId, from: input.from, to: input.to },
      'reconciliation started',
    );
    return c.json(
      { id, workflowId, status: row?.status ?? 'running', ...temporalUiLink(deps, workflowId) },
      202,
    );
  });

  /** Runs, newest first, a page at a time. */
  app.openapi(listReconciliations, async (c) => {
    const { limit, cursor } = c.req.valid('query');
    const after = cursor ? decodeCursor(cursor) : null;
    const rows = await db.sql<RunRow[]>`
      select * from reconciliation_runs
      where ${after === null}
         or (started_at, id) < (${after?.[0] ?? null}::timestamptz, ${after?.[1] ?? null}::text)
      order by started_at desc, id desc
      limit ${limit + 1}`;
    const page = rows.slice(0, limit);
    const nextCursor = rows.length > limit ? encodeCursor(page.at(-1)!) : null;
    return c.json({ items: page.map(linked), nextCursor }, 200);
  });

  /** One report: the run, its counts per category and each finding with its action and outcome. */
  app.openapi(getReconciliation, async (c) => {
    const { id } = c.req.valid('param');
    const row = await readRun(db, id);
    if (!row) {
      throw new ApiError(
        404,
        'reconciliation_not_found',
        `No reconciliation run ${id} (a run just started appears once its worker picks it up).`,
      );
    }
    const findings = await db.sql<
      {
        key: string;
        kind: string;
        refs: Record<string, unknown>;
        amount: string | null;
        currency: string | null;
        action: 'repaired' | 'flagged' | 'none';
        outcome: string;
        details: Record<string, unknown>;
        created_at: Date | string;
      }[]
    >`
      select key, kind, refs, amount, currency, action, outcome, details, created_at
      from reconciliation_findings where run_id = ${id}
      order by id limit ${MAX_FINDINGS_SHOWN + 1}`;
    return c.json(
      {
        ...linked(row),
        findings: findings.slice(0, MAX_FINDINGS_SHOWN).map((f) => ({
          key: f.key,
          kind: f.kind,
          refs: f.refs,
          amount: f.amount === null ? null : Number(f.amount),
          currency: f.currency,
          action: f.action,
          outcome: f.outcome,
          details: f.details,
          createdAt: toDate(f.created_at).toISOString(),
        })),
        findingsTruncated: findings.length > MAX_FINDINGS_SHOWN,
      },
      200,
    );
  });

  return app;
}
