// refund (dispute): holds a disputed payment's credits, then releases or writes them off.
import {
  allHandlersFinished,
  condition,
  log,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import type { DisputeOutcome, DisputeRecord } from '../../activities/refunds/dispute.js';
import {
  disputeSignal,
  searchAttributes,
  type DisputeReport,
  type RefundInput,
  type RefundState,
} from '../../shared.js';
import { DB_STEP_START_TO_CLOSE_MS, HEARTBEAT_TIMEOUT_MS } from '../timeouts.js';
import { refundState } from './state.js';

const retry = { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' };

const { holdDisputedCredits, resolveDispute, flagStaleDispute } = proxyActivities<Activities>({
  startToCloseTimeout: DB_STEP_START_TO_CLOSE_MS,
  heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
  retry,
});

/** Signal-with-start delivers the first report with the start; this only guards a bad start. */
const FIRST_REPORT_WAIT = '1 minute';
/**
 * Stripe closes a dispute within about 75 days of its opening (the card network's deadlines);
 * past this the run alerts and ends with the credits still held, and the closing event or a
 * reconciliation repair starts a new run that resolves it.
 */
export const DISPUTE_CLOSE_WAIT_DAYS = 120;

/** The Stripe dispute statuses that close it, mapped to what happens to the held credits. */
function outcomeOf(status: string): DisputeOutcome | null {
  if (status === 'lost') return 'lost';
  if (status === 'won' || status === 'warning_closed' || status === 'charge_refunded') {
    return 'won';
  }
  return null;
}

/**
 * Refund kind `dispute`: on the first report (whatever its status: events arrive reordered) it
 * records the dispute, marks the payment disputed and holds the disputed credits; it then waits
 * for the closing report and releases the credits (won) or writes them off (lost). A close that
 * came first or with the opening is handled in the same run.
 */
export async function disputeRefund(input: RefundInput): Promise<RefundState> {
  const state = refundState(input);
  const { workflowId } = workflowInfo();
  const seen = new Set<string>();
  let first: DisputeReport | undefined;
  let closing: { report: DisputeReport; outcome: DisputeOutcome } | undefined;
  setHandler(disputeSignal, (report) => {
    if (seen.has(report.eventId)) return;
    seen.add(report.eventId);
    first ??= report;
    const outcome = outcomeOf(report.status);
    if (outcome && !closing) closing = { report, outcome };
  });

  if (!(await condition(() => first !== undefined, FIRST_REPORT_WAIT))) {
    log.warn('dispute workflow started without a report; nothing to do');
    state.status = 'failed';
    state.error = { code: 'no_report', message: 'started without a dispute report' };
    return state;
  }
  const opening = first!;
  state.status = 'processing';
  state.amount = opening.amount;
  state.currency = opening.currency;

  const held = await hold(workflowId, opening);
  show(state, held);
  if (held.status !== 'open') {
    // Closed by an earlier run: a late or repeated report changes nothing.
    return finish(state, held);
  }

  const closed = await condition(() => closing !== undefined, `${DISPUTE_CLOSE_WAIT_DAYS} days`);
  if (!closed) {
    await flagStaleDispute({ disputeId: opening.disputeId, waitedDays: DISPUTE_CLOSE_WAIT_DAYS });
    state.error = {
      code: 'dispute_not_closed',
      message: `no closing report within ${DISPUTE_CLOSE_WAIT_DAYS} days; credits stay held`,
    };
    state.updatedAt = new Date().toISOString();
    await condition(allHandlersFinished);
    return state;
  }
  const resolved = await resolve(workflowId, opening.disputeId, closing!.outcome);
  await condition(allHandlersFinished);
  return finish(state, resolved);
}

/** Records the dispute and holds the disputed credits as far as the wallet allows. */
function hold(workflowId: string, report: DisputeReport): Promise<DisputeRecord> {
  return holdDisputedCredits({ workflowId, report });
}

/** Releases the held credits (won) or writes them off to chargebacks (lost). */
function resolve(
  workflowId: string,
  disputeId: string,
  outcome: DisputeOutcome,
): Promise<DisputeRecord> {
  return resolveDispute({ workflowId, disputeId, outcome });
}

function show(state: RefundState, record: DisputeRecord) {
  state.credits = record.heldCredits;
  state.updatedAt = new Date().toISOString();
}

/** Won: the customer keeps the credits (the claim was rejected); lost: they went back. */
function finish(state: RefundState, record: DisputeRecord): RefundState {
  show(state, record);
  state.status = record.status === 'lost' ? 'refunded' : 'rejected';
  upsertSearchAttributes([{ key: searchAttributes.flowStatus, value: record.status }]);
  return state;
}
