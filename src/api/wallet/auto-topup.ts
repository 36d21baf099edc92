// The caller's auto top-up: its settings (threshold, pack, monthly cap) and its state (paused and
// why, last charge, charges this month, last failure, the saved card it charges).
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { toDate, type Database } from '../../db/client.js';
import { requestAutoTopupCharge } from '../../credits/auto-topup-trigger.js';
import { spendable } from '../../ledger/grants.js';
import { MAX_POSTING_AMOUNT } from '../../ledger/ledger.js';
import { DEFAULT_CREDIT_PACKS, type CreditPack } from '../../payments/packs.js';
import { actingCustomer, type AuthEnv } from '../auth.js';
import { customerIdSchema, errorResponse, plainText, security, type AppDeps } from '../common.js';
import { ApiError, validationHook } from '../errors.js';

const AutoTopupSettingsSchema = z
  .object({
    enabled: z.boolean({ error: 'must be true or false' }),
    threshold: z
      .number({ error: 'must be a whole number of credits' })
      .int('must be a whole number of credits')
      .min(1, 'must be at least 1')
      .max(MAX_POSTING_AMOUNT, `must be at most ${MAX_POSTING_AMOUNT}`)
      .openapi({ example: 100, description: 'Top up when the available balance falls below this' }),
    pack: plainText({ max: 32, missing: 'must name a credit pack, e.g. "small"' }).openapi({
      example: 'small',
    }),
    monthlyCap: z
      .number({ error: 'must be a whole number of charges' })
      .int('must be a whole number of charges')
      .min(1, 'must be at least 1')
      .max(1000, 'must be at most 1000')
      .openapi({ example: 3, description: 'At most this many charges per calendar month (UTC)' }),
  })
  .strict()
  .openapi('AutoTopupSettings');

