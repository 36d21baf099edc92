// refund (purchase): credits back a verification or an order (item) as an operator's goodwill,
// up to what was paid for it and never twice.
import { CancellationScope, log, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import type { RefundInput, RefundState } from '../../shared.js';
import { DB_STEP_START_TO_CLOSE_MS, HEARTBEAT_TIMEOUT_MS } from '../timeouts.js';
import { refundLifecycle, refusedBy } from './lifecycle.js';

const { preparePurchaseRefund, creditPurchaseRefund } = proxyActivities<Activities>({
  startToCloseTimeout: DB_STEP_START_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** Refund kinds `verification` and `order`: an operator's goodwill credit for a purchase. */
export async function purchaseRefund(input: RefundInput): Promise<RefundState> {
  const flow = refundLifecycle(input);
  const { state } = flow;
  log.info('purchase refund started', {
    refundId: input.refundId,
    verificationId: input.verificationId,
    orderId: input.orderId,
    itemId: input.itemId,
  });
  await flow.enter('pending', { currency: null, amount: 0 });

  let plan;
  try {
    plan = await preparePurchaseRefund(input);
  } catch (err) {
    return flow.finish('rejected', refusedBy(err));
  }
  state.credits = plan.credits;

  // One posting: it either credits the wallet or refuses, so there is nothing to compensate.
  return CancellationScope.nonCancellable(async () => {
    try {
      await creditPurchaseRefund({
        refundId: input.refundId,
        workflowId: state.workflowId,
        customerId: plan.customerId,
        credits: plan.credits,
        verificationId: input.verificationId ?? null,
        orderId: input.orderId ?? null,
        itemId: input.itemId ?? null,
      });
    } catch (err) {
      return flow.finish('rejected', refusedBy(err));
    }
    return flow.finish('refunded');
  });
}
