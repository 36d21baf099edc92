// The contract both sides of Temporal share: ids, queries, search attributes, failure types.
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { PaymentStatus } from './payments/state-machine.js';

export const DEFAULT_TASK_QUEUE = 'creditflow';

/** Workflow ids are business ids, so a retried request finds the same workflow. */
export const workflowIds = {
  adjustment: (adjustmentId: string) => `adjustment-${adjustmentId}`,
  checkout: (paymentId: string) => `checkout-${paymentId}`,
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
  'stripe_request_refused',
  'payment_not_found',
] as const;

export interface AdjustmentInput {
  adjustmentId: string;
  customerId: string;
  /** Signed credits: positive credits the wallet, negative debits it. */
  amount: number;
  reason: string;
  requestedBy: string;
}

export type AdjustmentStatus = 'pending' | 'completed' | 'rejected';

export interface AdjustmentState {
  id: string;
  workflowId: string;
  customerId: string;
  amount: number;
  reason: string;
  requestedBy: string;
  status: AdjustmentStatus;
  entryId: number | null;
  balanceAfter: number | null;
  error: { code: string; message: string } | null;
  createdAt: string;
  updatedAt: string;
}

export const adjustmentStateQuery = defineQuery<AdjustmentState>('state');

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
