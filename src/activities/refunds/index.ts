// Refund activities, by kind: top-up refunds, purchase refunds, refunds made at Stripe, disputes.
import type { RefundActivityDeps } from './deps.js';
import { DISPUTE_MUST_FINISH, createDisputeActivities } from './dispute.js';
import { PURCHASE_REFUND_MUST_FINISH, createPurchaseRefundActivities } from './purchase.js';
import { STRIPE_REFUND_MUST_FINISH, createStripeRefundActivities } from './stripe.js';
import { TOPUP_REFUND_MUST_FINISH, createTopupRefundActivities } from './topup.js';

export type { RefundActivityDeps } from './deps.js';

/** Refund steps that must eventually happen whatever the error (compensations). */
export const REFUND_MUST_FINISH: readonly string[] = [
  ...TOPUP_REFUND_MUST_FINISH,
  ...PURCHASE_REFUND_MUST_FINISH,
  ...STRIPE_REFUND_MUST_FINISH,
  ...DISPUTE_MUST_FINISH,
];

export function createRefundActivities(deps: RefundActivityDeps) {
  return {
    ...createTopupRefundActivities(deps),
    ...createPurchaseRefundActivities(deps),
    ...createStripeRefundActivities(deps),
    ...createDisputeActivities(deps),
  };
}
