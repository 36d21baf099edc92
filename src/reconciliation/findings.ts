// What reconciliation can find, and what it does about each kind: repair through the flow that
// owns the money, or flag it (an alert) for a person.

export const FINDING_KINDS = [
  /** Stripe took the money (session paid / intent succeeded); the payment is not credited. */
  'paid_not_credited',
  /** Stripe refunded more than the payment has taken back. */
  'refund_not_taken_back',
  /** Stripe has a dispute (or its outcome) the disputes table does not. */
  'dispute_not_followed',
  /** A verification debited, still open long past its timeout. */
  'verification_unsettled',
  /** An order that ended (or should have) left credits in escrow. */
  'order_escrow_left',
  /** A payment still `init` long past its session's expiry. */
  'payment_init_expired',
  /** Credited here, with no paid session or payment intent at Stripe. */
  'credited_without_stripe_payment',
  /** Stripe's amount or currency is not what the payment recorded. */
  'amount_mismatch',
  /** Stripe took money twice for one payment (two paid sessions or intents). */
  'duplicate_payment',
  /** Stripe names a payment of ours that the payments table does not have. */
  'unknown_payment',
  /** The ledger checker found an invariant broken. */
  'ledger_violation',
  /** A grant still open minutes after its expiresAt (its workflow's timer did not close it). */
  'grant_expiry_overdue',
] as const;
export type FindingKind = (typeof FINDING_KINDS)[number];

export type FindingAction = 'repaired' | 'flagged' | 'none';

/** One thing a run found, as stored in reconciliation_findings. */
export interface Finding {
  /** Stable across runs: the same problem found twice has the same key (repairs key on it). */
  key: string;
  kind: FindingKind;
  refs: Record<string, string | null>;
  /** Minor units of `currency`, or credits when `currency` is "credits". */
  amount: number | null;
  currency: string | null;
  customerId?: string | null;
  message: string;
  details?: Record<string, unknown>;
}

/** Kinds always flagged for a person: nothing automatic is safe. */
export const FLAG_ONLY: ReadonlySet<FindingKind> = new Set([
  'order_escrow_left',
  'credited_without_stripe_payment',
  'amount_mismatch',
  'duplicate_payment',
  'unknown_payment',
  'ledger_violation',
]);

/** Alert severity of a flagged finding. */
export function severityOf(kind: FindingKind): 'warning' | 'critical' {
  return kind === 'verification_unsettled' ||
    kind === 'order_escrow_left' ||
    kind === 'payment_init_expired' ||
    kind === 'grant_expiry_overdue'
    ? 'warning'
    : 'critical';
}