const ChargeSchema = z
  .object({
    id: z.string(),
    status: z.enum([
      'requested',
      'charging',
      'succeeded',
      'declined',
      'requires_action',
      'failed',
      'capped',
    ]),
    pack: z.string(),
    credits: z.number().int(),
    amount: z.number().int().openapi({ description: 'Price in minor units of the currency' }),
    currency: z.string(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('AutoTopupCharge');

const AutoTopupStateSchema = z
  .object({
    enabled: z.boolean(),
    threshold: z.number().int().nullable(),
    pack: z.string().nullable(),
    monthlyCap: z.number().int().nullable(),
    paused: z.boolean(),
    pauseReason: z.string().nullable(),
    pausedAt: z.string().nullable(),
    lastCharge: ChargeSchema.nullable(),
    chargesThisMonth: z
      .number()
      .int()
      .openapi({ description: 'Succeeded charges this calendar month (UTC), as the cap counts' }),
    lastFailure: z
      .object({
        chargeId: z.string(),
        status: z.string(),
        code: z.string(),
        message: z.string().nullable(),
        at: z.string(),
      })
      .nullable(),
    savedCard: z.object({ brand: z.string().nullable(), last4: z.string().nullable() }).nullable(),
  })
  .openapi('AutoTopupState');

const CustomerQuery = z.object({ customerId: customerIdSchema.optional() });

const getAutoTopup = createRoute({
  method: 'get',
  path: '/v1/wallet/auto-topup',
  tags: ['wallet'],
  summary: "The caller's auto top-up settings and state",
  security,
  request: { query: CustomerQuery },
  responses: {
    200: {
      content: { 'application/json': { schema: AutoTopupStateSchema } },
      description: 'State',
    },
    401: errorResponse('No or bad token'),
    403: errorResponse('Another customer'),
  },
});

const putAutoTopup = createRoute({
  method: 'put',
  path: '/v1/wallet/auto-topup',
  tags: ['wallet'],
  summary: "Set the caller's auto top-up; un-pauses it, and charges at once if already below",
  description:
    'When the available balance falls below `threshold`, the saved card is charged off-session for `pack` (at most `monthlyCap` times per calendar month, UTC). Enabling needs a card saved by a checkout with `saveCard: true`. Any PUT clears a pause left by a declined card.',
  security,
  request: {
    query: CustomerQuery,
    body: {
      required: true,
      content: { 'application/json': { schema: AutoTopupSettingsSchema } },
    },
  },
  responses: {
    200: {
      content: { 'application/json': { schema: AutoTopupStateSchema } },
      description: 'Saved',
    },
    400: errorResponse('Invalid body or unknown pack'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Another customer'),
    404: errorResponse('No such customer'),
    409: errorResponse('Enabling needs a saved card (no_saved_payment_method)'),
  },
});

interface SettingsRow {
  enabled: boolean;
  threshold: string;
  pack: string;
  monthly_cap: number;
  paused_at: Date | string | null;
  pause_reason: string | null;
}

interface ChargeRow {
  id: string;
  status: z.infer<typeof ChargeSchema>['status'];
  pack: string;
  credits: string;
  amount: string;
  currency: string;
  failure_code: string | null;
  failure_message: string | null;
  created_at: Date | string;
  updated_at: Date | string;
}

const iso = (value: Date | string) => toDate(value).toISOString();

/** Settings, pause, charges and saved card of one customer, as GET and PUT answer them. */
async function readState(db: Database, customerId: string) {
  const [settings] = await db.sql<SettingsRow[]>`
    select enabled, threshold, pack, monthly_cap, paused_at, pause_reason
    from auto_topup_settings where customer_id = ${customerId}`;
  const [last] = await db.sql<ChargeRow[]>`
    select * from auto_topup_charges where customer_id = ${customerId}
    order by created_at desc, crossing desc limit 1`;
  const [failure] = await db.sql<ChargeRow[]>`
    select * from auto_topup_charges where customer_id = ${customerId} and failure_code is not null
    order by updated_at desc limit 1`;
  const [month] = await db.sql<{ count: string }[]>`
    select count(*) from auto_topup_charges
    where customer_id = ${customerId} and status = 'succeeded'
      and created_at >= date_trunc('month', now() at time zone 'utc') at time zone 'utc'`;
  const [card] = await db.sql<{ card_brand: string | null; card_last4: string | null }[]>`
    select card_brand, card_last4 from saved_payment_methods where customer_id = ${customerId}`;
  return {
    enabled: settings?.enabled ?? false,
    threshold: settings ? Number(settings.threshold) : null,
    pack: settings?.pack ?? null,
    monthlyCap: settings?.monthly_cap ?? null,
    paused: Boolean(settings?.paused_at),
    pauseReason: settings?.pause_reason ?? null,
    pausedAt: settings?.paused_at ? iso(settings.paused_at) : null,
    lastCharge: last
      ? {
          id: last.id,
          status: last.status,
          pack: last.pack,
          credits: Number(last.credits),
          amount: Number(last.amount),
          currency: last.currency,
          createdAt: iso(last.created_at),
          updatedAt: iso(last.updated_at),
        }
      : null,
    chargesThisMonth: Number(month?.count ?? 0),
    lastFailure: failure
      ? {
          chargeId: failure.id,
          status: failure.status,
          code: failure.failure_code!,
          message: failure.failure_message,
          at: iso(failure.updated_at),
        }
      : null,
    savedCard: card ? { brand: card.card_brand, last4: card.card_last4 } : null,
  };
}

export function autoTopupRoutes({ db, taskQueue, checkout }: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });
  const packs = checkout?.packs ?? DEFAULT_CREDIT_PACKS;

  /** Reads the caller's auto top-up settings and what it last did. */
  app.openapi(getAutoTopup, async (c) => {
    const customerId = actingCustomer(c.get('auth'), c.req.valid('query').customerId);
    return c.json(await readState(db, customerId), 200);
  });

  /**
   * Replaces the caller's auto top-up settings, clears any pause, and (under the wallet's lock,
   * like a posting) treats a balance already below the new threshold as a crossing.
   */
  app.openapi(putAutoTopup, async (c) => {
    const customerId = actingCustomer(c.get('auth'), c.req.valid('query').customerId);
    const body = c.req.valid('json');
    const pack: (CreditPack & { expiresInDays?: number | null }) | undefined = Object.hasOwn(
      packs,
      body.pack,
    )
      ? packs[body.pack]
      : undefined;
    if (!pack) {
      throw new ApiError(
        400,
        'unknown_pack',
        `pack: no pack "${body.pack}"; choose one of ${Object.keys(packs).join(', ')}.`,
      );
    }
    const [customer] = await db.sql`
      select 1 from customers where id = ${customerId} and anonymised_at is null`;
    if (!customer) throw new ApiError(404, 'customer_not_found', 'No such customer.');
    if (body.enabled) {
      const [card] = await db.sql`
        select 1 from saved_payment_methods where customer_id = ${customerId}`;
      if (!card) {
        throw new ApiError(
          409,
          'no_saved_payment_method',
          'Auto top-up needs a saved card: buy a pack with POST /v1/checkouts and "saveCard": true, then enable it.',
        );
      }
    }
    await db.sql.begin(async (tx) => {
      // The wallet's lock orders this with every posting, so a crossing is decided once.
      const [wallet] = await tx`
        select id from accounts where kind = 'wallet' and customer_id = ${customerId} for update`;
      if (!wallet) throw new ApiError(404, 'customer_not_found', 'No wallet for this customer.');
      const available = await spendable(tx, customerId);
      const [open] = await tx<{ count: string }[]>`
        select count(*) from auto_topup_charges
        where customer_id = ${customerId} and status in ('requested', 'charging')`;
      // A charge still on its way counts for the crossing it was requested for.
      const armed = Number(open?.count ?? 0) === 0 || available >= BigInt(body.threshold);
      await tx`
        insert into auto_topup_settings
          (customer_id, enabled, threshold, pack, pack_credits, pack_amount, pack_currency,
           pack_expires_in_days, monthly_cap, armed, task_queue)
        values (${customerId}, ${body.enabled}, ${body.threshold}, ${body.pack}, ${pack.credits},
                ${pack.amount}, ${pack.currency}, ${pack.expiresInDays ?? null}, ${body.monthlyCap},
                ${armed}, ${taskQueue})
        on conflict (customer_id) do update set
          enabled = excluded.enabled, threshold = excluded.threshold, pack = excluded.pack,
          pack_credits = excluded.pack_credits, pack_amount = excluded.pack_amount,
          pack_currency = excluded.pack_currency,
          pack_expires_in_days = excluded.pack_expires_in_days,
          monthly_cap = excluded.monthly_cap, armed = excluded.armed,
          task_queue = excluded.task_queue, paused_at = null, pause_reason = null,
          updated_at = now()`;
      if (body.enabled && armed) await requestAutoTopupCharge(tx, customerId, available);
    });
    return c.json(await readState(db, customerId), 200);
  });

  return app;
}
