// What the top-up and purchase refund activities share: the refunds read model, the refusals a
// workflow ends `rejected` with, and the messages the customer gets through the outbox.
import { ApplicationFailure, log } from '@temporalio/activity';
import type postgres from 'postgres';
import type { Database } from '../../db/client.js';
import { BusinessError } from '../../errors.js';
import type { OutboxMessage } from '../../notifications/outbox.js';
import type { RefundState } from '../../shared.js';

type Sql = postgres.Sql | postgres.TransactionSql;

/** Ledger entry types of refunds requested through the API (the checker counts them). */
export const REFUND_ENTRY_TYPES = {
  /** Top-up refund: wallet −c, refunds +c. */
  clawback: 'refund_clawback',
  /** Compensation when Stripe refused: refunds −c, wallet +c. */
  recredit: 'refund_recredit',
  /** Goodwill purchase refund: refunds −c, wallet +c. */
  goodwill: 'goodwill_refund',
} as const;

/** A refusal: the workflow ends `rejected` (or `failed`) with this code; never retried. */
export function refusal(code: string, message: string, details: Record<string, unknown> = {}) {
  return ApplicationFailure.create({ type: code, message, nonRetryable: true, details: [details] });
}

/** Runs `fn`, turning business errors of the ledger into refusals with a refund's own codes. */
export async function refusingWith<T>(
  codes: Partial<Record<BusinessError['code'], string>>,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof BusinessError) {
      throw refusal(codes[err.code] ?? err.code, err.message, err.details);
    }
    throw err;
  }
}

/**
 * Writes the refund's row from the workflow's state (insert or update, whichever applies). A
 * target that does not exist is stored as null rather than refused by its foreign key, so a
 * rejected refund of a payment nobody has is still recorded.
 */
export async function upsertRefundRow(
  sql: Sql,
  state: RefundState,
  requestedBy: string,
  extra: { stripeRefundId?: string | null } = {},
): Promise<void> {
  await sql`
    insert into refunds (id, workflow_id, kind, customer_id, payment_id, verification_id, order_id,
                         item_id, stripe_refund_id, credits, amount, currency, debt_credits, reason,
                         requested_by, status, error_code, error_message, created_at, updated_at)
    values (${state.id}, ${state.workflowId}, ${state.kind}, ${state.customerId},
            (select id from payments where id = ${state.paymentId}),
            (select id from verifications where id = ${state.verificationId}),
            (select id from orders where id = ${state.orderId}),
            ${state.itemId}, ${extra.stripeRefundId ?? null}, ${state.credits}, ${state.amount},
            ${state.currency}, ${state.debtCredits}, ${state.reason}, ${requestedBy}, ${state.status},
            ${state.error?.code ?? null}, ${state.error?.message ?? null}, ${state.createdAt}, now())
    on conflict (id) do update set
      credits = excluded.credits,
      amount = excluded.amount,
      currency = coalesce(excluded.currency, refunds.currency),
      stripe_refund_id = coalesce(refunds.stripe_refund_id, excluded.stripe_refund_id),
      status = excluded.status,
      error_code = excluded.error_code,
      error_message = excluded.error_message,
      updated_at = now()`;
}

/** Money as people read it: 12.34 EUR. */
export function formatMoney(amount: number, currency: string | null): string {
  return `${(amount / 100).toFixed(2)} ${(currency ?? '').toUpperCase()}`.trim();
}

export function topupRefundClawedBack(r: {
  workflowId: string;
  refundId: string;
  paymentId: string;
  customerId: string;
  credits: number;
  amount: number;
  currency: string;
  balanceAfter: number;
}): OutboxMessage {
  return {
    idempotencyKey: `${r.workflowId}:notify-clawback`,
    customerId: r.customerId,
    kind: 'credits_deducted',
    title: 'Top-up refund started',
    body: `${r.credits} credits were taken back to refund ${formatMoney(r.amount, r.currency)} of your top-up to your card. Balance: ${r.balanceAfter}.`,
    amount: r.credits,
    balanceAfter: r.balanceAfter,
    data: { refundId: r.refundId, paymentId: r.paymentId, amount: r.amount, currency: r.currency },
  };
}

export function topupRefundRecredited(r: {
  workflowId: string;
  refundId: string;
  paymentId: string;
  customerId: string;
  credits: number;
  balanceAfter: number;
}): OutboxMessage {
  return {
    idempotencyKey: `${r.workflowId}:notify-recredit`,
    customerId: r.customerId,
    kind: 'credits_added',
    title: 'Top-up refund failed',
    body: `Your card could not be refunded, so the ${r.credits} credits taken back are in your wallet again. Balance: ${r.balanceAfter}.`,
    amount: r.credits,
    balanceAfter: r.balanceAfter,
    data: { refundId: r.refundId, paymentId: r.paymentId },
  };
}

export function purchaseRefunded(r: {
  workflowId: string;
  refundId: string;
  customerId: string;
  credits: number;
  what: string;
  balanceAfter: number;
  data: Record<string, unknown>;
}): OutboxMessage {
  return {
    idempotencyKey: `${r.workflowId}:notify-goodwill`,
    customerId: r.customerId,
    kind: 'credits_refunded',
    title: 'Credits refunded',
    body: `${r.credits} credits are back for ${r.what}. Balance: ${r.balanceAfter}.`,
    amount: r.credits,
    balanceAfter: r.balanceAfter,
    data: { refundId: r.refundId, ...r.data },
  };
}

/** Reads whether an entry was posted under this key, and for which refund. */
export async function entryUnderKey(
  db: Database,
  key: string,
): Promise<{ id: number; refundId: string | null } | undefined> {
  const [row] = await db.sql<{ id: string; refund_id: string | null }[]>`
    select id, metadata->>'refundId' as refund_id from entries where idempotency_key = ${key}`;
  return row ? { id: Number(row.id), refundId: row.refund_id } : undefined;
}

/** The alert sinks of an activity: Temporal's logger, which takes the message first. */
export const activityAlertLog = {
  error: (fields: Record<string, unknown>, message: string): void => {
    log.error(message, fields);
  },
};

/**
 * The paid grant a payment's top-up created: what taking that payment's credits back (refund,
 * Stripe refund, dispute hold) draws from first. Undefined for a payment not credited, or whose
 * credits all settled a debt.
 */
export async function topupGrantOf(db: Database, paymentId: string): Promise<string | undefined> {
  const [row] = await db.sql<{ id: string }[]>`
    select g.id from payments p join grants g on g.entry_id = p.topup_entry_id
    where p.id = ${paymentId} and g.source = 'topup'
    order by g.created_at limit 1`;
  return row?.id;
}

/** How a claw-back of a payment's credits draws: its top-up grant first, then burn-down order. */
export async function drawTopupFirst(db: Database, paymentId: string) {
  const grantId = await topupGrantOf(db, paymentId);
  return grantId ? { debit: { prefer: [grantId] } } : {};
}

export { spendableCredits } from '../ledger.js';
