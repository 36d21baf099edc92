// Refund activities (stripe).
import type { RefundActivityDeps } from './deps.js';

/** Activities of this kind that must finish whatever the error (compensations). */
export const STRIPE_REFUND_MUST_FINISH: readonly string[] = [];

export function createStripeRefundActivities(_deps: RefundActivityDeps) {
  return {};
}
