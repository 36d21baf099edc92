// The books at a glance: how each kind of workflow fared in the last hour and day, the open
// alerts and the last reconciliation, all from the database read models.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { toDate } from '../../db/client.js';
import { CREDITED_STATUSES } from '../../payments/state-machine.js';
import { adminOnly, type AuthEnv } from '../auth.js';
import { errorResponse, security, type AppDeps } from '../common.js';
import { validationHook } from '../errors.js';
import { AlertSchema, presentAlert, type AlertRow } from './alerts.js';

/** The workflow types the health view reports on, in the order it lists them. */
export const HEALTH_WORKFLOWS = [
  'adjustment',
  'verificationPurchase',
  'order',
  'checkout',
  'refund',
  'reconciliation',
] as const;
type HealthWorkflow = (typeof HEALTH_WORKFLOWS)[number];

/** Types for which "refunded" means nothing (they are refunds or checks themselves). */
const NO_REFUND_FIGURE: ReadonlySet<HealthWorkflow> = new Set(['refund', 'reconciliation']);
/** Types whose read model is written only when the flow ends, so it holds no duration. */
const NO_DURATION: ReadonlySet<HealthWorkflow> = new Set(['adjustment']);

/** How many of the newest open alerts the view shows. */
const NEWEST_ALERTS = 5;

const WindowStatsSchema = z
  .object({
    started: z.number().int().openapi({ description: 'Flows started in the window' }),
    completed: z.number().int().openapi({ description: 'Of those, ended in success' }),
    failed: z.number().int().openapi({ description: 'Of those, ended without success' }),
    refunded: z.number().int().nullable().openapi({
      description: 'Of those, with credits or money given back (null: not applicable)',
    }),
    running: z.number().int().openapi({ description: 'Of those, not ended yet' }),
    avgDurationSeconds: z.number().nullable(),
    p95DurationSeconds: z.number().nullable(),
  })
  .openapi('WorkflowWindowStats');

const WorkflowStatsSchema = z.object({ hour: WindowStatsSchema, day: WindowStatsSchema });

const HealthSchema = z
  .object({
    generatedAt: z.string(),
    workflows: z.object(
      Object.fromEntries(HEALTH_WORKFLOWS.map((t) => [t, WorkflowStatsSchema])) as Record<
        HealthWorkflow,
        typeof WorkflowStatsSchema
      >,
    ),
    alerts: z.object({
      open: z.object({
        total: z.number().int(),
        warning: z.number().int(),
        critical: z.number().int(),
      }),
      newest: z.array(AlertSchema),
    }),
    lastReconciliation: z
      .object({
        id: z.string(),
        workflowId: z.string(),
        trigger: z.string(),
        status: z.string(),
        windowFrom: z.string(),
        windowTo: z.string(),
        matched: z.number().int(),
        findingsCount: z.number().int(),
        startedAt: z.string(),
        finishedAt: z.string().nullable(),
      })
      .nullable(),
  })
  .openapi('AdminHealth');

const getHealth = createRoute({
  method: 'get',
  path: '/v1/admin/health',
  tags: ['admin'],
  summary: 'Workflows of the last hour and day, open alerts, last reconciliation (admin)',
  description:
    'Per workflow type, the flows started in the last hour and the last day (a cohort): how many ' +
    'completed, failed, were refunded or are still running, and the average and 95th percentile ' +
    'duration of the ended ones. See docs/operations.md for what each figure means per type.',
  security,
  middleware: [adminOnly] as const,
  responses: {
    200: { content: { 'application/json': { schema: HealthSchema } }, description: 'Health' },
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
  },
});

interface StatsRow {
  type: HealthWorkflow;
  window: 'hour' | 'day';
  started: number;
  completed: number;
  failed: number;
  refunded: number;
  running: number;
  avg_seconds: number | null;
  p95_seconds: number | null;
}

type WindowStats = z.infer<typeof WindowStatsSchema>;

const emptyWindow = (type: HealthWorkflow): WindowStats => ({
  started: 0,
  completed: 0,
  failed: 0,
  refunded: NO_REFUND_FIGURE.has(type) ? null : 0,
  running: 0,
  avgDurationSeconds: null,
  p95DurationSeconds: null,
});

const seconds = (value: number | null) => (value === null ? null : Math.round(value * 1000) / 1000);

