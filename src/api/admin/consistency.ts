// One customer's books: the cached wallet balance against its postings, its payments, refunds,
// debts and disputes, with every disagreement listed.
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type postgres from 'postgres';
import { jsonBalance } from '../../ledger/ledger.js';
import { CREDITED_STATUSES } from '../../payments/state-machine.js';
import { adminOnly, type AuthEnv } from '../auth.js';
import { balanceSchema, errorResponse, security, type AppDeps } from '../common.js';
import { ApiError, validationHook } from '../errors.js';
import { checkCustomerRef, findCustomerByRef } from '../customers/lookup.js';

const ProblemSchema = z
  .object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()) })
  .openapi('ConsistencyProblem');

const ConsistencySchema = z
  .object({
    customerId: z.string(),
    checkedAt: z.string(),
    consistent: z.boolean(),
    problems: z.array(ProblemSchema),
    wallet: z.object({
      cachedBalance: balanceSchema,
      postingsSum: balanceSchema,
      lastBalanceAfter: balanceSchema.nullable(),
      postings: z.number().int(),
      byType: z.array(
        z.object({ type: z.string(), entries: z.number().int(), net: balanceSchema }),
      ),
    }),
    payments: z.object({
      count: z.number().int(),
      creditedCredits: balanceSchema,
      refundedCredits: balanceSchema,
      refundedAmount: balanceSchema,
      items: z.array(
        z.object({
          id: z.string(),
          status: z.string(),
          credits: z.number().int(),
          amount: z.number().int(),
          currency: z.string(),
          refundedCredits: z.number().int(),
          refundedAmount: z.number().int(),
          topupEntryId: z.number().int().nullable(),
        }),
      ),
    }),
    refunds: z.object({
      byStatus: z.record(z.string(), balanceSchema),
      refundedCreditsByKind: z.record(z.string(), balanceSchema).openapi({
        description:
          'Credits of refunds that ended `refunded`, per kind (topup, stripe: taken back; verification, order: given back)',
      }),
    }),
    debts: z.object({ open: z.number().int(), openCredits: balanceSchema }),
    disputes: z.object({ open: z.number().int(), heldCredits: balanceSchema }),
    grants: z
      .object({
        count: z.number().int(),
        open: z.number().int(),
        remaining: balanceSchema,
        sharesSum: balanceSchema,
        byCategory: z.record(z.string(), balanceSchema),
        broken: balanceSchema.openapi({
          description:
            'Credits of this customer that expired, were voided or came back to a closed grant (breakage)',
        }),
      })
      .openapi({ description: "The wallet's grants: what they hold must be the wallet balance" }),
  })
  .openapi('CustomerConsistency');

export type CustomerConsistency = z.infer<typeof ConsistencySchema>;
type Problem = z.infer<typeof ProblemSchema>;

const getConsistency = createRoute({
  method: 'get',
  path: '/v1/admin/customers/{ref}/consistency',
  tags: ['admin'],
  summary: "Check one customer's wallet against its postings, payments and refunds (admin)",
  security,
  middleware: [adminOnly] as const,
  request: {
    params: z.object({ ref: z.string().openapi({ description: 'Id, e-mail or external id' }) }),
  },
  responses: {
    200: {
      content: { 'application/json': { schema: ConsistencySchema } },
      description: 'The check; `consistent` false lists the problems',
    },
    400: errorResponse('Placeholder or empty reference'),
    401: errorResponse('No or bad token'),
    403: errorResponse('Not an admin'),
    404: errorResponse('No such customer'),
  },
});

type Sql = postgres.Sql | postgres.TransactionSql;

/** Totals of `value` per `key`, as API numbers. */
function sumBy<T>(rows: readonly T[], key: (r: T) => string, value: (r: T) => bigint) {
  const totals = new Map<string, bigint>();
  for (const r of rows) totals.set(key(r), (totals.get(key(r)) ?? 0n) + value(r));
  return Object.fromEntries([...totals].map(([k, v]) => [k, jsonBalance(v)]));
}

