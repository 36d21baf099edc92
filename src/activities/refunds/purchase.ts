// Refund activities (purchase).
import type { RefundActivityDeps } from './deps.js';

/** Activities of this kind that must finish whatever the error (compensations). */
export const PURCHASE_REFUND_MUST_FINISH: readonly string[] = [];

export function createPurchaseRefundActivities(_deps: RefundActivityDeps) {
  return {};
}
