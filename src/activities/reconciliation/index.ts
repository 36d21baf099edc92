// Reconciliation activities: Stripe listings, comparisons, repairs and the report. Comparisons run
// here, next to the data, and return counts: a workflow history never holds a Stripe list.
import { Context, activityInfo, heartbeat } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { createHash } from 'node:crypto';
import { raiseAlert } from '../../alerts/alerts.js';
import type { Database } from '../../db/client.js';
import { checkLedger, type LedgerReport } from '../../ledger/check.js';
import type { Ledger } from '../../ledger/ledger.js';
import type { WorkerMetrics } from '../../metrics.js';
import { reportCheckoutOutcome } from '../../payments/report.js';
import { CREDITED_STATUSES, type PaymentStatus } from '../../payments/state-machine.js';
import {
  FLAG_ONLY,
  severityOf,
  type Finding,
  type FindingAction,
} from '../../reconciliation/findings.js';
import { CANARY_EXTERNAL_ID } from '../../reconciliation/plan.js';
import { reportDispute, reportStripeRefund } from '../../refunds/start.js';
import {
  workflowIds,
  type ReconciliationCategory,
  type ReconciliationSummary,
} from '../../shared.js';
import type { Page, StripeGateway } from '../../stripe/gateway.js';
import { readPayment, type PaymentRecord } from '../checkout.js';
import { expireGrantOnce } from '../grants.js';
import { refundVerificationDebit } from '../verification.js';

export interface ReconciliationActivityDeps {
  db: Database;
  ledger: Ledger;
  stripe?: StripeGateway | undefined;
  metrics?: WorkerMetrics | undefined;
  /** Repairs start workflows (signal-with-start) through this client, on this task queue. */
  temporal?: Client | undefined;
  taskQueue?: string | undefined;
  /** How long past its deadline a flow may take to settle before it is a finding (15 minutes). */
  settleGraceMs?: number;
  /** How long a repair may take to resolve its finding before a run flags it (1 hour). */
  repairGraceMs?: number;
  /** How long past its expiresAt an open grant is left to its workflow's timer (5 minutes). */
  grantExpiryGraceMs?: number;
  /** Stripe list page size (100; tests make it small to cross pages). */
  pageSize?: number;
  /** The expiry a checkout run started by a repair gets. */
  checkoutExpirySeconds?: number;
  /** Where alerts are logged besides the table (the activity's logger when absent). */
  alertLog?: { error(fields: Record<string, unknown>, message: string): void };
  /** The ledger checker (tests replace it to inject a violation without corrupting the ledger). */
  checkLedger?: (sql: Database['sql']) => Promise<LedgerReport>;
}

/** Reconciliation steps that must eventually happen whatever the error. */
export const RECONCILIATION_MUST_FINISH: readonly string[] = [];

const DEFAULT_SETTLE_GRACE_MS = 15 * 60_000;
const DEFAULT_GRANT_EXPIRY_GRACE_MS = 5 * 60_000;
/** A repaired finding still found this long after its repair is flagged for a person. */
const DEFAULT_REPAIR_GRACE_MS = 60 * 60_000;
/** Flows in limbo are looked for this far before the window, since they outlive it. */
const LIMBO_LOOKBACK = '2 days';
/** A session's payment intent and refunds may be created this long after the payment row. */
const STRIPE_LAG_SECONDS = 5 * 60;
const PAYMENT_ID = /^pay_[a-z0-9]{1,64}$/i;

export interface RunRef {
  runId: string;
  /** `reconciliation:<run>`: who a repair says started it. */
  customerIds?: string[] | null;
}

export interface StripeChunkInput extends RunRef {
  from: string;
  to: string;
}

export interface StripeChunkResult {
  matched: number;
  listed: Record<string, number>;
  /** False when no Stripe key is configured: nothing was listed. */
  stripe: boolean;
}

type ListKind = 'sessions' | 'payment_intents' | 'refunds' | 'disputes';
const LIST_ORDER: ListKind[] = ['sessions', 'payment_intents', 'refunds', 'disputes'];

/** What a Stripe chunk heartbeats: where it is, and what it has counted so far. */
interface ChunkProgress {
  kind: ListKind;
  cursor: string | null;
  matched: number;
  listed: Record<string, number>;
  /** Payments Stripe shows paid, for the "credited without a Stripe payment" check. */
  paid: string[];
}

