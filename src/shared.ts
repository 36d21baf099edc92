// The contract both sides of Temporal share: ids, queries, search attributes, failure types.
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { PaymentStatus } from './payments/state-machine.js';

export const DEFAULT_TASK_QUEUE = 'creditflow';

/** Workflow ids are business ids, so a retried request finds the same workflow. */
export const workflowIds = {
  adjustment: (adjustmentId: string) => `adjustment-${adjustmentId}`,
  verification: (verificationId: string) => `verification-${verificationId}`,
  order: (orderId: string) => `order-${orderId}`,
  checkout: (paymentId: string) => `checkout-${paymentId}`,
  refund: (refundId: string) => `refund-${refundId}`,
  /** One workflow per payment takes back what Stripe reports refunded (charge.refunded). */
  stripeRefund: (paymentId: string) => `refund-stripe-${paymentId}`,
  /** One workflow per Stripe dispute, from opened to closed. */
  dispute: (disputeId: string) => `refund-dispute-${disputeId}`,
  reconciliation: (runId: string) => `reconciliation-${runId}`,
  /** One auto top-up run at a time per customer works through its requested charges. */
  autoTopup: (customerId: string) => `auto-topup-${customerId}`,
  /** One lifecycle per grant: posting (admin grants), then its expiry or void. */
  grant: (grantId: string) => `grant-${grantId}`,
};

/** Temporal Schedules the worker keeps in place at start. */
export const scheduleIds = {
  reconciliationDaily: 'reconciliation-daily',
  reconciliationSweep: 'reconciliation-sweep',
};

/** Search attributes operators filter on in the Temporal UI. */
export const searchAttributes = {
  customerId: defineSearchAttributeKey('CustomerId', SearchAttributeType.KEYWORD),
  flowStatus: defineSearchAttributeKey('FlowStatus', SearchAttributeType.KEYWORD),
};

/** Registration for the dev server's --search-attribute flags (name=Type). */
export const SEARCH_ATTRIBUTE_REGISTRATION: Record<string, string> = {
  CustomerId: 'Keyword',
  FlowStatus: 'Keyword',
};

/** ApplicationFailure types that mean "the request was refused", never retried. */
export const BUSINESS_FAILURE_TYPES = [
  'insufficient_credits',
  'idempotency_conflict',
  'customer_not_found',
  'account_not_found',
  'invalid_posting',
  'provider_refused',
  'verification_closed',
  'items_unavailable',
  'stripe_request_refused',
  'payment_not_found',
  'refund_refused',
  'credits_already_spent',
] as const;

export interface AdjustmentInput {
  adjustmentId: string;
  customerId: string;
  /** Signed credits: positive credits the wallet, negative debits it. */
  amount: number;
  reason: string;
  requestedBy: string;
  /** The category of the grant a credit creates (paid when absent); a debit ignores it. */
  category?: 'paid' | 'promotional';
}

export type AdjustmentStatus = 'pending' | 'completed' | 'rejected';

export interface AdjustmentState {
  id: string;
  workflowId: string;
  customerId: string;
  amount: number;
  reason: string;
  requestedBy: string;
  /** Of a credit: the category of the grant it creates. */
  category?: 'paid' | 'promotional';
  status: AdjustmentStatus;
  entryId: number | null;
  /** A number while it is a safe integer, else the exact decimal string (read model only). */
  balanceAfter: number | string | null;
  error: { code: string; message: string } | null;
  createdAt: string;
  updatedAt: string;
}

export const adjustmentStateQuery = defineQuery<AdjustmentState>('state');

/** Where a grant's lifecycle workflow is: posting it, open (waiting for expiry or a void), closed. */
export type GrantFlowStatus = 'pending' | 'open' | 'expired' | 'voided' | 'rejected';

/** An operator's request to remove what is left of a grant. */
export interface VoidGrantRequest {
  reason: string;
  requestedBy: string;
}

/** What the grant workflow answers to its state query. */
export interface GrantFlowState {
  grantId: string;
  customerId: string;
  workflowId: string;
  status: GrantFlowStatus;
  expiresAt: string | null;
  /** The entry that posted the grant (admin grants), once posted. */
  entryId: number | null;
  /** Credits its expiry or void moved to breakage, once closed. */
  closedCredits: number | null;
  voidRequested: VoidGrantRequest | null;
  error: { code: string; message: string } | null;
}

export const grantStateQuery = defineQuery<GrantFlowState>('state');
/** Void the grant: whatever is left goes to breakage (signal-with-start `grant-<id>`). */
export const voidGrantSignal = defineSignal<[VoidGrantRequest]>('void');

export interface VerificationInput {
  verificationId: string;
  customerId: string;
  service: string;
  country: string;
  /** Credits, fixed from the price table when the purchase was requested. */
  price: number;
  timeoutSeconds: number;
}

