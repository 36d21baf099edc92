// Refund activities (topup).
import type { RefundActivityDeps } from './deps.js';

/** Activities of this kind that must finish whatever the error (compensations). */
export const TOPUP_REFUND_MUST_FINISH: readonly string[] = [];

export function createTopupRefundActivities(_deps: RefundActivityDeps) {
  return {};
}