const toSeconds = (iso: string) => Math.floor(new Date(iso).getTime() / 1000);
const shortHash = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 16);

export function createReconciliationActivities(deps: ReconciliationActivityDeps) {
  const { db } = deps;
  const sql = db.sql;
  const grace = deps.settleGraceMs ?? DEFAULT_SETTLE_GRACE_MS;
  const repairGrace = deps.repairGraceMs ?? DEFAULT_REPAIR_GRACE_MS;
  const grantGrace = deps.grantExpiryGraceMs ?? DEFAULT_GRANT_EXPIRY_GRACE_MS;
  const pageSize = deps.pageSize ?? 100;
  const check = deps.checkLedger ?? checkLedger;

  /** Alerts go to the activity's log (error level) and the alerts counter. */
  const alertSinks = () => ({
    log: deps.alertLog ?? {
      error: (fields: Record<string, unknown>, message: string) => {
        Context.current().log.error(message, fields);
      },
    },
    counter: deps.metrics?.alertsRaised,
  });
  const target = () => {
    if (!deps.temporal || !deps.taskQueue) {
      throw new Error('reconciliation repairs need a Temporal client and task queue on the worker');
    }
    return { temporal: deps.temporal, taskQueue: deps.taskQueue };
  };
  const inScope = (ref: RunRef, customerId: string) =>
    !ref.customerIds || ref.customerIds.some((c) => c.toLowerCase() === customerId.toLowerCase());

  /**
   * Records a finding and acts on it once across runs: the first run that finds it repairs it (or
   * raises the alert) and writes the repair row under the finding's key; later runs only report
   * it. The repair goes first and is itself idempotent, so a crash between the two repeats
   * nothing harmful.
   */
  async function act(
    runId: string,
    finding: Finding,
    repair?: () => Promise<string>,
  ): Promise<FindingAction> {
    const [done] = await sql<
      {
        run_id: string;
        action: FindingAction;
        details: { outcome?: string };
        stale: boolean;
      }[]
    >`
      select run_id, action, details,
             created_at < now() - make_interval(secs => ${repairGrace / 1000}) as stale
      from reconciliation_repairs where key = ${finding.key}`;
    let action: FindingAction;
    let outcome: string;
    if (done && done.run_id !== runId && done.action === 'repaired' && done.stale) {
      // Repaired long ago and still here: the repair did not take; a person looks at it now.
      action = 'flagged';
      outcome = `repaired by run ${done.run_id} but still found: alert raised`;
      await raiseAlert(
        sql,
        {
          key: `reconciliation:${finding.key}:unresolved`,
          kind: 'reconciliation_finding',
          severity: 'critical',
          message: `Reconciliation ${runId}: ${finding.message} (repaired by run ${done.run_id}, still not resolved)`,
          details: { runId, kind: finding.kind, refs: finding.refs, repairedBy: done.run_id },
          customerId: finding.customerId ?? null,
        },
        alertSinks(),
      );
    } else if (done && done.run_id !== runId) {
      action = 'none';
      outcome = `already ${done.action} by run ${done.run_id}`;
    } else if (done) {
      action = done.action;
      outcome = done.details.outcome ?? done.action;
    } else {
      if (repair && !FLAG_ONLY.has(finding.kind)) {
        action = 'repaired';
        outcome = await repair();
      } else {
        action = 'flagged';
        await raiseAlert(
          sql,
          {
            key: `reconciliation:${finding.key}`,
            kind: 'reconciliation_finding',
            severity: severityOf(finding.kind),
            message: `Reconciliation ${runId}: ${finding.message}`,
            details: { runId, kind: finding.kind, refs: finding.refs, ...finding.details },
            customerId: finding.customerId ?? null,
          },
          alertSinks(),
        );
        outcome = 'alert raised for a person to look at';
      }
      await sql`
        insert into reconciliation_repairs (key, run_id, action, details)
        values (${finding.key}, ${runId}, ${action},
                ${JSON.stringify({ kind: finding.kind, outcome, refs: finding.refs })}::jsonb)
        on conflict (key) do nothing`;
    }
    await sql`
      insert into reconciliation_findings (run_id, key, kind, refs, amount, currency, action, outcome, details)
      values (${runId}, ${finding.key}, ${finding.kind}, ${JSON.stringify(finding.refs)}::jsonb,
              ${finding.amount}, ${finding.currency}, ${action}, ${outcome},
              ${JSON.stringify({ message: finding.message, ...(finding.details ?? {}) })}::jsonb)
      on conflict (run_id, key) do nothing`;
    return action;
  }

  /** A payment Stripe shows paid: credited here, once, for the amount Stripe took? */
  async function comparePaid(
    ref: RunRef,
    paid: {
      paymentId: string;
      source: 'session' | 'payment_intent';
      objectId: string;
      sessionId: string | null;
      paymentIntentId: string | null;
      amount: number | null;
      currency: string | null;
    },
  ): Promise<boolean> {
    const payment = await readPayment(db, paid.paymentId);
    const refs = {
      paymentId: paid.paymentId,
      sessionId: paid.sessionId,
      paymentIntentId: paid.paymentIntentId,
    };
    if (!payment) {
      if (ref.customerIds) return false;
      await act(ref.runId, {
        key: `unknown_payment:${paid.paymentId}:${paid.objectId}`,
        kind: 'unknown_payment',
        refs,
        amount: paid.amount,
        currency: paid.currency,
        message: `Stripe ${paid.source} ${paid.objectId} was paid for payment ${paid.paymentId}, which is not recorded here`,
      });
      return false;
    }
    if (!inScope(ref, payment.customerId)) return false;
    const customer = { customerId: payment.customerId };
    if (
      paid.amount !== payment.amount ||
      (paid.currency ?? '').toLowerCase() !== payment.currency.toLowerCase()
    ) {
      await act(ref.runId, {
        key: `amount_mismatch:${payment.id}:${paid.paymentIntentId ?? paid.objectId}`,
        kind: 'amount_mismatch',
        refs,
        amount: paid.amount,
        currency: paid.currency,
        ...customer,
        message: `Stripe ${paid.source} ${paid.objectId} took ${paid.amount} ${paid.currency}; payment ${payment.id} recorded ${payment.amount} ${payment.currency}`,
        details: { recordedAmount: payment.amount, recordedCurrency: payment.currency },
      });
      return false;
    }
    const other =
      paid.source === 'session'
        ? payment.sessionId && paid.sessionId !== payment.sessionId
        : payment.paymentIntentId && paid.paymentIntentId !== payment.paymentIntentId;
    if (other) {
      await act(ref.runId, {
        key: `duplicate_payment:${payment.id}:${paid.paymentIntentId ?? paid.objectId}`,
        kind: 'duplicate_payment',
        refs,
        amount: paid.amount,
        currency: paid.currency,
        ...customer,
        message: `payment ${payment.id} was paid a second time at Stripe (${paid.source} ${paid.objectId}, recorded ${payment.sessionId ?? payment.paymentIntentId}); refund one of them by hand`,
      });
      return false;
    }
    if (CREDITED_STATUSES.includes(payment.status) || payment.status === 'chargeback') return true;
    const key = `paid_not_credited:${payment.id}`;
    await act(
      ref.runId,
      {
        key,
        kind: 'paid_not_credited',
        refs,
        amount: paid.amount,
        currency: paid.currency,
        ...customer,
        message: `payment ${payment.id} is paid at Stripe but ${payment.status} here`,
        details: { status: payment.status },
      },
      async () => {
        await reportCheckoutOutcome(
          { ...target(), expiresInSeconds: deps.checkoutExpirySeconds ?? 30 * 60 },
          payment,
          {
            eventId: `reconciliation:${key}`,
            eventType: `reconciliation.${paid.source}.paid`,
            kind: 'paid',
            sessionId: paid.sessionId,
            paymentIntentId: paid.paymentIntentId,
          },
        );
        return `reported paid to ${payment.workflowId}, which credits it`;
      },
    );
    return false;
  }

  async function paymentByIntent(paymentIntentId: string | null) {
    if (!paymentIntentId) return undefined;
    const [row] = await sql<{ id: string }[]>`
      select id from payments where payment_intent_id = ${paymentIntentId}`;
    return row ? readPayment(db, row.id) : undefined;
  }

  /** All money Stripe refunded on one payment intent (every page). */
  async function refundedAtStripe(stripe: StripeGateway, paymentIntentId: string) {
    let total = 0;
    let cursor: string | null = null;
    do {
      const page = await stripe.listRefunds({ paymentIntentId, startingAfter: cursor, limit: 100 });
      for (const r of page.data)
        if (r.status === 'succeeded' || r.status === 'pending') total += r.amount;
      cursor = page.nextCursor;
    } while (cursor);
    return total;
  }

  async function compareRefunds(
    ref: RunRef,
    stripe: StripeGateway,
    payment: PaymentRecord & { refundedAmount: number },
  ) {
    const refunded = await refundedAtStripe(stripe, payment.paymentIntentId!);
    if (refunded <= payment.refundedAmount) return true;
    const key = `refund_not_taken_back:${payment.id}:${refunded}`;
    await act(
      ref.runId,
      {
        key,
        kind: 'refund_not_taken_back',
        refs: { paymentId: payment.id, paymentIntentId: payment.paymentIntentId },
        amount: refunded - payment.refundedAmount,
        currency: payment.currency,
        customerId: payment.customerId,
        message: `Stripe refunded ${refunded} ${payment.currency} of payment ${payment.id}; ${payment.refundedAmount} was taken back here`,
      },
      async () => {
        const started = await reportStripeRefund(
          target(),
          { paymentId: payment.id, customerId: payment.customerId },
          {
            eventId: `reconciliation:${key}`,
            paymentId: payment.id,
            paymentIntentId: payment.paymentIntentId!,
            amountRefunded: refunded,
          },
          'reconciliation',
        );
        return `reported to ${started.workflowId}, which takes the credits back`;
      },
    );
    return false;
  }

  async function compareDispute(
    ref: RunRef,
    payment: PaymentRecord,
    dispute: {
      id: string;
      amount: number;
      currency: string;
      status: string;
      reason: string | null;
      paymentIntentId: string | null;
    },
  ) {
    const [row] = await sql<
      { status: string }[]
    >`select status from disputes where id = ${dispute.id}`;
    const closed = dispute.status === 'won' || dispute.status === 'lost';
    if (row && (!closed || row.status === dispute.status)) return true;
    const key = `dispute_not_followed:${dispute.id}:${closed ? dispute.status : 'open'}`;
    await act(
      ref.runId,
      {
        key,
        kind: 'dispute_not_followed',
        refs: {
          paymentId: payment.id,
          disputeId: dispute.id,
          paymentIntentId: dispute.paymentIntentId,
        },
        amount: dispute.amount,
        currency: dispute.currency,
        customerId: payment.customerId,
        message: row
          ? `dispute ${dispute.id} is ${dispute.status} at Stripe, ${row.status} here`
          : `dispute ${dispute.id} on payment ${payment.id} (${dispute.status}) is not followed here`,
      },
      async () => {
        const started = await reportDispute(
          target(),
          { paymentId: payment.id, customerId: payment.customerId },
          {
            eventId: `reconciliation:${key}`,
            eventType: closed ? 'charge.dispute.closed' : 'charge.dispute.created',
            disputeId: dispute.id,
            paymentId: payment.id,
            paymentIntentId: dispute.paymentIntentId ?? payment.paymentIntentId ?? '',
            amount: dispute.amount,
            currency: dispute.currency,
            status: dispute.status,
            reason: dispute.reason,
          },
          'reconciliation',
        );
        return `reported to ${started.workflowId}`;
      },
    );
    return false;
  }

  async function refundedAmountOf(paymentId: string) {
    const [row] = await sql<{ refunded_amount: string }[]>`
      select refunded_amount from payments where id = ${paymentId}`;
    return Number(row?.refunded_amount ?? 0);
  }

  /** Whether a workflow is still running (a flow past its deadline may only be slow). */
  async function isRunning(workflowId: string): Promise<boolean> {
    try {
      const description = await target().temporal.workflow.getHandle(workflowId).describe();
      return description.status.name === 'RUNNING';
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
  }

  return {
    /** Opens the run's report row (once: continue-as-new and retries find it). */
    async beginReconciliationRun(input: {
      runId: string;
      workflowId: string;
      trigger: string;
      from: string;
      to: string;
    }): Promise<void> {
      await sql`
        insert into reconciliation_runs (id, workflow_id, trigger, window_from, window_to, status)
        values (${input.runId}, ${input.workflowId}, ${input.trigger}, ${input.from}, ${input.to}, 'running')
        on conflict (id) do nothing`;
    },

    /**
     * Lists one chunk of the window at Stripe, page by page, and compares each object with the
     * payments table. Heartbeats its list and cursor, so a retried attempt resumes at the page
     * that failed instead of starting over.
     */
    async reconcileStripeChunk(input: StripeChunkInput): Promise<StripeChunkResult> {
      const stripe = deps.stripe;
      if (!stripe) return { matched: 0, listed: {}, stripe: false };
      const saved = activityInfo().heartbeatDetails as ChunkProgress | undefined;
      const progress: ChunkProgress = saved ?? {
        kind: 'sessions',
        cursor: null,
        matched: 0,
        listed: {},
        paid: [],
      };
      const paid = new Set(progress.paid);
      const from = toSeconds(input.from);
      const to = toSeconds(input.to);
      // Sessions and intents a little past the chunk still prove that a payment in it was paid.
      const listTo = to + STRIPE_LAG_SECONDS;
      const seenIntents = new Set<string>();

      for (let k = LIST_ORDER.indexOf(progress.kind); k < LIST_ORDER.length; k++) {
        const kind = LIST_ORDER[k]!;
        if (kind !== progress.kind) {
          progress.kind = kind;
          progress.cursor = null;
        }
        for (;;) {
          const params = {
            createdFrom: from,
            createdTo: kind === 'sessions' || kind === 'payment_intents' ? listTo : to,
            startingAfter: progress.cursor,
            limit: pageSize,
          };
          let page: Page<{ id: string; created: number }>;
          let matched = 0;
          if (kind === 'sessions') {
            const sessions = await stripe.listCheckoutSessions(params);
            page = sessions;
            for (const s of sessions.data) {
              const paymentId = [s.metadata.paymentId, s.clientReferenceId].find(
                (id): id is string => !!id && PAYMENT_ID.test(id),
              );
              if (!paymentId || s.status !== 'complete' || s.paymentStatus !== 'paid') continue;
              paid.add(paymentId);
              if (s.created >= to) continue;
              const ok = await comparePaid(input, {
                paymentId,
                source: 'session',
                objectId: s.id,
                sessionId: s.id,
                paymentIntentId: s.paymentIntentId,
                amount: s.amountTotal,
                currency: s.currency,
              });
              if (ok) matched++;
            }
          } else if (kind === 'payment_intents') {
            const intents = await stripe.listPaymentIntents(params);
            page = intents;
            for (const pi of intents.data) {
              const paymentId = pi.metadata.paymentId;
              if (!paymentId || !PAYMENT_ID.test(paymentId) || pi.status !== 'succeeded') continue;
              paid.add(paymentId);
              if (pi.created >= to) continue;
              const ok = await comparePaid(input, {
                paymentId,
                source: 'payment_intent',
                objectId: pi.id,
                sessionId: null,
                paymentIntentId: pi.id,
                amount: pi.amountReceived,
                currency: pi.currency,
              });
              if (ok) matched++;
            }
          } else if (kind === 'refunds') {
            const refunds = await stripe.listRefunds(params);
            page = refunds;
            for (const r of refunds.data) {
              if (!r.paymentIntentId || seenIntents.has(r.paymentIntentId)) continue;
              seenIntents.add(r.paymentIntentId);
              const payment = await paymentByIntent(r.paymentIntentId);
              if (!payment || !inScope(input, payment.customerId)) continue;
              const refundedAmount = await refundedAmountOf(payment.id);
              if (await compareRefunds(input, stripe, { ...payment, refundedAmount })) matched++;
            }
          } else {
            const disputes = await stripe.listDisputes(params);
            page = disputes;
            for (const d of disputes.data) {
              const payment = await paymentByIntent(d.paymentIntentId);
              if (!payment || !inScope(input, payment.customerId)) continue;
              if (await compareDispute(input, payment, d)) matched++;
            }
          }
          progress.matched += matched;
          progress.listed[kind] = (progress.listed[kind] ?? 0) + page.data.length;
          progress.cursor = page.nextCursor;
          progress.paid = [...paid];
          heartbeat(progress);
          if (!page.nextCursor) break;
        }
      }

      // Credited here, but Stripe shows no paid session or intent for it.
      const credited = await sql<
        {
          id: string;
          customer_id: string;
          amount: string;
          currency: string;
          stripe_session_id: string | null;
          payment_intent_id: string | null;
        }[]
      >`
        select id, customer_id, amount, currency, stripe_session_id, payment_intent_id from payments
        where status = any(${CREDITED_STATUSES as PaymentStatus[]}::text[])
          and created_at >= ${input.from} and created_at < ${input.to}
          and (${input.customerIds ?? null}::uuid[] is null or customer_id = any(${input.customerIds ?? null}::uuid[]))`;
      for (const p of credited) {
        if (paid.has(p.id)) {
          progress.matched++;
          continue;
        }
        await act(input.runId, {
          key: `credited_without_stripe_payment:${p.id}`,
          kind: 'credited_without_stripe_payment',
          refs: {
            paymentId: p.id,
            sessionId: p.stripe_session_id,
            paymentIntentId: p.payment_intent_id,
          },
          amount: Number(p.amount),
          currency: p.currency,
          customerId: p.customer_id,
          message: `payment ${p.id} is credited here but Stripe shows no paid session or payment intent for it`,
        });
      }
      return { matched: progress.matched, listed: progress.listed, stripe: true };
    },

    /** Flows left in limbo (any age up to the lookback), repaired where safe, else flagged. */
    async reconcileFlows(
      input: RunRef & { from: string; to: string },
    ): Promise<{ cutoff: string }> {
      const cutoff = new Date();
      const before = new Date(cutoff.getTime() - grace).toISOString();
      const scope = input.customerIds ?? null;
      const canary = await sql<{ id: string }[]>`
        select id from customers where external_id = ${CANARY_EXTERNAL_ID}`;
      const canaryId = canary[0]?.id ?? null;

      const verifications = await sql<
        {
          id: string;
          workflow_id: string;
          customer_id: string;
          service: string;
          country: string;
          price: string;
          timeout_seconds: number;
          status: string;
        }[]
      >`
        select id, workflow_id, customer_id, service, country, price, timeout_seconds, status
        from verifications
        where status in ('pending', 'active') and debit_entry_id is not null
          and created_at >= ${input.from}::timestamptz - ${LIMBO_LOOKBACK}::interval
          and created_at < ${input.to}
          and created_at + make_interval(secs => timeout_seconds) < ${before}
          and customer_id is distinct from ${canaryId}
          and (${scope}::uuid[] is null or customer_id = any(${scope}::uuid[]))
        order by created_at limit 500`;
      for (const v of verifications) {
        const running = await isRunning(v.workflow_id);
        await act(
          input.runId,
          {
            key: `verification_unsettled:${v.id}`,
            kind: 'verification_unsettled',
            refs: { verificationId: v.id, workflowId: v.workflow_id },
            amount: Number(v.price),
            currency: 'credits',
            customerId: v.customer_id,
            message: running
              ? `verification ${v.id} is still ${v.status} long after its timeout and its workflow still runs; look at it in the Temporal UI`
              : `verification ${v.id} was debited and its workflow ended without settling it`,
          },
          running
            ? undefined
            : async () => {
                // The refund its own workflow would have made: the same key and fence, so it can
                // happen once whoever gets there first, and the verification ends refunded.
                const refund = await refundVerificationDebit(
                  { db, ledger: deps.ledger, metrics: deps.metrics },
                  {
                    verificationId: v.id,
                    workflowId: v.workflow_id,
                    customerId: v.customer_id,
                    service: v.service,
                    country: v.country,
                    price: Number(v.price),
                    timeoutSeconds: v.timeout_seconds,
                    reason: 'timeout',
                    failedAtMs: Date.now(),
                  },
                );
                return refund.refunded
                  ? `refunded the price (entry ${refund.entryId}) as its workflow would have`
                  : 'no debit to refund; the verification is closed';
              },
        );
      }

      const escrow = await sql<{ workflow_id: string; held: string; buyer_id: string | null }[]>`
        select e.workflow_id, sum(p.amount) as held, o.buyer_id
        from entries e
        join postings p on p.entry_id = e.id
        join accounts a on a.id = p.account_id and a.kind = 'system' and a.code = 'order_escrow'
        left join orders o on o.workflow_id = e.workflow_id
        where e.workflow_id like 'order-%'
          and e.created_at >= ${input.from}::timestamptz - ${LIMBO_LOOKBACK}::interval
          and e.created_at < ${input.to}
          and (${scope}::uuid[] is null or o.buyer_id = any(${scope}::uuid[]))
        group by e.workflow_id, o.status, o.updated_at, o.buyer_id
        having sum(p.amount) <> 0 and max(e.created_at) < ${before}
          and (o.status is distinct from 'processing' or o.updated_at < ${before})
        limit 500`;
      for (const o of escrow) {
        await act(input.runId, {
          key: `order_escrow_left:${o.workflow_id}`,
          kind: 'order_escrow_left',
          refs: { workflowId: o.workflow_id },
          amount: Number(o.held),
          currency: 'credits',
          customerId: o.buyer_id,
          message: `order workflow ${o.workflow_id} left ${o.held} credits in escrow; settle them by hand (see docs/operations.md)`,
        });
      }

      const stale = await sql<{ id: string }[]>`
        select id from payments
        where status = 'init'
          and created_at >= ${input.from}::timestamptz - ${LIMBO_LOOKBACK}::interval
          and created_at < ${input.to}
          and coalesce(expires_at, created_at + interval '24 hours') < ${before}
          and (${scope}::uuid[] is null or customer_id = any(${scope}::uuid[]))
        order by created_at limit 500`;
      for (const { id } of stale) {
        const payment = (await readPayment(db, id))!;
        const key = `payment_init_expired:${id}`;
        await act(
          input.runId,
          {
            key,
            kind: 'payment_init_expired',
            refs: { paymentId: id, sessionId: payment.sessionId, workflowId: payment.workflowId },
            amount: payment.amount,
            currency: payment.currency,
            customerId: payment.customerId,
            message: `payment ${id} is still init long after it expired`,
          },
          async () => {
            // Expire the session at Stripe first, as the workflow's own timeout would: nobody can
            // pay it afterwards, and if it was paid after all its workflow credits it instead.
            const session =
              payment.sessionId && deps.stripe
                ? await deps.stripe.expireCheckoutSession(
                    payment.sessionId,
                    `reconciliation:${key}`,
                  )
                : null;
            const paid = session?.status === 'complete' && session.paymentStatus === 'paid';
            await reportCheckoutOutcome(
              { ...target(), expiresInSeconds: deps.checkoutExpirySeconds ?? 30 * 60 },
              payment,
              {
                eventId: `reconciliation:${key}`,
                eventType: paid ? 'reconciliation.paid' : 'reconciliation.expired',
                kind: paid ? 'paid' : 'expired',
                sessionId: payment.sessionId,
                paymentIntentId: session?.paymentIntentId ?? payment.paymentIntentId,
              },
            );
            return paid
              ? `the session was paid after all: reported paid to ${payment.workflowId}`
              : `expired the session and reported it to ${payment.workflowId}`;
          },
        );
      }

      // The backstop for grant expiry: a grant its timer did not close (a lost workflow, a worker
      // down for long) is expired here, exactly as the timer would (closeGrant is idempotent).
      const overdue = await sql<
        { id: string; customer_id: string; remaining: string; expires_at: Date | string }[]
      >`
        select id, customer_id, remaining::text, expires_at from grants
        where status = 'open' and expires_at is not null
          and expires_at < now() - make_interval(secs => ${grantGrace / 1000})
          and (${scope}::uuid[] is null or customer_id = any(${scope}::uuid[]))
        order by expires_at limit 500`;
      for (const g of overdue) {
        await act(
          input.runId,
          {
            key: `grant_expiry_overdue:${g.id}`,
            kind: 'grant_expiry_overdue',
            refs: { grantId: g.id, workflowId: workflowIds.grant(g.id) },
            amount: Number(g.remaining),
            currency: 'credits',
            customerId: g.customer_id,
            message: `grant ${g.id} was still open after its expiry at ${new Date(g.expires_at).toISOString()}`,
          },
          async () => {
            const closed = await expireGrantOnce(deps.ledger, { grantId: g.id });
            return closed.closedNow
              ? `expired it: ${closed.credits} credits to breakage`
              : `already ${closed.status}`;
          },
        );
      }
      return { cutoff: cutoff.toISOString() };
    },

    /** Runs the ledger checker; every violation is a finding for a person. */
    async reconcileLedger(input: RunRef): Promise<{ ok: boolean; violations: number }> {
      const report = await check(sql);
      for (const v of report.violations) {
        await act(input.runId, {
          key: `ledger_violation:${v.invariant}:${shortHash(v.detail)}`,
          kind: 'ledger_violation',
          refs: { invariant: v.invariant },
          amount: null,
          currency: null,
          message: `ledger invariant ${v.invariant} broken: ${v.detail}`,
        });
      }
      return { ok: report.ok, violations: report.violations.length };
    },

    /** Closes the report: counts and sums per finding kind, from the findings stored. */
    async finishReconciliationRun(input: {
      runId: string;
      status: 'completed' | 'failed';
      error?: string | null;
      summary: Omit<ReconciliationSummary, 'categories'>;
    }): Promise<{ findings: number }> {
      const rows = await sql<
        { kind: string; action: string; currency: string | null; n: string; total: string | null }[]
      >`
        select kind, action, currency, count(*) as n, sum(amount) as total
        from reconciliation_findings where run_id = ${input.runId}
        group by kind, action, currency`;
      const categories: Record<string, ReconciliationCategory> = {};
      let findings = 0;
      for (const r of rows) {
        const c = (categories[r.kind] ??= { count: 0, sums: {}, repaired: 0, flagged: 0 });
        const n = Number(r.n);
        findings += n;
        c.count += n;
        if (r.action === 'repaired') c.repaired += n;
        if (r.action === 'flagged') c.flagged += n;
        if (r.total !== null) {
          const unit = r.currency ?? 'unknown';
          c.sums[unit] = (c.sums[unit] ?? 0) + Number(r.total);
        }
      }
      const summary: ReconciliationSummary = { ...input.summary, categories };
      await sql`
        update reconciliation_runs set status = ${input.status}, error = ${input.error ?? null},
          summary = ${JSON.stringify(summary)}::jsonb,
          matched = ${input.summary.matched}, findings_count = ${findings}, finished_at = now()
        where id = ${input.runId}`;
      return { findings };
    },

    /**
     * The canary's customer (created once, by external id) with enough credits for a purchase:
     * topped up by an adjustment entry when it runs low.
     */
    async prepareCanary(input: {
      runId: string;
      credits: number;
    }): Promise<{ customerId: string }> {
      const customerId = await sql.begin(async (tx) => {
        await tx`
          insert into customers (email, external_id)
          values (${'canary@creditflow.invalid'}, ${CANARY_EXTERNAL_ID})
          on conflict do nothing`;
        const [row] = await tx<{ id: string }[]>`
          select id from customers where external_id = ${CANARY_EXTERNAL_ID}`;
        await tx`
          insert into accounts (kind, customer_id, code) values ('wallet', ${row!.id}, 'wallet')
          on conflict do nothing`;
        return row!.id;
      });
      const balance = await deps.ledger.walletBalance(customerId);
      if (balance < input.credits * 2) {
        const amount = input.credits * 100;
        await deps.ledger.postEntry({
          idempotencyKey: `canary-funding:${input.runId}`,
          type: 'adjustment',
          description: 'Canary funding (reconciliation sweep self-test)',
          metadata: { canary: true, runId: input.runId },
          lines: [
            { account: { wallet: customerId }, amount },
            { account: { system: 'adjustments' }, amount: -amount },
          ],
        });
      }
      return { customerId };
    },

    /** Did the canary's purchase settle: refunded, and its postings leave the wallet as it was? */
    async checkCanary(input: {
      verificationId: string;
      workflowId: string;
      customerId: string;
    }): Promise<{ ok: boolean; detail: string }> {
      const [v] = await sql<{ status: string }[]>`
        select status from verifications where id = ${input.verificationId}`;
      const [net] = await sql<{ total: string | null; n: string }[]>`
        select sum(p.amount) as total, count(*) as n
        from entries e join postings p on p.entry_id = e.id
        join accounts a on a.id = p.account_id and a.kind = 'wallet' and a.customer_id = ${input.customerId}
        where e.workflow_id = ${input.workflowId}`;
      const moved = Number(net?.total ?? 0);
      if (v?.status !== 'refunded') {
        return {
          ok: false,
          detail: `verification ${input.verificationId} is ${v?.status ?? 'missing'}, not refunded`,
        };
      }
      if (Number(net?.n ?? 0) < 2 || moved !== 0) {
        return {
          ok: false,
          detail: `the canary's postings moved the wallet by ${moved} over ${net?.n ?? 0} postings`,
        };
      }
      return { ok: true, detail: 'debited, timed out and refunded' };
    },

    /** A canary that failed or came late: an alert for a person. */
    async raiseCanaryAlert(input: {
      runId: string;
      kind: 'canary_failed' | 'canary_late';
      message: string;
    }): Promise<void> {
      await raiseAlert(
        sql,
        {
          key: `${input.kind}:${input.runId}`,
          kind: input.kind,
          severity: 'critical',
          message: input.message,
          details: { runId: input.runId },
        },
        alertSinks(),
      );
    },
  };
}