export type VerificationStatus = 'pending' | 'active' | 'completed' | 'refunded' | 'failed';
export type RefundReason = 'timeout' | 'cancelled' | 'provider_failed' | 'invalid_code';

export interface VerificationState {
  id: string;
  workflowId: string;
  customerId: string;
  status: VerificationStatus;
  service: string;
  country: string;
  price: number;
  timeoutSeconds: number;
  phoneNumber: string | null;
  code: string | null;
  refundReason: RefundReason | null;
  error: { code: string; message: string } | null;
  createdAt: string;
  updatedAt: string;
}

export const verificationStateQuery = defineQuery<VerificationState>('state');
/** The SMS provider delivered a code (from its webhook). */
export const codeReceivedSignal = defineSignal<[{ code: string }]>('codeReceived');
/** The customer cancels; answers the final state once the refund is done. */
export const cancelVerificationUpdate = defineUpdate<VerificationState>('cancel');
/** Answers once the debit is settled (or refused), so the API can answer the POST with it. */
export const debitSettledUpdate = defineUpdate<VerificationState>('debitSettled');

export interface OrderInput {
  orderId: string;
  buyerId: string;
  /** The cart: distinct item ids, in the order the buyer listed them. */
  itemIds: string[];
}

export type OrderStatus = 'processing' | 'completed' | 'partially_completed' | 'failed';

/** Where a running order is; `done` once it has an outcome. */
export type OrderStep = 'validating' | 'charging' | 'transferring' | 'refunding' | 'done';

/** Why one item of a cart was not bought. */
export type OrderItemFailureReason =
  | 'item_not_found'
  | 'item_withdrawn'
  | 'item_sold'
  | 'own_item'
  | 'seller_unavailable'
  | 'duplicate_item'
  | 'item_changed'
  /** The ledger refused the sale outright (a final error, logged); the price was refunded. */
  | 'transfer_failed';

export interface OrderState {
  id: string;
  workflowId: string;
  buyerId: string;
  itemIds: string[];
  status: OrderStatus;
  step: OrderStep;
  purchased: string[];
  failed: Array<{ itemId: string; reason: OrderItemFailureReason }>;
  /** Credits taken from the wallet by the order's one debit. */
  charged: number;
  /** Credits given back for the items that could not be transferred. */
  refunded: number;
  error: { code: string; message: string } | null;
  createdAt: string;
  updatedAt: string;
}

export const orderStateQuery = defineQuery<OrderState>('state');

/** A credit-pack purchase through Stripe Checkout; the payment id names the workflow. */
export interface CheckoutInput {
  paymentId: string;
  customerId: string;
  pack: string;
  credits: number;
  /** Minor units of `currency`. */
  amount: number;
  currency: string;
  /** How long the customer has to pay; the Stripe session expires then and the wait ends. */
  expiresInSeconds: number;
  /**
   * `api`: a new purchase (creates the Stripe session). `webhook`: Stripe reported on a payment
   * whose workflow had already closed (late payment); never creates a session.
   */
  startedBy: 'api' | 'webhook';
  /** Keep the card for auto top-up (Stripe setup_future_usage: off_session). */
  saveCard?: boolean;
}

export type CheckoutStatus = PaymentStatus;

/** What a verified Stripe event means for a checkout, as the webhook hands it to the workflow. */
export interface StripeOutcome {
  eventId: string;
  eventType: string;
  /** paid: credit it; processing: paid by a slow method, wait on; failed / expired: give up. */
  kind: 'paid' | 'processing' | 'failed' | 'expired';
  sessionId: string | null;
  paymentIntentId: string | null;
}

export interface CheckoutState {
  id: string;
  workflowId: string;
  customerId: string;
  pack: string;
  credits: number;
  amount: number;
  currency: string;
  status: CheckoutStatus;
  checkoutUrl: string | null;
  sessionId: string | null;
  paymentIntentId: string | null;
  entryId: number | null;
  balanceAfter: number | null;
  error: { code: string; message: string } | null;
  createdAt: string;
  updatedAt: string;
}

export const checkoutStateQuery = defineQuery<CheckoutState>('state');
/** Answers once the Stripe session exists (or the checkout ended), so the API needs no polling. */
export const checkoutSessionUpdate = defineUpdate<CheckoutState>('checkoutSession');
export const stripeOutcomeSignal = defineSignal<[StripeOutcome]>('stripeOutcome');

/**
 * What a refund workflow does: give back a top-up's money (`topup`, from the API), take back what
 * a refund made at Stripe returned (`stripe`), follow a dispute (`dispute`), or credit back a
 * purchase as goodwill (`verification`, `order`).
 */
export type RefundKind = 'topup' | 'stripe' | 'dispute' | 'verification' | 'order';

export type RefundStatus = 'pending' | 'processing' | 'refunded' | 'rejected' | 'failed';

