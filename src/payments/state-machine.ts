// The payment state machine, in one place: every status change of a payment goes through
// transitionPayment, a conditional UPDATE that only applies from an allowed state.
import type postgres from 'postgres';

export const PAYMENT_STATUSES = [
  'init',
  'paid',
  'credited',
  'partially_refunded',
  'refunded',
  'disputed',
  'chargeback',
  'expired',
  'failed',
] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

/**
 * Allowed moves. `expired` and `failed` may still become `paid`: Stripe can report a payment
 * after our side gave up (late payment), and the customer's money must then be credited.
 */
export const PAYMENT_TRANSITIONS: Readonly<Record<PaymentStatus, readonly PaymentStatus[]>> = {
  init: ['paid', 'expired', 'failed'],
  paid: ['credited'],
  // Refunds move between these three by what payments.refunded_credits says (refundStatus below).
  credited: ['partially_refunded', 'refunded', 'disputed', 'chargeback'],
  partially_refunded: ['refunded', 'disputed', 'chargeback'],
  refunded: ['disputed', 'chargeback'],
  // A dispute closes won (back to what the refunds say, refundStatus below) or lost.
  disputed: ['chargeback'],
  chargeback: [],
  expired: ['paid'],
  failed: ['paid'],
};

/** States from which the payment has had its credits posted (exactly one topup entry). */
export const CREDITED_STATUSES: readonly PaymentStatus[] = [
  'credited',
  'partially_refunded',
  'refunded',
  'disputed',
  'chargeback',
];

export function canTransition(from: PaymentStatus, to: PaymentStatus): boolean {
  return PAYMENT_TRANSITIONS[from].includes(to);
}

/** Every state `to` can be reached from. */
export function allowedFrom(to: PaymentStatus): PaymentStatus[] {
  return PAYMENT_STATUSES.filter((from) => canTransition(from, to));
}

export type TransitionResult =
  /** The status changed. */
  | { outcome: 'applied'; from: PaymentStatus; to: PaymentStatus }
  /** Already in the target state: a repeated step, nothing to do. */
  | { outcome: 'unchanged'; from: PaymentStatus; to: PaymentStatus }
  /** Not allowed from the current state: refused, logged, nothing written. */
  | { outcome: 'refused'; from: PaymentStatus; to: PaymentStatus }
  | { outcome: 'not_found'; from: null; to: PaymentStatus };

export interface TransitionLog {
  warn(message: string, fields?: Record<string, unknown>): void;
}

export interface TransitionRequest {
  paymentId: string;
  to: PaymentStatus;
  /** Recorded with a move to `paid`; a payment intent already recorded is kept. */
  paymentIntentId?: string | null;
  /** Recorded with a move to `credited`. */
  topupEntryId?: number | null;
  /** Why, for the log of a refused move (e.g. the Stripe event id). */
  cause?: string;
}

type Sql = postgres.Sql | postgres.TransactionSql;

/** Applies one transition if the state machine allows it from the current state. */
export async function transitionPayment(
  sql: Sql,
  request: TransitionRequest,
  log: TransitionLog,
): Promise<TransitionResult> {
  const { paymentId, to } = request;
  const from = allowedFrom(to);
  const [row] = await sql<{ previous: PaymentStatus }[]>`
    update payments p set
      status = ${to},
      payment_intent_id = coalesce(p.payment_intent_id, ${request.paymentIntentId ?? null}),
      topup_entry_id = coalesce(${request.topupEntryId ?? null}, p.topup_entry_id),
      updated_at = now()
    from (select id, status as previous from payments where id = ${paymentId} for update) old
    where p.id = old.id and p.status = any(${from}::text[])
    returning old.previous`;
  if (row) return { outcome: 'applied', from: row.previous, to };

  const [current] = await sql<{ status: PaymentStatus }[]>`
    select status from payments where id = ${paymentId}`;
  if (!current) return { outcome: 'not_found', from: null, to };
  if (current.status === to) return { outcome: 'unchanged', from: current.status, to };
  log.warn('payment transition refused', {
    paymentId,
    from: current.status,
    to,
    cause: request.cause,
  });
  return { outcome: 'refused', from: current.status, to };
}

/** The statuses a credited payment takes from its refunds alone (no dispute open). */
export const REFUND_STATUSES: readonly PaymentStatus[] = [
  'credited',
  'partially_refunded',
  'refunded',
];

/**
 * Sets a credited payment's status from what its refunds add up to: `credited` when nothing is
 * refunded (a refused refund was re-credited), `partially_refunded`, or `refunded` when every
 * credit was taken back. With `closeDispute`, a `disputed` payment (a dispute won) moves too;
 * otherwise a disputed or charged-back payment keeps its status. Returns the status it has after.
 * Call it in the transaction that changed `refunded_credits`.
 */
export async function settleRefundStatus(
  sql: Sql,
  paymentId: string,
  options: { closeDispute?: boolean } = {},
): Promise<PaymentStatus | null> {
  const from = options.closeDispute ? [...REFUND_STATUSES, 'disputed'] : [...REFUND_STATUSES];
  await sql`
    update payments set
      status = case when refunded_credits = 0 then 'credited'
                    when refunded_credits < credits then 'partially_refunded'
                    else 'refunded' end,
      status_before_dispute = case when status = 'disputed' then null else status_before_dispute end,
      updated_at = now()
    where id = ${paymentId} and status = any(${from}::text[])`;
  const [row] = await sql<{ status: PaymentStatus }[]>`
    select status from payments where id = ${paymentId}`;
  return row?.status ?? null;
}
