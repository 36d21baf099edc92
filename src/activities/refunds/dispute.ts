// Refund activities (dispute): a disputed payment's credits are held out of the spendable balance
// while the dispute is open, then released (won) or written off to chargebacks (lost). The hold
// is fenced, so a hold attempt that outlived its timeout can never land after the dispute closed.
import { Context, log } from '@temporalio/activity';
import { raiseAlert } from '../../alerts/alerts.js';
import type { Database } from '../../db/client.js';
import { BusinessError } from '../../errors.js';
import { StepClosed, closeUnlessPosted } from '../../ledger/fences.js';
import type { Tx } from '../../ledger/ledger.js';
import { enqueueMessage, type OutboxMessage } from '../../notifications/outbox.js';
import { settleRefundStatus } from '../../payments/state-machine.js';
import type { DisputeReport } from '../../shared.js';
import { refusalsAreFinal } from '../ledger.js';
import type { RefundActivityDeps } from './deps.js';
import { activityAlertLog, drawTopupFirst, spendableCredits } from './common.js';
import { creditsShare } from './stripe.js';

/** Activities of this kind that must finish whatever the error (compensations). */
export const DISPUTE_MUST_FINISH: readonly string[] = ['resolveDispute'];

export type DisputeOutcome = 'won' | 'lost';
export type DisputeStatus = 'open' | DisputeOutcome;

export interface DisputeRecord {
  disputeId: string;
  paymentId: string;
  customerId: string;
  status: DisputeStatus;
  /** The disputed money's share of the payment's credits. */
  credits: number;
  /** Credits moved from the wallet to disputes_held (at most `credits`). */
  heldCredits: number;
}

export const disputeHoldKey = (disputeId: string) => `dispute:${disputeId}:hold`;
/** One key for either outcome: a dispute can be released or written off, never both. */
export const disputeCloseKey = (disputeId: string) => `dispute:${disputeId}:close`;

/** How often a hold re-reads the wallet when it moved under it. */
const HOLD_ATTEMPTS = 5;

interface DisputeRow {
  id: string;
  payment_id: string;
  customer_id: string;
  status: DisputeStatus;
  credits: string;
  held_credits: string;
}

const toRecord = (row: DisputeRow): DisputeRecord => ({
  disputeId: row.id,
  paymentId: row.payment_id,
  customerId: row.customer_id,
  status: row.status,
  credits: Number(row.credits),
  heldCredits: Number(row.held_credits),
});

