// The baseline the flow benchmarks compare against: workflows of the same shape as the real
// ones (the same number of activities, the same update, signal and timer waits, the same
// activity options) whose activities do nothing. Bundled on their own, run on their own task
// queue, never deployed.
import {
  allHandlersFinished,
  condition,
  defineSignal,
  defineUpdate,
  proxyActivities,
  setHandler,
} from '@temporalio/workflow';
import { DB_STEP_START_TO_CLOSE_MS, HEARTBEAT_TIMEOUT_MS } from '../../src/workflows/timeouts.js';
import type { BareActivities } from './bare-activities.js';
import { bare } from './bare-contract.js';

/** Answers once the first step (the "debit" or the "session") has run, like the real updates. */
export const bareSettledUpdate = defineUpdate<string>(bare.settledUpdate);
/** The code, or the payment: what the real flows receive by webhook. */
export const bareEventSignal = defineSignal<[string]>(bare.eventSignal);

const steps = proxyActivities<BareActivities>({
  startToCloseTimeout: DB_STEP_START_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

function handlers(settled: () => boolean) {
  let event: string | undefined;
  setHandler(bareEventSignal, (value) => {
    event ??= value;
  });
  setHandler(bareSettledUpdate, async () => {
    await condition(settled);
    return 'settled';
  });
  return () => event;
}

/**
 * verificationPurchase's happy path without its work: debit, rent, mark active, wait for the
 * code (or the timeout), complete; on timeout refund and release instead.
 */
export async function bareVerification(timeoutSeconds: number): Promise<string> {
  let settled = false;
  const event = handlers(() => settled);
  await steps.noop('debit');
  settled = true;
  await steps.noop('rent');
  await steps.noop('active');
  if (await condition(() => event() !== undefined, timeoutSeconds * 1000)) {
    await steps.noop('complete');
  } else {
    await steps.noop('refund');
    await steps.noop('release');
  }
  await condition(allHandlersFinished);
  return 'done';
}

/** checkout's top-up path without its work: record, open the session, wait, mark paid, credit. */
export async function bareTopup(timeoutSeconds: number): Promise<string> {
  let settled = false;
  const event = handlers(() => settled);
  await steps.noop('record');
  await steps.noop('session');
  settled = true;
  if (await condition(() => event() !== undefined, timeoutSeconds * 1000)) {
    await steps.noop('paid');
    await steps.noop('credit');
  }
  await condition(allHandlersFinished);
  return 'done';
}
