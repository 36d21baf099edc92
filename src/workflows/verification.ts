// verificationPurchase: debit the price, rent a number, wait for the code; on timeout, cancel or
// provider failure refund automatically. Exactly one outcome, whatever races.
import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
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
import {
  cancelVerificationUpdate,
  codeReceivedSignal,
  debitSettledUpdate,
  searchAttributes,
  verificationStateQuery,
  type RefundReason,
  type VerificationInput,
  type VerificationState,
  type VerificationStatus,
} from '../shared.js';
import { businessFailure } from './failures.js';

const retryForever = {
  initialInterval: '1 second',
  backoffCoefficient: 2,
  maximumInterval: '1 minute',
} as const;

// Ledger writes, notifications and compensations retry until they succeed: each is idempotent.
// They take milliseconds; a short timeout lets another worker take over fast after a crash.
const steps = proxyActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: retryForever,
});

// The debit waits for a cancelled attempt to really finish, so the refund that follows a
// cancellation always sees a debit that committed late.
const debitStep = proxyActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: retryForever,
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});

// The provider gets a few tries; after that the customer is refunded rather than kept waiting.
const provider = proxyActivities<Activities>({
  startToCloseTimeout: '15 seconds',
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumAttempts: 3,
    nonRetryableErrorTypes: ['provider_refused'],
  },
});

const reasonText: Record<RefundReason, string> = {
  timeout: 'timed out before a code arrived',
  cancelled: 'was cancelled',
  provider_failed: 'could not get a number from the provider',
};

