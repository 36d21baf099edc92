// refund (topup): gives a top-up's money back through Stripe after taking its credits back.
// Credits first, money second: a customer can never spend credits whose money is on its way back.
// If Stripe refuses for good, the credits go back to the wallet (compensation) and the refund fails.
import { CancellationScope, log, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import type { RefundInput, RefundState } from '../../shared.js';
import {
  DB_STEP_START_TO_CLOSE_MS,
  HEARTBEAT_TIMEOUT_MS,
  STRIPE_STEP_START_TO_CLOSE_MS,
} from '../timeouts.js';
import { refundLifecycle, refusedBy, type RefundLifecycle } from './lifecycle.js';

const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' };

const { prepareTopupRefund, clawBackTopupRefund, closeTopupClawback, recreditTopupRefund } =
  proxyActivities<Activities>({
    startToCloseTimeout: DB_STEP_START_TO_CLOSE_MS,
    heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
    retry,
  });

// Transient Stripe errors (an outage, a timeout) retry with the same idempotency key.
const { refundTopupAtStripe } = proxyActivities<Activities>({
  startToCloseTimeout: STRIPE_STEP_START_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  retry,
});

/** Refund kind `topup`: gives a top-up's money back through Stripe after taking its credits back. */
export async function topupRefund(input: RefundInput): Promise<RefundState> {
  const flow = refundLifecycle(input);
  const { state } = flow;
  log.info('top-up refund started', { refundId: input.refundId, paymentId: input.paymentId });
  await flow.enter('pending');

  let plan;
  try {
    plan = await prepareTopupRefund(input);
  } catch (err) {
    return flow.finish('rejected', refusedBy(err));
  }
  Object.assign(state, { credits: plan.credits, amount: plan.amount, currency: plan.currency });

  // From the claw-back on, credits and money are moving: an operator's cancel must not leave
  // credits taken without a refund, so the rest always runs to its end.
  return CancellationScope.nonCancellable(async () => {
    const clawed = await clawBack(flow, input);
    if (!clawed) return state;
    await flow.enter('processing', { amount: clawed.amount, currency: clawed.currency });

    try {
      const refund = await refundTopupAtStripe({
        refundId: input.refundId,
        workflowId: state.workflowId,
        paymentIntentId: plan.paymentIntentId,
        amount: state.amount,
      });
      log.info('top-up refund done', { refundId: input.refundId, stripe: refund.stripeRefundId });
      return flow.finish('refunded', null, { stripeRefundId: refund.stripeRefundId });
    } catch (err) {
      const error = refusedBy(err);
      await recredit(flow, input);
      return flow.finish('failed', error);
    }
  });
}

/**
 * Takes the credits back. Refused (spent meanwhile, or another refund took what was left): the
 * claw-back's fence is closed, so a slow earlier attempt cannot post it later, and the refund ends
 * rejected; answers undefined then.
 */
async function clawBack(flow: RefundLifecycle, input: RefundInput) {
  const { state } = flow;
  const step = {
    refundId: input.refundId,
    workflowId: state.workflowId,
    paymentId: input.paymentId ?? '',
    customerId: input.customerId,
    credits: state.credits,
  };
  try {
    return await clawBackTopupRefund(step);
  } catch (err) {
    const error = refusedBy(err);
    const closed = await closeTopupClawback({ workflowId: state.workflowId });
    // An earlier attempt did post it: carry on as the claw-back that happened.
    if (closed.posted) return clawBackTopupRefund(step);
    await flow.finish('rejected', error);
    return undefined;
  }
}

/** Compensation: Stripe refused for good, so the credits taken back go back to the wallet. */
async function recredit(flow: RefundLifecycle, input: RefundInput): Promise<void> {
  const { state } = flow;
  await recreditTopupRefund({
    refundId: input.refundId,
    workflowId: state.workflowId,
    paymentId: input.paymentId ?? '',
    customerId: input.customerId,
    credits: state.credits,
    amount: state.amount,
  });
}
