// autoTopup: one run at a time per customer (id `auto-topup-<customer>`) works through the
// customer's requested charges: cap, off-session charge, credit, or a recorded and paused failure.
import { log, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type {
  AutoTopupCharge,
  AutoTopupChargeOutcome,
  NextAutoTopupCharge,
} from '../activities/auto-topup.js';
import { watchGrantExpiry } from './grant.js';
import {
  DB_STEP_START_TO_CLOSE_MS,
  HEARTBEAT_TIMEOUT_MS,
  STRIPE_STEP_START_TO_CLOSE_MS,
} from './timeouts.js';

export interface AutoTopupInput {
  customerId: string;
}

export interface AutoTopupResult {
  customerId: string;
  charges: AutoTopupChargeOutcome[];
}

/** Charges one run handles; the dispatcher starts another run for any left requested. */
const MAX_CHARGES_PER_RUN = 20;

const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' };

// Transient failures (database, Stripe outage) retry; the charge's idempotency key makes a
// repeated Stripe call answer the first charge. Declines come back as outcomes, never retried.
const { nextAutoTopupCharge, creditAutoTopup, recordAutoTopupFailure } =
  proxyActivities<Activities>({
    startToCloseTimeout: DB_STEP_START_TO_CLOSE_MS,
    heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
    retry,
  });
const { chargeAutoTopup } = proxyActivities<Activities>({
  startToCloseTimeout: STRIPE_STEP_START_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  retry,
});

/** Charges the customer's requested auto top-ups one by one, oldest crossing first. */
export async function autoTopup(input: AutoTopupInput): Promise<AutoTopupResult> {
  const { workflowId } = workflowInfo();
  const charges: AutoTopupChargeOutcome[] = [];
  for (let i = 0; i < MAX_CHARGES_PER_RUN; i++) {
    const next = await nextAutoTopupCharge({ customerId: input.customerId, workflowId });
    if (!next) break;
    charges.push(await settle(next, workflowId));
  }
  return { customerId: input.customerId, charges };
}

/** One charge to its end: skipped as decided, or charged and then credited or recorded failed. */
async function settle(next: NextAutoTopupCharge, workflowId: string) {
  if (next.action === 'skipped') {
    return outcome(next.charge, next.status as AutoTopupChargeOutcome['status'], next.reason);
  }
  const { charge } = next;
  const answer = await chargeAutoTopup({
    charge,
    stripeCustomerId: next.stripeCustomerId,
    paymentMethodId: next.paymentMethodId,
    workflowId,
  });
  if (answer.outcome === 'succeeded') {
    return credit(charge, answer.paymentIntentId, workflowId);
  }
  log.warn('auto top-up charge not taken', { chargeId: charge.id, code: answer.code });
  await recordAutoTopupFailure({
    chargeId: charge.id,
    status: answer.outcome,
    code: answer.code,
    message: answer.message,
    paymentIntentId: 'paymentIntentId' in answer ? answer.paymentIntentId : null,
  });
  return outcome(charge, answer.outcome, answer.code);
}

/** The money is taken: credit the grant, and start its expiry when the pack's credits expire. */
async function credit(charge: AutoTopupCharge, paymentIntentId: string, workflowId: string) {
  const credited = await creditAutoTopup({ chargeId: charge.id, paymentIntentId, workflowId });
  if (credited.grantId && credited.expiresAt) {
    await watchGrantExpiry(credited.grantId, charge.customerId, credited.expiresAt);
  }
  return { ...outcome(charge, 'succeeded', null), grantId: credited.grantId };
}

function outcome(
  charge: AutoTopupCharge,
  status: AutoTopupChargeOutcome['status'],
  code: string | null,
): AutoTopupChargeOutcome {
  return { chargeId: charge.id, status, code, grantId: null };
}
