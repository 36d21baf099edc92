// The monitor: what moved through the ledger in the last N minutes.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { toDate } from '../../db/client.js';
import { jsonBalance } from '../../ledger/ledger.js';
import { adminOnly, type AuthEnv } from '../auth.js';
import {
  balanceSchema,
  customerIdSchema,
  errorResponse,
  security,
  temporalUiLink,
  temporalUiUrlSchema,
  type AppDeps,
} from '../common.js';
import { validationHook } from '../errors.js';

/**
 * Entry types by what they mean for a customer, for the monitor's sums. A type in none of these
 * lists (top-ups, sales, adjustments, dispute holds) still counts in transactions, credits added
 * and the counts by type.
 */
export const ENTRY_CATEGORIES = {
  /** Credits spent on something bought. */
  purchase: ['verification_purchase', 'order_purchase'],
  /** Credits given back for a purchase: automatic refunds and goodwill refunds. */
  purchaseRefund: ['verification_refund', 'order_refund', 'goodwill_refund'],
  /** Credits taken back because a top-up was refunded (net of re-credits when that failed). */
  clawback: ['refund_clawback', 'stripe_refund_clawback', 'refund_recredit'],
} as const;

/** The longest window the monitor looks at: one week. */
export const MONITOR_MAX_MINUTES = 10_080;
const RECENT = 20;

const MonitorQuery = z.object({
  minutes: z.coerce
    .number({ error: 'must be a whole number of minutes' })
    .int('must be a whole number of minutes')
    .min(1, 'must be at least 1')
    .max(MONITOR_MAX_MINUTES, `must be at most ${MONITOR_MAX_MINUTES} (one week)`)
    .default(60)
    .openapi({ example: 60 }),
  customerId: customerIdSchema
    .optional()
    .openapi({ description: "Only this customer's wallet and the entries that moved it" }),
});

const MonitorSchema = z
  .object({
    window: z.object({ minutes: z.number().int(), from: z.string(), to: z.string() }),
    transactions: z.number().int().openapi({ description: 'Ledger entries in the window' }),
    creditsAdded: balanceSchema.openapi({ description: 'Sum of all positive wallet postings' }),
    spent: balanceSchema.openapi({ description: 'Credits taken from wallets by purchases' }),
    refunded: balanceSchema.openapi({
      description: 'Credits given back to wallets for purchases (automatic and goodwill)',
    }),
    clawedBack: balanceSchema.openapi({
      description: 'Credits taken back from wallets because top-ups were refunded (net)',
    }),
    uniqueCustomers: z.number().int().openapi({ description: 'Wallets with a posting' }),
    byType: z.array(z.object({ type: z.string(), count: z.number().int() })),
    recent: z.array(
      z.object({
        id: z.number().int(),
        type: z.string(),
        customerId: z.string().nullable(),
        amount: balanceSchema.openapi({
          description: 'Signed change to the customer’s wallet; the amount moved when no wallet',
        }),
        createdAt: z.string(),
        workflowId: z
          .string()
          .nullable()
          .openapi({ description: 'The workflow that posted the entry, if one did' }),
        temporalUiUrl: temporalUiUrlSchema,
      }),
    ),
  })
  .openapi('AdminMonitor');

