// Refund activities (dispute).
import type { RefundActivityDeps } from './deps.js';

/** Activities of this kind that must finish whatever the error (compensations). */
export const DISPUTE_MUST_FINISH: readonly string[] = [];

export function createDisputeActivities(_deps: RefundActivityDeps) {
  return {};
}