export interface RefundInput {
  refundId: string;
  kind: RefundKind;
  customerId: string;
  paymentId?: string | null;
  verificationId?: string | null;
  orderId?: string | null;
  itemId?: string | null;
  /** Credits asked for; absent means all that can be refunded. */
  credits?: number | null;
  reason: string;
  /** `customer:<id>`, `admin:<sub>`, `stripe` or `reconciliation:<run>`. */
  requestedBy: string;
  startedBy: 'api' | 'webhook' | 'reconciliation';
}

export interface RefundState {
  id: string;
  workflowId: string;
  kind: RefundKind;
  customerId: string;
  paymentId: string | null;
  verificationId: string | null;
  orderId: string | null;
  itemId: string | null;
  status: RefundStatus;
  credits: number;
  /** Money back in minor units of `currency` (top-ups); 0 for a purchase refund. */
  amount: number;
  currency: string | null;
  /** Credits the wallet no longer held, recorded as the customer's debt. */
  debtCredits: number;
  reason: string;
  error: { code: string; message: string } | null;
  createdAt: string;
  updatedAt: string;
}

/** A refund's state before any step has run, from what it was started with. */
export function refundStateFromInput(
  input: RefundInput,
  at: { workflowId: string; status: RefundStatus; createdAt: string; updatedAt: string },
): RefundState {
  return {
    id: input.refundId,
    workflowId: at.workflowId,
    kind: input.kind,
    customerId: input.customerId,
    paymentId: input.paymentId ?? null,
    verificationId: input.verificationId ?? null,
    orderId: input.orderId ?? null,
    itemId: input.itemId ?? null,
    status: at.status,
    credits: input.credits ?? 0,
    amount: 0,
    currency: null,
    debtCredits: 0,
    reason: input.reason,
    error: null,
    createdAt: at.createdAt,
    updatedAt: at.updatedAt,
  };
}

export const refundStateQuery = defineQuery<RefundState>('state');
/** Answers once the refund is accepted (or refused), so the API can answer the POST with it. */
export const refundDecidedUpdate = defineUpdate<RefundState>('refundDecided');

/** Stripe reported a refund on a charge of ours (charge.refunded), or reconciliation found one. */
export interface StripeRefundReport {
  /** The Stripe event id, or `reconciliation:<finding key>`: the workflow drops repeats. */
  eventId: string;
  paymentId: string;
  paymentIntentId: string;
  /** Cumulative money refunded on the charge, as Stripe reported it (minor units). */
  amountRefunded: number;
}
export const stripeRefundSignal = defineSignal<[StripeRefundReport]>('stripeRefund');

/** Stripe reported a dispute opened, updated or closed (charge.dispute.*). */
export interface DisputeReport {
  eventId: string;
  eventType: string;
  disputeId: string;
  paymentId: string;
  paymentIntentId: string;
  /** Disputed money, minor units. */
  amount: number;
  currency: string;
  /** Stripe's dispute status: needs_response, under_review, won, lost, … */
  status: string;
  reason: string | null;
}
export const disputeSignal = defineSignal<[DisputeReport]>('dispute');

export interface ReconciliationInput {
  runId: string;
  trigger: 'schedule' | 'sweep' | 'manual';
  /** ISO instants; absent: the schedule's default window ending now. */
  from?: string | null;
  to?: string | null;
  /** Set by continue-as-new: where the previous run of a long window stopped. */
  resume?: Record<string, unknown> | null;
  /** Scheduled runs: the minutes their window covers back from the schedule's action time. */
  windowMinutes?: number | null;
  /** The sweep's canary purchase, in credits; 0 or absent: no canary. */
  canaryCredits?: number | null;
  /** Only these customers' payments and flows (a targeted re-check, and tests); absent: all. */
  customerIds?: string[] | null;
}

/** Counts and sums of one finding kind in a reconciliation report. */
export interface ReconciliationCategory {
  count: number;
  /** Money (minor units) or credits the findings are about, summed per currency ("credits"). */
  sums: Record<string, number>;
  repaired: number;
  flagged: number;
}

/** What a reconciliation run stores as its summary, and the API answers. */
export interface ReconciliationSummary {
  /** Stripe objects and payments that agreed. */
  matched: number;
  /** Stripe objects read per list (sessions, payment intents, refunds, disputes). */
  listed: Record<string, number>;
  categories: Record<string, ReconciliationCategory>;
  /** The instants the run looked up to: Stripe's listing end and the database cut-off. */
  cutoffs: { stripe: string | null; database: string | null };
  chunks: { done: number; total: number };
  /** How many times the run continued as new. */
  continuedAsNew: number;
  ledger: { ok: boolean | null; violations: number };
  canary: { status: 'passed' | 'failed' | 'late' | 'skipped'; detail: string | null } | null;
}