/** Sells one phone verification for credits and refunds it when it cannot be delivered. */
export async function verificationPurchase(input: VerificationInput): Promise<VerificationState> {
  const { workflowId, startTime } = workflowInfo();
  const state: VerificationState = {
    id: input.verificationId,
    workflowId,
    customerId: input.customerId,
    status: 'pending',
    service: input.service,
    country: input.country,
    price: input.price,
    timeoutSeconds: input.timeoutSeconds,
    phoneNumber: null,
    code: null,
    refundReason: null,
    error: null,
    createdAt: startTime.toISOString(),
    updatedAt: startTime.toISOString(),
  };
  const ids = { ...input, workflowId };
  let debitSettled = false;
  /** Set once: the first of code, cancel or timeout decides; everything later is ignored. */
  let decision: { kind: 'code'; code: string } | { kind: 'cancel' } | undefined;
  let outcomeFixed = false;
  let rented: { providerRef: string; phoneNumber: string } | undefined;
  /** A rent was asked for and its answer is not known (lost, or the scope was cancelled). */
  let rentUncertain = false;

  const move = (status: VerificationStatus) => {
    state.status = status;
    state.updatedAt = new Date().toISOString();
    upsertSearchAttributes([{ key: searchAttributes.flowStatus, value: status }]);
  };
  const terminal = () => ['completed', 'refunded', 'failed'].includes(state.status);

  setHandler(verificationStateQuery, () => state);
  setHandler(codeReceivedSignal, ({ code }) => {
    if (decision || outcomeFixed) {
      log.info('code ignored: the outcome is already decided', {
        verificationId: input.verificationId,
      });
      return;
    }
    decision = { kind: 'code', code };
  });
  setHandler(
    cancelVerificationUpdate,
    async () => {
      decision ??= { kind: 'cancel' };
      await condition(terminal);
      return state;
    },
    {
      validator: () => {
        if (decision?.kind === 'code' || state.status === 'completed') {
          throw ApplicationFailure.create({
            type: 'verification_closed',
            message: 'This verification already received its code; it cannot be cancelled.',
            nonRetryable: true,
          });
        }
        if (outcomeFixed && decision?.kind !== 'cancel') {
          throw ApplicationFailure.create({
            type: 'verification_closed',
            message: `This verification is already ${state.status === 'failed' ? 'failed' : 'being refunded'}; there is nothing to cancel.`,
            nonRetryable: true,
          });
        }
      },
    },
  );
  setHandler(debitSettledUpdate, async () => {
    await condition(() => debitSettled);
    if (state.status === 'failed' && state.error) {
      throw ApplicationFailure.create({
        type: state.error.code,
        message: state.error.message,
        nonRetryable: true,
      });
    }
    return state;
  });

  /** Refunds the debit (if there is one), releases the number, tells the customer. */
  const compensate = async (reason: RefundReason) => {
    outcomeFixed = true;
    state.refundReason = reason;
    const refund = await steps.refundVerification({ ...ids, reason, failedAtMs: Date.now() });
    if (rented) {
      await steps.releaseNumber({ ...ids, providerRef: rented.providerRef });
    } else if (rentUncertain && patched('release-uncertain-rental')) {
      // The provider may have rented a number whose answer never reached us.
      await steps.releaseRentalByReference(ids);
    }
    // Histories recorded before the outbox notify here; new runs queue it with the refund entry.
    if (refund.refunded && !patched('notifications-outbox')) {
      await steps.notify({
        idempotencyKey: `${workflowId}:notify-refund`,
        customerId: input.customerId,
        kind: 'credits_refunded',
        title: 'Credits refunded',
        body: `${input.price} credits are back: your ${input.service} verification (${input.country}) ${reasonText[reason]}. Balance: ${refund.balanceAfter}.`,
        amount: input.price,
        balanceAfter: refund.balanceAfter ?? undefined,
        data: { verificationId: input.verificationId, reason },
      });
    }
    move('refunded');
  };

  try {
    let debit: { entryId: number; balanceAfter: number };
    try {
      debit = await debitStep.debitVerification(ids);
    } catch (err) {
      const refusal = businessFailure(err);
      if (!refusal) throw err;
      outcomeFixed = true;
      state.error = { code: refusal.type ?? 'refused', message: refusal.message };
      await steps.recordVerificationFailed({ ...ids, error: state.error });
      move('failed');
      debitSettled = true;
      await condition(allHandlersFinished);
      throw ApplicationFailure.create({
        type: refusal.type ?? undefined,
        message: refusal.message,
        nonRetryable: true,
        details: [state],
      });
    }
    debitSettled = true;
    log.info('verification debited', {
      verificationId: input.verificationId,
      entryId: debit.entryId,
    });
    // Histories recorded before the outbox notify here; new runs queue it with the debit entry.
    if (!patched('notifications-outbox')) {
      await steps.notify({
        idempotencyKey: `${workflowId}:notify-debit`,
        customerId: input.customerId,
        kind: 'credits_deducted',
        title: 'Credits used',
        body: `${input.price} credits for a ${input.service} verification (${input.country}). Balance: ${debit.balanceAfter}.`,
        amount: input.price,
        balanceAfter: debit.balanceAfter,
        data: { verificationId: input.verificationId },
      });
    }

    let outcome: 'completed' | RefundReason | undefined;
    if (decision?.kind === 'cancel') {
      outcome = 'cancelled';
    } else {
      try {
        rentUncertain = true;
        rented = await provider.rentNumber(ids);
        rentUncertain = false;
        await steps.markVerificationActive({ ...ids, ...rented });
        // Shown only once stored, so a code sent for this number always finds it.
        state.phoneNumber = rented.phoneNumber;
        move('active');
      } catch (err) {
        // A refusal means nothing was rented; anything else leaves it unknown.
        rentUncertain = !(
          err instanceof ActivityFailure &&
          err.cause instanceof ApplicationFailure &&
          err.cause.type === 'provider_refused'
        );
        if (isCancellation(err)) throw err;
        log.warn('provider failed; refunding', {
          verificationId: input.verificationId,
          error: String(err),
        });
        outcome = 'provider_failed';
      }
    }

    if (!outcome) {
      const decided = await condition(() => decision !== undefined, input.timeoutSeconds * 1000);
      outcome =
        !decided || !decision ? 'timeout' : decision.kind === 'code' ? 'completed' : 'cancelled';
    }
    outcomeFixed = true;

    if (outcome === 'completed' && decision?.kind === 'code') {
      await steps.completeVerification({ ...ids, code: decision.code });
      state.code = decision.code;
      move('completed');
    } else if (outcome !== 'completed') {
      log.info('refunding verification', { verificationId: input.verificationId, reason: outcome });
      await compensate(outcome);
    }
  } catch (err) {
    // Cancelled from Temporal (an operator): the refund still has to happen. The debit may have
    // committed even when its attempt then failed (a worker died after the commit and the
    // cancelled activity was not retried), so look at the scope, not only at the error.
    const cancelled = isCancellation(err) || CancellationScope.current().consideredCancelled;
    if (cancelled && !terminal()) {
      await CancellationScope.nonCancellable(() => compensate('cancelled'));
    }
    throw err;
  }
  await condition(allHandlersFinished);
  return state;
}