export function adminHealthRoutes({ db }: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  /** Builds the health view from the read models in three queries. */
  app.openapi(getHealth, async (c) => {
    const credited = [...CREDITED_STATUSES];
    // One row per flow started in the last day: when it started and ended, how it ended, and
    // whether anything was given back. Each read model says it its own way.
    const stats = await db.sql<StatsRow[]>`
      with flows (type, started_at, finished_at, outcome, refunded) as (
        select 'adjustment', created_at,
               case when status in ('completed', 'rejected') then updated_at end,
               case status when 'completed' then 'completed' when 'rejected' then 'failed' end,
               false
        from adjustments where created_at > now() - interval '1 day'
        union all
        select 'verificationPurchase', created_at,
               case when status in ('completed', 'refunded', 'failed') then updated_at end,
               case when status = 'completed' then 'completed'
                    when status in ('refunded', 'failed') then 'failed' end,
               status = 'refunded' or goodwill_refunded > 0
        from verifications where created_at > now() - interval '1 day'
        union all
        select 'order', created_at,
               case when status <> 'processing' then updated_at end,
               case when status in ('completed', 'partially_completed') then 'completed'
                    when status = 'failed' then 'failed' end,
               refunded > 0 or goodwill_refunded > 0
        from orders where created_at > now() - interval '1 day'
        union all
        select 'checkout', p.created_at,
               case when p.status = any(${credited}::text[]) then coalesce(e.created_at, p.updated_at)
                    when p.status in ('expired', 'failed') then p.updated_at end,
               case when p.status = any(${credited}::text[]) then 'completed'
                    when p.status in ('expired', 'failed') then 'failed' end,
               p.refunded_credits > 0 or p.status = 'chargeback'
        from payments p left join entries e on e.id = p.topup_entry_id
        where p.created_at > now() - interval '1 day'
        union all
        select 'refund', created_at,
               case when status in ('refunded', 'rejected', 'failed') then updated_at end,
               case when status = 'refunded' then 'completed'
                    when status in ('rejected', 'failed') then 'failed' end,
               false
        from refunds where created_at > now() - interval '1 day'
        union all
        select 'reconciliation', started_at,
               case when status <> 'running' then finished_at end,
               case status when 'completed' then 'completed' when 'failed' then 'failed' end,
               false
        from reconciliation_runs where started_at > now() - interval '1 day'
      ),
      windows (name, span) as (values ('hour', interval '1 hour'), ('day', interval '1 day'))
      select f.type, w.name as window,
             count(*)::int as started,
             (count(*) filter (where f.outcome = 'completed'))::int as completed,
             (count(*) filter (where f.outcome = 'failed'))::int as failed,
             (count(*) filter (where f.refunded))::int as refunded,
             (count(*) filter (where f.outcome is null))::int as running,
             (avg(extract(epoch from f.finished_at - f.started_at))
                filter (where f.finished_at is not null))::float8 as avg_seconds,
             (percentile_cont(0.95) within group (order by extract(epoch from f.finished_at - f.started_at))
                filter (where f.finished_at is not null))::float8 as p95_seconds
      from flows f join windows w on f.started_at > now() - w.span
      group by f.type, w.name`;

    const workflows = Object.fromEntries(
      HEALTH_WORKFLOWS.map((t) => [t, { hour: emptyWindow(t), day: emptyWindow(t) }]),
    ) as Record<HealthWorkflow, { hour: WindowStats; day: WindowStats }>;
    for (const row of stats) {
      const timed = !NO_DURATION.has(row.type);
      workflows[row.type][row.window] = {
        started: row.started,
        completed: row.completed,
        failed: row.failed,
        refunded: NO_REFUND_FIGURE.has(row.type) ? null : row.refunded,
        running: row.running,
        avgDurationSeconds: timed ? seconds(row.avg_seconds) : null,
        p95DurationSeconds: timed ? seconds(row.p95_seconds) : null,
      };
    }

    const [counts] = await db.sql<{ total: number; warning: number; critical: number }[]>`
      select count(*)::int as total,
             (count(*) filter (where severity = 'warning'))::int as warning,
             (count(*) filter (where severity = 'critical'))::int as critical
      from alerts where status = 'open'`;
    const newest = await db.sql<AlertRow[]>`
      select * from alerts where status = 'open' order by id desc limit ${NEWEST_ALERTS}`;

    const [run] = await db.sql<
      {
        id: string;
        workflow_id: string;
        trigger: string;
        status: string;
        window_from: Date | string;
        window_to: Date | string;
        matched: number;
        findings_count: number;
        started_at: Date | string;
        finished_at: Date | string | null;
      }[]
    >`
      select id, workflow_id, trigger, status, window_from, window_to, matched, findings_count,
             started_at, finished_at
      from reconciliation_runs order by started_at desc, id desc limit 1`;

    return c.json(
      {
        generatedAt: new Date().toISOString(),
        workflows,
        alerts: { open: counts!, newest: newest.map(presentAlert) },
        lastReconciliation: run
          ? {
              id: run.id,
              workflowId: run.workflow_id,
              trigger: run.trigger,
              status: run.status,
              windowFrom: toDate(run.window_from).toISOString(),
              windowTo: toDate(run.window_to).toISOString(),
              matched: run.matched,
              findingsCount: run.findings_count,
              startedAt: toDate(run.started_at).toISOString(),
              finishedAt: run.finished_at === null ? null : toDate(run.finished_at).toISOString(),
            }
          : null,
      },
      200,
    );
  });

  return app;
}
