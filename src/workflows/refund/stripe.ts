// refund (stripe): takes back the credits of what Stripe reports refunded (charge.refunded).
import {
  allHandlersFinished,
  condition,
  log,
  proxyActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import type {
  StripeRefundTakenBack,
  StripeRefundToTakeBack,
} from '../../activities/refunds/stripe.js';
import {
  searchAttributes,
  stripeRefundSignal,
  type RefundInput,
  type RefundState,
  type StripeRefundReport,
} from '../../shared.js';
import {
  DB_STEP_START_TO_CLOSE_MS,
  HEARTBEAT_TIMEOUT_MS,
  STRIPE_STEP_START_TO_CLOSE_MS,
} from '../timeouts.js';
import { refundState } from './state.js';

const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' };

const { listStripeRefundsToTakeBack } = proxyActivities<Activities>({
  // Every page is a Stripe call; the heartbeat carries the cursor between attempts.
  startToCloseTimeout: 5 * STRIPE_STEP_START_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  retry,
});
const { takeBackStripeRefund } = proxyActivities<Activities>({
  startToCloseTimeout: DB_STEP_START_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  retry,
});

/**
 * How long a run waits for another report after handling the last one. A later event starts a
 * new run (signal-with-start), so this only saves starting one for a burst of events.
 */
export const STRIPE_REFUND_IDLE_WAIT = '1 minute';

/**
 * Refund kind `stripe`: takes back the credits of what Stripe reports refunded (charge.refunded).
 * Each report makes it list the payment intent's refunds at Stripe (the report's amount is only a
 * hint: Stripe's list is the truth) and take back each refund not already taken back, once per
 * Stripe refund id; so duplicated, reordered or repaired reports all converge.
 */
export async function stripeRefund(input: RefundInput): Promise<RefundState> {
  const state = refundState(input);
  const { workflowId } = workflowInfo();
  const reports: StripeRefundReport[] = [];
  const seen = new Set<string>();
  setHandler(stripeRefundSignal, (report) => {
    if (seen.has(report.eventId)) return; // a repeated delivery of an event already handled
    seen.add(report.eventId);
    reports.push(report);
  });

  const takenBack = new Map<string, StripeRefundTakenBack>();
  state.status = 'processing';
  state.updatedAt = new Date().toISOString();
  for (;;) {
    if (reports.length === 0) {
      const more = await condition(() => reports.length > 0, STRIPE_REFUND_IDLE_WAIT);
      if (!more) break;
    }
    const batch = reports.splice(0);
    const report = batch[batch.length - 1]!;
    const hinted = Math.max(...batch.map((r) => r.amountRefunded));
    const refunds = await listRefunds(input, report, hinted);
    for (const refund of refunds) {
      const result = await takeBack(input, workflowId, refund);
      takenBack.set(refund.id, result);
    }
    summarise(state, takenBack, refunds);
  }
  await condition(allHandlersFinished);
  state.status = 'refunded';
  state.updatedAt = new Date().toISOString();
  upsertSearchAttributes([{ key: searchAttributes.flowStatus, value: 'refunded' }]);
  return state;
}

/** How often, and how far apart, a list that shows less than the event said is read again. */
const LAGGING_LIST_RETRIES = 3;
const LAGGING_LIST_PAUSE = '10 seconds';

/**
 * Lists the refunds at Stripe that this payment's credits answer for. The event's cumulative
 * amount is only a hint: a list that shows less is read again a few times (Stripe's lists can
 * lag behind its events), and then trusted whatever it says.
 */
async function listRefunds(input: RefundInput, report: StripeRefundReport, hinted: number) {
  for (let attempt = 0; ; attempt++) {
    const listed = await listStripeRefundsToTakeBack({
      paymentId: input.paymentId ?? report.paymentId,
      paymentIntentId: report.paymentIntentId,
    });
    if (listed.succeededAmount >= hinted || attempt >= LAGGING_LIST_RETRIES) {
      if (listed.succeededAmount !== hinted) {
        log.info('stripe lists another refunded amount than the event said; the list wins', {
          hinted,
          listed: listed.succeededAmount,
        });
      }
      return listed.toTakeBack;
    }
    await sleep(LAGGING_LIST_PAUSE);
  }
}

/** Takes back one Stripe refund's share of the credits (once, by its Stripe id). */
function takeBack(input: RefundInput, workflowId: string, refund: StripeRefundToTakeBack) {
  return takeBackStripeRefund({
    paymentId: input.paymentId!,
    workflowId,
    refund,
  });
}

/** The state shows every Stripe refund of the payment taken back so far. */
function summarise(
  state: RefundState,
  takenBack: Map<string, StripeRefundTakenBack>,
  refunds: StripeRefundToTakeBack[],
) {
  state.credits = [...takenBack.values()].reduce((sum, r) => sum + r.credits, 0);
  state.debtCredits = [...takenBack.values()].reduce((sum, r) => sum + r.debtCredits, 0);
  state.amount = refunds.reduce((sum, r) => sum + r.amount, 0);
  state.currency = refunds[0]?.currency ?? state.currency;
  state.updatedAt = new Date().toISOString();
}