export function createDisputeActivities({ db, ledger, metrics }: RefundActivityDeps) {
  const alertSinks = { log: activityAlertLog, counter: metrics?.alertsRaised };

  async function readDispute(sql: Database['sql'] | Tx, disputeId: string) {
    const [row] = await sql<DisputeRow[]>`
      select id, payment_id, customer_id, status, credits, held_credits
      from disputes where id = ${disputeId}`;
    return row ? toRecord(row) : undefined;
  }

  /** Records the dispute (open) and moves its payment to `disputed`, once. */
  async function recordDispute(report: DisputeReport, workflowId: string): Promise<DisputeRecord> {
    return db.sql.begin(async (tx) => {
      const [payment] = await tx<
        {
          id: string;
          customer_id: string;
          credits: string;
          amount: string;
          refunded_credits: string;
        }[]
      >`
        select id, customer_id, credits, amount, refunded_credits from payments
        where id = ${report.paymentId} for update`;
      if (!payment) {
        throw new BusinessError('payment_not_found', `no payment ${report.paymentId}`);
      }
      const credits = creditsShare(
        {
          credits: Number(payment.credits),
          amount: Number(payment.amount),
          refundedCredits: Number(payment.refunded_credits),
        },
        report.amount,
      );
      const [inserted] = await tx<{ id: string }[]>`
        insert into disputes (id, workflow_id, payment_id, customer_id, amount, currency, credits,
                              held_credits, status, reason)
        values (${report.disputeId}, ${workflowId}, ${payment.id}, ${payment.customer_id},
                ${report.amount}, ${report.currency}, ${credits}, 0, 'open', ${report.reason})
        on conflict (id) do nothing
        returning id`;
      if (inserted) {
        await tx`
          update payments set status_before_dispute = status, status = 'disputed',
                              updated_at = now()
          where id = ${payment.id} and status in ('credited', 'partially_refunded', 'refunded')`;
      }
      return (await readDispute(tx, report.disputeId))!;
    });
  }

  const message = (record: DisputeRecord, m: Omit<OutboxMessage, 'customerId'>): OutboxMessage => ({
    ...m,
    customerId: record.customerId,
    data: { paymentId: record.paymentId, disputeId: record.disputeId, ...m.data },
  });

  return {
    /**
     * First report of a dispute, whatever its status: records it, moves the payment to
     * `disputed`, and holds the disputed credits as far as the wallet allows (wallet →
     * disputes_held). Answers the dispute as it stands: a dispute already closed holds nothing.
     */
    async holdDisputedCredits(input: {
      workflowId: string;
      report: DisputeReport;
    }): Promise<DisputeRecord> {
      return refusalsAreFinal(async () => {
        const { report, workflowId } = input;
        const key = disputeHoldKey(report.disputeId);
        const { taskQueue } = Context.current().info;
        let record = await recordDispute(report, workflowId);
        for (let attempt = 1; record.status === 'open'; attempt++) {
          const [posted] = await db.sql`select id from entries where idempotency_key = ${key}`;
          if (posted) break;
          // What the wallet can give now (spendable grants), the payment's own grant first.
          const wallet = await spendableCredits(db, record.customerId);
          const hold = Math.max(0, Math.min(record.credits, wallet));
          if (hold === 0) break;
          try {
            await ledger.postEntry(
              {
                idempotencyKey: key,
                fence: key,
                type: 'dispute_hold',
                description: `Dispute ${report.disputeId}: ${hold} credits of payment ${record.paymentId} held`,
                workflowId,
                metadata: {
                  paymentId: record.paymentId,
                  disputeId: report.disputeId,
                  amount: report.amount,
                  currency: report.currency,
                },
                lines: [
                  {
                    account: { wallet: record.customerId },
                    amount: -hold,
                    ...(await drawTopupFirst(db, record.paymentId)),
                  },
                  { account: { system: 'disputes_held' }, amount: hold },
                ],
              },
              async (tx, entry) => {
                await tx`
                  update disputes set held_credits = ${hold}, updated_at = now()
                  where id = ${report.disputeId}`;
                await enqueueMessage(
                  tx,
                  { taskQueue, entryId: entry.entryId },
                  message(record, {
                    idempotencyKey: `${key}:notify`,
                    kind: 'credits_deducted',
                    title: 'Credits held for a dispute',
                    body: `Your bank disputed payment ${record.paymentId}: ${hold} credits are held until the dispute is decided. Balance: ${entry.lines[0]!.balanceAfter}.`,
                    amount: hold,
                    balanceAfter: entry.lines[0]!.balanceAfter,
                  }),
                );
              },
            );
            break;
          } catch (err) {
            if (err instanceof StepClosed) break; // the dispute closed first: nothing to hold
            const moved =
              err instanceof BusinessError &&
              (err.code === 'insufficient_credits' || err.code === 'idempotency_conflict');
            if (!moved) throw err;
            if (attempt >= HOLD_ATTEMPTS) {
              throw new Error('the wallet kept moving; retrying later', { cause: err });
            }
          }
        }
        record = (await readDispute(db.sql, report.disputeId))!;
        if (record.status === 'open') {
          await raiseAlert(
            db.sql,
            {
              key: `dispute_opened:${report.disputeId}`,
              kind: 'dispute_opened',
              severity: 'warning',
              message: `Dispute ${report.disputeId} opened on payment ${record.paymentId} (${report.amount} ${report.currency}, ${report.reason ?? 'no reason given'}): ${record.heldCredits} of ${record.credits} credits held. Answer it in the Stripe Dashboard before its deadline.`,
              details: {
                disputeId: report.disputeId,
                paymentId: record.paymentId,
                credits: record.credits,
                heldCredits: record.heldCredits,
                stripeStatus: report.status,
              },
              customerId: record.customerId,
            },
            alertSinks,
          );
        }
        log.info('dispute recorded', {
          disputeId: report.disputeId,
          paymentId: record.paymentId,
          status: record.status,
          held: record.heldCredits,
        });
        return record;
      });
    },

    /**
     * Closes a dispute once: won releases the held credits to the wallet and gives the payment
     * back its refund status; lost writes them off to chargebacks and marks the payment
     * `chargeback`. The hold's fence is closed first, so a late hold can never land after this.
     */
    async resolveDispute(input: {
      workflowId: string;
      disputeId: string;
      outcome: DisputeOutcome;
    }): Promise<DisputeRecord> {
      {
        const { disputeId, outcome, workflowId } = input;
        const before = await readDispute(db.sql, disputeId);
        // Recorded by the hold step before any close; missing means the data was changed by hand.
        if (!before) throw new Error(`no dispute ${disputeId} recorded; retrying`);
        if (before.status !== 'open') {
          if (before.status !== outcome) {
            log.warn('dispute already closed with the other outcome', {
              disputeId,
              status: before.status,
              reported: outcome,
            });
          }
          return before;
        }
        const { taskQueue } = Context.current().info;
        await closeUnlessPosted(
          db.sql,
          disputeHoldKey(disputeId),
          `${disputeCloseKey(disputeId)}:${outcome}`,
        );
        const record = (await readDispute(db.sql, disputeId))!;
        const held = record.heldCredits;

        const close = async (tx: Tx, entryId: number | null, balanceAfter: number | null) => {
          const [closed] = await tx<{ id: string }[]>`
            update disputes set status = ${outcome}, closed_at = now(), updated_at = now()
            where id = ${disputeId} and status = 'open'
            returning id`;
          if (!closed) throw new Error(`dispute ${disputeId} closed concurrently; retrying`);
          if (outcome === 'won') {
            await settleRefundStatus(tx, record.paymentId, { closeDispute: true });
          } else {
            await tx`
              update payments set status = 'chargeback', updated_at = now()
              where id = ${record.paymentId}
                and status in ('disputed', 'credited', 'partially_refunded', 'refunded')`;
          }
          const balance = balanceAfter === null ? '' : ` Balance: ${balanceAfter}.`;
          await enqueueMessage(
            tx,
            { taskQueue, ...(entryId === null ? {} : { entryId }) },
            message(record, {
              idempotencyKey: `${disputeCloseKey(disputeId)}:notify`,
              kind: outcome === 'won' ? 'credits_added' : 'credits_deducted',
              title: outcome === 'won' ? 'Dispute closed: credits released' : 'Dispute lost',
              body:
                outcome === 'won'
                  ? `The dispute on payment ${record.paymentId} closed in our favour: ${held} held credits are back.${balance}`
                  : `The dispute on payment ${record.paymentId} was decided for your bank, which returned the money: ${held} held credits are removed.${balance}`,
              amount: held,
              ...(balanceAfter === null ? {} : { balanceAfter }),
            }),
          );
        };

        if (held === 0) {
          await db.sql.begin((tx) => close(tx, null, null));
        } else {
          await ledger.postEntry(
            {
              idempotencyKey: disputeCloseKey(disputeId),
              type: outcome === 'won' ? 'dispute_release' : 'dispute_chargeback',
              description:
                outcome === 'won'
                  ? `Dispute ${disputeId} won: ${held} held credits released`
                  : `Dispute ${disputeId} lost: ${held} held credits written off`,
              workflowId,
              metadata: { paymentId: record.paymentId, disputeId, outcome },
              lines: [
                { account: { system: 'disputes_held' }, amount: -held },
                outcome === 'won'
                  ? // Back to the grants the hold drew from; a share whose grant closed is breakage.
                    {
                      account: { wallet: record.customerId },
                      amount: held,
                      credit: { returnTo: disputeHoldKey(disputeId) },
                    }
                  : { account: { system: 'chargebacks' }, amount: held },
              ],
            },
            (tx, entry) =>
              close(tx, entry.entryId, outcome === 'won' ? entry.lines[1]!.balanceAfter : null),
          );
        }
        const after = (await readDispute(db.sql, disputeId))!;
        log.info('dispute closed', { disputeId, status: after.status, held });
        return after;
      }
    },

    /** A dispute open past the workflow's longest wait: a person checks it at Stripe. */
    async flagStaleDispute(input: { disputeId: string; waitedDays: number }): Promise<void> {
      const record = await readDispute(db.sql, input.disputeId);
      await raiseAlert(
        db.sql,
        {
          key: `dispute_stale:${input.disputeId}`,
          kind: 'dispute_opened',
          severity: 'critical',
          message: `Dispute ${input.disputeId} has had no closing event for ${input.waitedDays} days; its ${record?.heldCredits ?? 0} held credits stay held. Check it in the Stripe Dashboard; reconciliation (or the closing event) resolves it.`,
          details: { disputeId: input.disputeId, paymentId: record?.paymentId ?? null },
          customerId: record?.customerId ?? null,
        },
        alertSinks,
      );
    },
  };
}