const getMonitor = createRoute({
  method: 'get',
  path: '/v1/admin/monitor',
  tags: ['admin'],
  summary: 'Ledger activity of the last N minutes (admin)',
  security,
  middleware: [adminOnly] as const,
  request: { query: MonitorQuery },
  responses: {
    200: { content: { 'application/json': { schema: MonitorSchema } }, description: 'Summary' },
    400: errorResponse('minutes out of 1..10080'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
  },
});

export function adminMonitorRoutes(deps: AppDeps) {
  const { db } = deps;
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  /** Sums the window's entries and wallet postings; one fixed cut-off for every figure. */
  app.openapi(getMonitor, async (c) => {
    const { minutes, customerId } = c.req.valid('query');
    const result = await db.sql.begin('isolation level repeatable read read only', async (tx) => {
      // For one customer: their wallet's postings, and the entries that have one.
      const ofWallet = customerId ? tx`and a.customer_id = ${customerId}` : tx``;
      const ofEntry = customerId
        ? tx`and exists (select 1 from postings cp join accounts ca on ca.id = cp.account_id
                         where cp.entry_id = e.id and ca.kind = 'wallet' and ca.customer_id = ${customerId})`
        : tx``;
      // The cut-off stays text end to end: the app's pools bind timestamps as text only.
      const [bounds] = await tx<{ from: string; to: string }[]>`
        select to_json(now() - make_interval(mins => ${minutes})) #>> '{}' as from,
               to_json(now()) #>> '{}' as to`;
      const from = bounds!.from;
      const [sums] = await tx<
        {
          added: string;
          spent: string;
          refunded: string;
          clawed_back: string;
          customers: number;
        }[]
      >`
        select coalesce(sum(p.amount) filter (where p.amount > 0), 0)::text as added,
               coalesce(-sum(p.amount) filter (
                 where p.amount < 0 and e.type = any(${[...ENTRY_CATEGORIES.purchase]}::text[])), 0)::text as spent,
               coalesce(sum(p.amount) filter (
                 where p.amount > 0 and e.type = any(${[...ENTRY_CATEGORIES.purchaseRefund]}::text[])), 0)::text as refunded,
               coalesce(-sum(p.amount) filter (
                 where e.type = any(${[...ENTRY_CATEGORIES.clawback]}::text[])), 0)::text as clawed_back,
               count(distinct a.customer_id)::int as customers
        from postings p
        join accounts a on a.id = p.account_id and a.kind = 'wallet'
        join entries e on e.id = p.entry_id
        where p.created_at > ${from}::timestamptz ${ofWallet}`;
      const byType = await tx<{ type: string; count: number }[]>`
        select e.type, count(*)::int as count from entries e
        where e.created_at > ${from}::timestamptz ${ofEntry}
        group by e.type order by count desc, e.type`;
      const recent = await tx<
        {
          id: string;
          type: string;
          customer_id: string | null;
          wallet_amount: string | null;
          moved: string;
          created_at: Date | string;
          workflow_id: string | null;
        }[]
      >`
        select e.id, e.type, e.created_at, e.workflow_id,
               (select a.customer_id from postings p join accounts a on a.id = p.account_id
                where p.entry_id = e.id and a.kind = 'wallet' order by p.id limit 1) as customer_id,
               (select p.amount from postings p join accounts a on a.id = p.account_id
                where p.entry_id = e.id and a.kind = 'wallet' order by p.id limit 1)::text as wallet_amount,
               (select sum(p.amount) from postings p where p.entry_id = e.id and p.amount > 0)::text as moved
        from entries e
        where e.created_at > ${from}::timestamptz ${ofEntry}
        order by e.id desc
        limit ${RECENT}`;
      return { from: toDate(from), to: toDate(bounds!.to), sums: sums!, byType, recent };
    });
    const transactions = result.byType.reduce((n, t) => n + t.count, 0);
    return c.json(
      {
        window: { minutes, from: result.from.toISOString(), to: result.to.toISOString() },
        transactions,
        creditsAdded: jsonBalance(result.sums.added),
        spent: jsonBalance(result.sums.spent),
        refunded: jsonBalance(result.sums.refunded),
        clawedBack: jsonBalance(result.sums.clawed_back),
        uniqueCustomers: result.sums.customers,
        byType: result.byType,
        recent: result.recent.map((r) => ({
          id: Number(r.id),
          type: r.type,
          customerId: r.customer_id,
          amount: jsonBalance(r.wallet_amount ?? r.moved ?? '0'),
          createdAt: toDate(r.created_at).toISOString(),
          workflowId: r.workflow_id,
          ...(r.workflow_id ? temporalUiLink(deps, r.workflow_id) : {}),
        })),
      },
      200,
    );
  });

  return app;
}