/** Runs every check for one customer on the connection or transaction given (one snapshot). */
export async function checkCustomerConsistency(
  tx: Sql,
  customerId: string,
): Promise<CustomerConsistency> {
  const problems: Problem[] = [];
  const problem = (code: string, message: string, details: Record<string, unknown> = {}) =>
    problems.push({ code, message, details });

  const [wallet] = await tx<
    { id: string; balance: string; sum: string; postings: number; last: string | null }[]
  >`
    select a.id, a.balance::text,
           coalesce((select sum(amount) from postings where account_id = a.id), 0)::text as sum,
           (select count(*) from postings where account_id = a.id)::int as postings,
           (select balance_after::text from postings where account_id = a.id
            order by id desc limit 1) as last
    from accounts a where a.kind = 'wallet' and a.customer_id = ${customerId}`;
  if (!wallet) {
    problem('no_wallet', 'The customer has no wallet account.');
  }
  const byType = wallet
    ? await tx<{ type: string; entries: number; net: string }[]>`
        select e.type, count(*)::int as entries, sum(p.amount)::text as net
        from postings p join entries e on e.id = p.entry_id
        where p.account_id = ${wallet.id}
        group by e.type order by e.type`
    : [];
  if (wallet && wallet.balance !== wallet.sum) {
    problem(
      'cached_balance_mismatch',
      `The cached balance ${wallet.balance} is not the sum of the wallet's postings (${wallet.sum}).`,
      { cachedBalance: wallet.balance, postingsSum: wallet.sum },
    );
  }
  if (wallet && (wallet.last ?? '0') !== wallet.balance) {
    problem(
      'balance_after_mismatch',
      `The last posting says the balance became ${wallet.last ?? 'nothing (no postings)'}, the cached balance is ${wallet.balance}.`,
      { lastBalanceAfter: wallet.last, cachedBalance: wallet.balance },
    );
  }
  if (wallet && BigInt(wallet.balance) < 0n) {
    problem('negative_wallet', `The wallet is negative (${wallet.balance}).`);
  }

  const credited = [...CREDITED_STATUSES];
  const payments = await tx<
    {
      id: string;
      status: string;
      credits: string;
      amount: string;
      currency: string;
      refunded_credits: string;
      refunded_amount: string;
      topup_entry_id: string | null;
      entry_type: string | null;
      entry_credits: string | null;
      entry_wallet_owner: string | null;
    }[]
  >`
    select p.id, p.status, p.credits, p.amount, p.currency, p.refunded_credits, p.refunded_amount,
           p.topup_entry_id, e.type as entry_type,
           (select sum(amount) from postings where entry_id = e.id and amount > 0)::text as entry_credits,
           (select a.customer_id from postings q join accounts a on a.id = q.account_id
            where q.entry_id = e.id and a.kind = 'wallet' limit 1) as entry_wallet_owner
    from payments p left join entries e on e.id = p.topup_entry_id
    where p.customer_id = ${customerId}
    order by p.created_at, p.id`;
  let creditedCredits = 0n;
  let refundedCredits = 0n;
  let refundedAmount = 0n;
  for (const p of payments) {
    const isCredited = credited.includes(p.status as (typeof credited)[number]);
    refundedCredits += BigInt(p.refunded_credits);
    refundedAmount += BigInt(p.refunded_amount);
    if (isCredited) creditedCredits += BigInt(p.credits);
    if (isCredited && p.topup_entry_id === null) {
      problem('payment_not_credited', `Payment ${p.id} is ${p.status} but has no top-up entry.`, {
        paymentId: p.id,
      });
    }
    if (!isCredited && p.topup_entry_id !== null) {
      problem(
        'payment_credited_in_wrong_state',
        `Payment ${p.id} has a top-up entry but is ${p.status}.`,
        { paymentId: p.id, entryId: Number(p.topup_entry_id) },
      );
    }
    if (p.topup_entry_id !== null && p.entry_credits !== p.credits) {
      problem(
        'topup_amount_mismatch',
        `Payment ${p.id} is for ${p.credits} credits but its top-up entry moved ${p.entry_credits ?? 0}.`,
        { paymentId: p.id, entryId: Number(p.topup_entry_id), entryCredits: p.entry_credits },
      );
    }
    if (
      p.topup_entry_id !== null &&
      p.entry_wallet_owner !== null &&
      p.entry_wallet_owner !== customerId
    ) {
      problem(
        'topup_other_wallet',
        `Payment ${p.id}'s top-up entry credited another customer's wallet.`,
        { paymentId: p.id, entryId: Number(p.topup_entry_id) },
      );
    }
  }
  const orphanTopups = wallet
    ? await tx<{ id: string }[]>`
        select e.id from postings p join entries e on e.id = p.entry_id
        where p.account_id = ${wallet.id} and e.type = 'topup'
          and not exists (select 1 from payments where topup_entry_id = e.id)`
    : [];
  for (const orphan of orphanTopups) {
    problem(
      'topup_without_payment',
      `Top-up entry ${orphan.id} credited this wallet but no payment records it.`,
      { entryId: Number(orphan.id) },
    );
  }

  const refunds = await tx<{ kind: string; status: string; count: number; credits: string }[]>`
    select kind, status, count(*)::int as count, coalesce(sum(credits), 0)::text as credits
    from refunds where customer_id = ${customerId} group by kind, status`;
  // A payment whose refunds have all settled has taken back exactly what its refunded ones say.
  const refundGaps = await tx<{ id: string; refunded_credits: string; by_refunds: string }[]>`
    select p.id, p.refunded_credits::text,
           coalesce(sum(r.credits) filter (where r.status = 'refunded'), 0)::text as by_refunds
    from payments p join refunds r on r.payment_id = p.id and r.kind in ('topup', 'stripe')
    where p.customer_id = ${customerId}
    group by p.id
    having bool_and(r.status in ('refunded', 'rejected', 'failed'))
       and coalesce(sum(r.credits) filter (where r.status = 'refunded'), 0) <> p.refunded_credits`;
  for (const gap of refundGaps) {
    problem(
      'refunds_mismatch',
      `Payment ${gap.id} records ${gap.refunded_credits} refunded credits; its settled refunds took ${gap.by_refunds}.`,
      { paymentId: gap.id, refundedCredits: gap.refunded_credits, byRefunds: gap.by_refunds },
    );
  }
  const [debts] = await tx<{ open: number; credits: string }[]>`
    select count(*)::int as open, coalesce(sum(credits - settled_credits), 0)::text as credits
    from customer_debts where customer_id = ${customerId} and settled_credits < credits`;
  const [disputes] = await tx<{ open: number; held: string }[]>`
    select count(*)::int as open, coalesce(sum(held_credits), 0)::text as held
    from disputes where customer_id = ${customerId} and status = 'open'`;

  const grantRows = await tx<
    { id: string; category: string; status: string; remaining: string; shares: string }[]
  >`
    select g.id, g.category, g.status, g.remaining::text,
           coalesce((select sum(amount) from grant_postings where grant_id = g.id), 0)::text as shares
    from grants g where g.customer_id = ${customerId}`;
  let grantsRemaining = 0n;
  let grantShares = 0n;
  for (const g of grantRows) {
    grantsRemaining += BigInt(g.remaining);
    grantShares += BigInt(g.shares);
    if (g.remaining !== g.shares) {
      problem(
        'grant_remaining_mismatch',
        `Grant ${g.id} holds ${g.remaining} but its shares sum to ${g.shares}.`,
        { grantId: g.id, remaining: g.remaining, sharesSum: g.shares },
      );
    }
    if (g.status !== 'open' && g.remaining !== '0') {
      problem(
        'closed_grant_holds_credits',
        `Grant ${g.id} is ${g.status} but holds ${g.remaining}.`,
        {
          grantId: g.id,
        },
      );
    }
  }
  if (wallet && BigInt(wallet.balance) !== grantsRemaining) {
    problem(
      'wallet_grants_mismatch',
      `The wallet holds ${wallet.balance} but its grants hold ${grantsRemaining}.`,
      { cachedBalance: wallet.balance, grantsRemaining: grantsRemaining.toString() },
    );
  }
  const [broken] = await tx<{ credits: string }[]>`
    select coalesce(-sum(amount), 0)::text as credits from grant_postings
    where customer_id = ${customerId} and kind in ('expiry', 'void', 'breakage')`;

  return {
    customerId,
    checkedAt: new Date().toISOString(),
    consistent: problems.length === 0,
    problems,
    wallet: {
      cachedBalance: jsonBalance(wallet?.balance ?? '0'),
      postingsSum: jsonBalance(wallet?.sum ?? '0'),
      lastBalanceAfter: wallet?.last == null ? null : jsonBalance(wallet.last),
      postings: wallet?.postings ?? 0,
      byType: byType.map((t) => ({ type: t.type, entries: t.entries, net: jsonBalance(t.net) })),
    },
    payments: {
      count: payments.length,
      creditedCredits: jsonBalance(creditedCredits),
      refundedCredits: jsonBalance(refundedCredits),
      refundedAmount: jsonBalance(refundedAmount),
      items: payments.map((p) => ({
        id: p.id,
        status: p.status,
        credits: Number(p.credits),
        amount: Number(p.amount),
        currency: p.currency,
        refundedCredits: Number(p.refunded_credits),
        refundedAmount: Number(p.refunded_amount),
        topupEntryId: p.topup_entry_id === null ? null : Number(p.topup_entry_id),
      })),
    },
    refunds: {
      byStatus: sumBy(
        refunds,
        (r) => r.status,
        (r) => BigInt(r.count),
      ),
      refundedCreditsByKind: sumBy(
        refunds.filter((r) => r.status === 'refunded'),
        (r) => r.kind,
        (r) => BigInt(r.credits),
      ),
    },
    debts: { open: debts!.open, openCredits: jsonBalance(debts!.credits) },
    disputes: { open: disputes!.open, heldCredits: jsonBalance(disputes!.held) },
    grants: {
      count: grantRows.length,
      open: grantRows.filter((g) => g.status === 'open' && g.remaining !== '0').length,
      remaining: jsonBalance(grantsRemaining),
      sharesSum: jsonBalance(grantShares),
      byCategory: sumBy(
        grantRows,
        (g) => g.category,
        (g) => BigInt(g.remaining),
      ),
      broken: jsonBalance(broken!.credits),
    },
  };
}

export function adminConsistencyRoutes({ db }: AppDeps) {
  const app = new OpenAPIHono<AuthEnv>({ defaultHook: validationHook });

  /** Resolves the customer like GET /v1/customers/:ref, then checks it in one snapshot. */
  app.openapi(getConsistency, async (c) => {
    const ref = checkCustomerRef(c.req.valid('param').ref);
    const customer = await findCustomerByRef(db, ref);
    if (!customer) {
      throw new ApiError(
        404,
        'customer_not_found',
        'No customer matches this id, e-mail or external id.',
      );
    }
    const report = await db.sql.begin('isolation level repeatable read read only', (tx) =>
      checkCustomerConsistency(tx, customer.id),
    );
    return c.json(report, 200);
  });

  return app;
}
