// checkout: a credit-pack purchase through Stripe Checkout, from the payment record to the credit.
import {
  CancellationScope,
  allHandlersFinished,
  condition,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { PaymentRecord } from '../activities/checkout.js';
import {
  checkoutSessionUpdate,
  checkoutStateQuery,
  searchAttributes,
  stripeOutcomeSignal,
  type CheckoutInput,
  type CheckoutState,
  type CheckoutStatus,
  type StripeOutcome,
} from '../shared.js';
import { businessFailure } from './failures.js';
import { watchGrantExpiry } from './grant.js';
import { HEARTBEAT_TIMEOUT_MS, STRIPE_STEP_START_TO_CLOSE_MS } from './timeouts.js';

const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' };

// Infrastructure failures retry until they succeed; business refusals are non-retryable.
const {
  recordPayment,
  openCheckoutSession,
  expireCheckoutSession,
  markPaymentPaid,
  settleUnpaidPayment,
  creditTopup,
  notify,
} = proxyActivities<Activities>({
  startToCloseTimeout: STRIPE_STEP_START_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  retry,
});

// Saving the card is a convenience for auto top-up: a few tries, then the checkout ends anyway.
const { saveCheckoutCard } = proxyActivities<Activities>({
  startToCloseTimeout: STRIPE_STEP_START_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  retry: { ...retry, maximumAttempts: 5 },
});

/** How long the update that hands the API the checkout URL waits for the session. */
const SESSION_WAIT = '1 minute';
/** A session paid by a slow method (bank debit) settles within days, not the session's expiry. */
const ASYNC_PAYMENT_WAIT_MS = 14 * 24 * 60 * 60 * 1000;

/** Patch: compensations run in a non-cancellable scope, and an operator's cancel expires the session. */
const SHIELD_COMPENSATIONS = 'checkout-compensation-non-cancellable';
/** Patch: a saveCard checkout stores the card for auto top-up once it is credited. */
const SAVE_CARD = 'checkout-save-card';

const FINAL: readonly CheckoutStatus[] = [
  'credited',
  'refunded',
  'chargeback',
  'expired',
  'failed',
];

/**
 * Sells one credit pack: records the payment, opens a Stripe Checkout Session, waits for Stripe's
 * verdict (signals from the webhook) and credits the wallet once; expires the session when nobody
 * pays in time. Also started by the webhook for a payment reported after the first run closed.
 */
export async function checkout(input: CheckoutInput): Promise<CheckoutState> {
  const { workflowId, startTime } = workflowInfo();
  const state: CheckoutState = {
    id: input.paymentId,
    workflowId,
    customerId: input.customerId,
    pack: input.pack,
    credits: input.credits,
    amount: input.amount,
    currency: input.currency,
    status: 'init',
    checkoutUrl: null,
    sessionId: null,
    paymentIntentId: null,
    entryId: null,
    balanceAfter: null,
    error: null,
    createdAt: startTime.toISOString(),
    updatedAt: startTime.toISOString(),
  };
  const outcomes: StripeOutcome[] = [];
  const seenEvents = new Set<string>();
  let ended = false;

  setHandler(checkoutStateQuery, () => state);
  setHandler(stripeOutcomeSignal, (outcome) => {
    // Stripe delivers at least once; a redelivered event changes nothing.
    if (seenEvents.has(outcome.eventId)) return;
    seenEvents.add(outcome.eventId);
    outcomes.push(outcome);
  });
  setHandler(checkoutSessionUpdate, async () => {
    await condition(() => state.checkoutUrl !== null || ended, SESSION_WAIT);
    return state;
  });

  const move = (status: CheckoutStatus) => {
    if (state.status === status) return;
    state.status = status;
    state.updatedAt = new Date().toISOString();
    upsertSearchAttributes([{ key: searchAttributes.flowStatus, value: status }]);
  };
  const apply = (payment: PaymentRecord) => {
    // The payment row is the truth (a later run may find it further along than its input says).
    state.credits = payment.credits;
    state.amount = payment.amount;
    state.currency = payment.currency;
    state.pack = payment.pack;
    state.sessionId = payment.sessionId;
    state.checkoutUrl = payment.checkoutUrl;
    state.paymentIntentId = payment.paymentIntentId;
    state.entryId = payment.topupEntryId;
    state.createdAt = payment.createdAt;
    move(payment.status);
  };

  apply(await recordPayment({ ...input, workflowId }));

  const credit = async (outcome: StripeOutcome) => {
    const paid = await markPaymentPaid({
      paymentId: input.paymentId,
      paymentIntentId: outcome.paymentIntentId,
      cause: outcome.eventId,
    });
    if (paid.outcome === 'refused' || paid.outcome === 'not_found') {
      // Already credited (a duplicate report of the same payment) or refunded: nothing to do.
      if (paid.from) move(paid.from);
      return;
    }
    move('paid');
    const topup = await creditTopup({ paymentId: input.paymentId, workflowId });
    if (!topup.credited) return;
    state.entryId = topup.entryId;
    state.paymentIntentId = state.paymentIntentId ?? outcome.paymentIntentId;
    if (topup.balanceAfter !== null) state.balanceAfter = topup.balanceAfter;
    move(topup.status);
    // A pack whose credits expire: the grant's own workflow expires them on time (runs started
    // before grants existed credited no such grant).
    if (topup.grantId && topup.expiresAt && patched('topup-grant-expiry')) {
      await watchGrantExpiry(topup.grantId, state.customerId, topup.expiresAt);
    }
    if (input.saveCard && patched(SAVE_CARD)) await saveCard();
    // Histories recorded before the outbox notify here; new runs queue it with the top-up entry.
    if (patched('notifications-outbox')) return;
    await notify({
      idempotencyKey: `${workflowId}:notify-credited`,
      customerId: state.customerId,
      kind: 'credits_added',
      title: 'Credits added',
      body: `${state.credits} credits from your ${state.pack} pack are in your wallet.`,
      amount: state.credits,
      ...(topup.balanceAfter !== null ? { balanceAfter: topup.balanceAfter } : {}),
      data: { paymentId: input.paymentId },
    });
  };

  /** Keeps the card for auto top-up; a card that cannot be saved never holds up the credit. */
  const saveCard = async () => {
    try {
      await saveCheckoutCard({ paymentId: input.paymentId });
    } catch (err) {
      log.warn('card not saved for auto top-up', { paymentId: input.paymentId, err });
    }
  };

  const giveUp = async (to: 'expired' | 'failed', cause: string) => {
    const settled = await settleUnpaidPayment({ paymentId: input.paymentId, to, cause });
    if (settled.from) move(settled.outcome === 'refused' ? settled.from : to);
  };

  /**
   * Compensation when nobody paid in time or an operator cancelled: expire the session at Stripe
   * so nobody can pay now. Answers the payment Stripe reports if it was paid just before.
   */
  const expireSession = async (): Promise<StripeOutcome | undefined> => {
    if (!state.sessionId) return undefined;
    const session = await expireCheckoutSession({ sessionId: state.sessionId, workflowId });
    if (session.status === 'complete' && session.paymentStatus === 'paid') {
      // Paid just before the expiry reached Stripe, and the webhook is not here yet.
      return {
        eventId: `expire:${session.id}`,
        eventType: 'checkout.session.expire',
        kind: 'paid',
        sessionId: session.id,
        paymentIntentId: session.paymentIntentId,
      };
    }
    return undefined;
  };
  /**
   * An operator cancelled: the session must not stay payable, and a payment Stripe took just
   * before is credited, never dropped.
   */
  const settleOnCancel = async () => {
    if (FINAL.includes(state.status)) return;
    const paidMeanwhile = await expireSession();
    if (paidMeanwhile) outcomes.push(paidMeanwhile);
    for (const outcome of outcomes.splice(0)) {
      if (outcome.kind === 'paid') await credit(outcome);
    }
    if (!FINAL.includes(state.status)) await giveUp('expired', 'cancelled');
  };

  const decided = () => outcomes.some((o) => o.kind !== 'processing');
  if (input.startedBy === 'api' && state.status === 'init' && !state.sessionId && !decided()) {
    const expiresAt = Math.floor(startTime.getTime() / 1000) + input.expiresInSeconds;
    const session = {
      paymentId: input.paymentId,
      workflowId,
      expiresAt,
      ...(input.saveCard ? { saveCard: true } : {}),
    };
    try {
      apply(await openCheckoutSession(session));
    } catch (err) {
      if (isCancellation(err) && patched(SHIELD_COMPENSATIONS)) {
        // Cancelled while the session was being created: it may exist at Stripe already. Find
        // it (the same idempotency key answers the same session) and make sure nobody can pay.
        await CancellationScope.nonCancellable(async () => {
          apply(await openCheckoutSession(session));
          await settleOnCancel();
        });
        throw err;
      }
      const refusal = businessFailure(err);
      if (!refusal) throw err;
      state.error = { code: refusal.type ?? 'stripe_request_refused', message: refusal.message };
      await settleUnpaidPayment({ paymentId: input.paymentId, to: 'failed', cause: 'session' });
      move('failed');
    }
  }

  // Compensations run whole even when an operator cancels while they run.
  const compensationsShielded = patched(SHIELD_COMPENSATIONS);

  let deadline =
    (input.startedBy === 'api' ? startTime.getTime() : Date.now()) + input.expiresInSeconds * 1000;
  let timedOut = false;
  try {
    for (;;) {
      const outcome = outcomes.shift();
      if (outcome) {
        log.info('stripe outcome', { eventType: outcome.eventType, kind: outcome.kind });
        // Crediting is never interrupted half way by an operator's cancel.
        if (outcome.kind === 'paid') await CancellationScope.nonCancellable(() => credit(outcome));
        else if (outcome.kind === 'failed') await giveUp('failed', outcome.eventId);
        else if (outcome.kind === 'expired') await giveUp('expired', outcome.eventId);
        else {
          // Paid by a slow method: the session is complete and cannot expire; wait for the verdict.
          state.paymentIntentId = state.paymentIntentId ?? outcome.paymentIntentId;
          deadline = Math.max(deadline, Date.now() + ASYNC_PAYMENT_WAIT_MS);
        }
        continue;
      }
      if (FINAL.includes(state.status) || timedOut) break;
      const remaining = deadline - Date.now();
      if (remaining > 0 && (await condition(() => outcomes.length > 0, remaining))) continue;

      // Nobody paid in time. Compensation: expire the session at Stripe, so nobody can pay now.
      timedOut = true;
      const paidMeanwhile = compensationsShielded
        ? await CancellationScope.nonCancellable(expireSession)
        : await expireSession();
      if (paidMeanwhile) {
        outcomes.push(paidMeanwhile);
        continue;
      }
      if (compensationsShielded) {
        await CancellationScope.nonCancellable(() => giveUp('expired', 'timeout'));
      } else {
        await giveUp('expired', 'timeout');
      }
    }
  } catch (err) {
    if (!isCancellation(err) || !compensationsShielded) throw err;
    await CancellationScope.nonCancellable(settleOnCancel);
    throw err;
  }

  ended = true;
  await condition(allHandlersFinished);
  if (patched('credit-payment-reported-at-close')) {
    // A payment reported while the run was closing must not be dropped: the webhook already
    // told Stripe it was received.
    for (const late of outcomes.splice(0)) {
      if (late.kind === 'paid') await CancellationScope.nonCancellable(() => credit(late));
    }
  }
  return state;
}
