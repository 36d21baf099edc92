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
import { businessFailure, finalFailure } from './failures.js';
import {
  DB_STEP_START_TO_CLOSE_MS,
  HEARTBEAT_TIMEOUT_MS,
  PROVIDER_STEP_START_TO_CLOSE_MS,
  RELEASE_MAX_ATTEMPTS,
  RELEASE_SCHEDULE_TO_CLOSE_MS,
} from './timeouts.js';

const retryForever = {
  initialInterval: '1 second',
  backoffCoefficient: 2,
  maximumInterval: '1 minute',
} as const;

// Ledger writes, notifications and compensations retry until they succeed: each is idempotent
// (an attempt that keeps failing is counted and alerted on by the activity wrapper). They take
// milliseconds; the heartbeat lets another worker take over fast after a crash.
const steps = proxyActivities<Activities>({
  startToCloseTimeout: DB_STEP_START_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  retry: retryForever,
});

// The debit waits for a cancelled attempt to really finish, so the refund that follows a
// cancellation always sees a debit that committed late; an attempt that outlived even that is
// stopped by the debit's fence, which the refund closes when it finds nothing.
const debitStep = proxyActivities<Activities>({
  startToCloseTimeout: DB_STEP_START_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  retry: retryForever,
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});

// Releasing a number is cleanup after the refund committed: a few tries, then an operator.
const releaseStep = proxyActivities<Activities>({
  startToCloseTimeout: PROVIDER_STEP_START_TO_CLOSE_MS,
  scheduleToCloseTimeout: RELEASE_SCHEDULE_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '30 seconds',
    maximumAttempts: RELEASE_MAX_ATTEMPTS,
  },
});

// The provider gets a few tries; after that the customer is refunded rather than kept waiting.
const provider = proxyActivities<Activities>({
  startToCloseTimeout: PROVIDER_STEP_START_TO_CLOSE_MS,
  scheduleToCloseTimeout: 3 * PROVIDER_STEP_START_TO_CLOSE_MS + 10_000,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
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
  invalid_code: 'received a code that could not be recorded',
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
  let outcome: 'completed' | RefundReason | undefined;
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

  /** A release that keeps failing is flagged for an operator instead of holding the run open. */
  const releaseOrFlag = async (release: () => Promise<void>, providerRef: string | null) => {
    try {
      await release();
    } catch (err) {
      if (isCancellation(err)) throw err;
      const cause = err instanceof ActivityFailure && err.cause ? err.cause : err;
      await steps.flagReleaseFailed({
        ...ids,
        providerRef,
        error: cause instanceof Error ? cause.message : String(cause),
      });
    }
  };

  /** Refunds the debit (if there is one), releases the number, tells the customer. */
  const compensate = async (reason: RefundReason) => {
    outcomeFixed = true;
    state.refundReason = reason;
    const refund = await steps.refundVerification({ ...ids, reason, failedAtMs: Date.now() });
    // The refund is the outcome; releasing the number is cleanup with a bounded retry.
    const bounded = patched('bounded-number-release');
    if (bounded) move('refunded');
    if (rented) {
      const { providerRef } = rented;
      if (bounded) {
        await releaseOrFlag(() => releaseStep.releaseNumber({ ...ids, providerRef }), providerRef);
      } else {
        await steps.releaseNumber({ ...ids, providerRef });
      }
    } else if (rentUncertain && patched('release-uncertain-rental')) {
      // The provider may have rented a number whose answer never reached us.
      if (bounded) {
        await releaseOrFlag(() => releaseStep.releaseRentalByReference(ids), null);
      } else {
        await steps.releaseRentalByReference(ids);
      }
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
    if (!bounded) move('refunded');
  };

  /**
   * Records the code. A completion the database refuses for good (a code it cannot store)
   * refunds instead, so the customer never waits on a step that cannot succeed.
   */
  const complete = async (code: string) => {
    try {
      await steps.completeVerification({ ...ids, code });
    } catch (err) {
      if (isCancellation(err) || !finalFailure(err) || !patched('refund-when-completion-refused')) {
        throw err;
      }
      log.warn('the code could not be recorded; refunding', {
        verificationId: input.verificationId,
        error: String(err),
      });
      await compensate('invalid_code');
      return;
    }
    state.code = code;
    move('completed');
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

    const decided = outcome;
    const settle = async () => {
      if (decided === 'completed' && decision?.kind === 'code') {
        await complete(decision.code);
      } else if (decided !== 'completed') {
        log.info('refunding verification', {
          verificationId: input.verificationId,
          reason: decided,
        });
        await compensate(decided);
      }
    };
    // Once decided, the outcome is carried out whole: an operator's cancel cannot cut a
    // completion or a refund in half.
    if (patched('verification-settle-non-cancellable')) {
      await CancellationScope.nonCancellable(settle);
    } else {
      await settle();
    }
  } catch (err) {
    // Cancelled from Temporal (an operator): the refund still has to happen. The debit may have
    // committed even when its attempt then failed (a worker died after the commit and the
    // cancelled activity was not retried), so look at the scope, not only at the error.
    const cancelled = isCancellation(err) || CancellationScope.current().consideredCancelled;
    if (cancelled && patched('verification-settle-non-cancellable')) {
      // A code that won before the cancel keeps its win: one outcome, completed or refunded.
      const codeWon =
        decision?.kind === 'code' && (outcome === 'completed' || state.status === 'active');
      if (!terminal()) {
        await CancellationScope.nonCancellable(() =>
          codeWon && decision?.kind === 'code' ? complete(decision.code) : compensate('cancelled'),
        );
      }
      if (state.status === 'completed') {
        await CancellationScope.nonCancellable(() => condition(allHandlersFinished));
        return state;
      }
      throw err;
    }
    if (cancelled && !terminal()) {
      await CancellationScope.nonCancellable(() => compensate('cancelled'));
    }
    throw err;
  }
  if (
    state.status === 'completed' &&
    CancellationScope.current().consideredCancelled &&
    patched('verification-settle-non-cancellable')
  ) {
    // Cancelled after the code won: the run still ends with its one outcome, completed.
    await CancellationScope.nonCancellable(() => condition(allHandlersFinished));
    return state;
  }
  await condition(allHandlersFinished);
  return state;
}
