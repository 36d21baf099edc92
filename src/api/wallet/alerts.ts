// The caller's low-balance alerts: thresholds of the available balance that notify once per crossing.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { armedFor } from '../../credits/low-balance.js';
import { spendable } from '../../ledger/grants.js';
import { MAX_POSTING_AMOUNT, jsonBalance } from '../../ledger/ledger.js';
import { actingCustomer, type AuthEnv } from '../auth.js';
import {
  balanceSchema,
  customerIdSchema,
  errorResponse,
  security,
  type AppDeps,
} from '../common.js';
import { ApiError, validationHook } from '../errors.js';

/** How many thresholds one customer may set. */
export const MAX_ALERT_THRESHOLDS = 10;

const threshold = z
  .number({ error: 'must be a whole number of credits' })
  .int('must be a whole number of credits')
  .min(1, 'must be at least 1 credit')
  .max(MAX_POSTING_AMOUNT, `must be at most ${MAX_POSTING_AMOUNT} credits`);

const AlertsInputSchema = z
  .object({
    thresholds: z
      .array(threshold, { error: 'must be a list of credit amounts, e.g. [100, 20]' })
      .max(MAX_ALERT_THRESHOLDS, `at most ${MAX_ALERT_THRESHOLDS} thresholds`)
      .openapi({
        example: [100, 20],
        description: 'Available-balance thresholds; duplicates are dropped; [] turns alerts off',
      }),
  })
  .strict()
  .openapi('LowBalanceAlertsInput');

const AlertsSchema = z
  .object({
    customerId: z.string(),
    thresholds: z.array(z.number().int()).openapi({ description: 'Highest first' }),
    armed: z.array(z.number().int()).openapi({
      description:
        'Thresholds the available balance is at or above: falling below one of them sends one `low_balance` notification',
    }),
    available: balanceSchema.openapi({ description: 'Credits spendable now' }),
  })
  .openapi('LowBalanceAlerts');

const query = z.object({ customerId: customerIdSchema.optional() });

const getAlerts = createRoute({
  method: 'get',
  path: '/v1/wallet/alerts',
  tags: ['wallet'],
  summary: "The caller's low-balance alert thresholds and which are armed",
  security,
  request: { query },
  responses: {
    200: { content: { 'application/json': { schema: AlertsSchema } }, description: 'Alerts' },
    401: errorResponse('No or bad token'),
    403: errorResponse('Another customer'),
    404: errorResponse('No wallet'),
  },
});

const putAlerts = createRoute({
  method: 'put',
  path: '/v1/wallet/alerts',
  tags: ['wallet'],
  summary: "Replace the caller's low-balance alert thresholds",
  description:
    'One `low_balance` notification each time the available balance falls below an armed threshold; ' +
    'it re-arms once the balance is back at or above it. A threshold the balance is already below ' +
    'when set starts disarmed: no alert for being low already, only for the next fall after a rise.',
  security,
  request: {
    query,
    body: { required: true, content: { 'application/json': { schema: AlertsInputSchema } } },
  },
  responses: {
    200: { content: { 'application/json': { schema: AlertsSchema } }, description: 'Saved' },
    400: errorResponse('Invalid thresholds'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Another customer'),
    404: errorResponse('No wallet'),
  },
});

export function walletAlertRoutes({ db, taskQueue }: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  const noWallet = () =>
    new ApiError(404, 'customer_not_found', 'No wallet exists for this customer.');

  /** Thresholds, which are armed, and what is spendable now. */
  app.openapi(getAlerts, async (c) => {
    const customerId = actingCustomer(c.get('auth'), c.req.valid('query').customerId);
    const answer = await db.sql.begin(async (tx) => {
      const [wallet] = await tx`
        select 1 from accounts where kind = 'wallet' and customer_id = ${customerId}`;
      if (!wallet) throw noWallet();
      const [row] = await tx<{ thresholds: string[]; armed: string[] }[]>`
        select thresholds, armed from low_balance_alerts where customer_id = ${customerId}`;
      return {
        thresholds: (row?.thresholds ?? []).map(Number),
        armed: (row?.armed ?? []).map(Number),
        available: await spendable(tx, customerId),
      };
    });
    return c.json(
      {
        customerId,
        thresholds: answer.thresholds,
        armed: answer.armed,
        available: jsonBalance(answer.available),
      },
      200,
    );
  });

  /**
   * Replaces the thresholds. Holds the wallet's row lock, as every posting does before it
   * decides crossings, so a debit in flight sees either the old thresholds or the new ones.
   */
  app.openapi(putAlerts, async (c) => {
    const customerId = actingCustomer(c.get('auth'), c.req.valid('query').customerId);
    const thresholds = [...new Set(c.req.valid('json').thresholds)].sort((a, b) => b - a);
    const saved = await db.sql.begin(async (tx) => {
      const [wallet] = await tx`
        select id from accounts where kind = 'wallet' and customer_id = ${customerId} for update`;
      if (!wallet) throw noWallet();
      const available = await spendable(tx, customerId);
      const armed = armedFor(thresholds, available);
      // The crossing counter is kept: notification keys derive from it and must never repeat.
      await tx`
        insert into low_balance_alerts (customer_id, thresholds, armed, task_queue)
        values (${customerId}, ${thresholds}::bigint[], ${armed}::bigint[], ${taskQueue})
        on conflict (customer_id) do update
          set thresholds = excluded.thresholds, armed = excluded.armed,
              task_queue = excluded.task_queue, updated_at = now()`;
      return { armed, available };
    });
    return c.json(
      { customerId, thresholds, armed: saved.armed, available: jsonBalance(saved.available) },
      200,
    );
  });

  return app;
}
