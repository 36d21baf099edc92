// Refund activities (stripe): what a refund made at Stripe (the Dashboard, Stripe's own tools)
// takes back. Each Stripe refund is taken back once, under a key named by its Stripe id, so
// duplicated or reordered charge.refunded events and reconciliation repairs all converge.
import { Context, log } from '@temporalio/activity';
import { raiseAlert } from '../../alerts/alerts.js';
import type { Database } from '../../db/client.js';
import { BusinessError } from '../../errors.js';
import type { Tx } from '../../ledger/ledger.js';
import type { PostingLine } from '../../ledger/ledger.js';
import { enqueueMessage } from '../../notifications/outbox.js';
import { CREDITED_STATUSES, settleRefundStatus } from '../../payments/state-machine.js';
import type { RefundInfo, StripeGateway } from '../../stripe/gateway.js';
import { activityAlertLog, drawTopupFirst, spendableCredits } from './common.js';
import type { RefundActivityDeps } from './deps.js';
import { recreditTopup } from './topup.js';

/** Activities of this kind that must finish whatever the error (compensations). */
export const STRIPE_REFUND_MUST_FINISH: readonly string[] = [];

/**
 * Credits that `money` (minor units) of a payment of `amount` for `credits` stands for, rounded
 * up, and never more than the payment still has (`credits - alreadyRefunded`): refunding the
 * whole amount in any number of parts takes back exactly every credit, never one more.
 */
export function creditsShare(
  payment: { credits: number; amount: number; refundedCredits: number },
  money: number,
): number {
  const left = Math.max(0, payment.credits - payment.refundedCredits);
  if (money <= 0 || payment.amount <= 0) return 0;
  // Integers: credits * money stays far below 2^53 for any real pack.
  const share = Math.ceil((payment.credits * money) / payment.amount);
  return Math.min(share, left);
}

/** A Stripe refund this workflow takes back, as listed at Stripe. */
export interface StripeRefundToTakeBack {
  id: string;
  amount: number;
  currency: string;
}

export interface StripeRefundsListed {
  toTakeBack: StripeRefundToTakeBack[];
  /** Money of every succeeded refund listed, ours included: compared with the event's hint. */
  succeededAmount: number;
}

export interface StripeRefundTakenBack {
  stripeRefundId: string;
  refundId: string;
  credits: number;
  /** Credits the wallet no longer held: the customer's debt. */
  debtCredits: number;
  entryId: number | null;
  replayed: boolean;
}

interface PaymentRow {
  id: string;
  customer_id: string;
  credits: string;
  amount: string;
  currency: string;
  status: string;
  refunded_credits: string;
  refunded_amount: string;
}

/** A payment's refunded credits changed between the read and the posting: compute again. */
class PaymentMoved extends Error {}

/** How often one claw-back re-reads the payment and wallet when they moved under it. */
const CLAW_BACK_ATTEMPTS = 5;

export const stripeRefundEntryKey = (stripeRefundId: string) => `stripe-refund:${stripeRefundId}`;
/** Our refunds row for a refund made at Stripe. */
export const stripeRefundRowId = (stripeRefundId: string) => `rfd_${stripeRefundId}`;

async function readPaymentRow(db: Database, paymentId: string): Promise<PaymentRow | undefined> {
  const [row] = await db.sql<PaymentRow[]>`
    select id, customer_id, credits, amount, currency, status, refunded_credits, refunded_amount
    from payments where id = ${paymentId}`;
  return row;
}

export function createStripeRefundActivities({ db, ledger, stripe, metrics }: RefundActivityDeps) {
  const gateway = (): StripeGateway => {
    if (!stripe) throw new Error('Stripe is not configured: set STRIPE_SECRET_KEY on the worker');
    return stripe;
  };
  const alertSinks = { log: activityAlertLog, counter: metrics?.alertsRaised };

  /** The answer for a Stripe refund already taken back (its refunds row). */
  async function takenBack(stripeRefundId: string): Promise<StripeRefundTakenBack | undefined> {
    const [row] = await db.sql<
      { id: string; credits: string; debt_credits: string; entry_id: string | null }[]
    >`
      select id, credits, debt_credits, entry_id from refunds
      where stripe_refund_id = ${stripeRefundId}`;
    if (!row) return undefined;
    return {
      stripeRefundId,
      refundId: row.id,
      credits: Number(row.credits),
      debtCredits: Number(row.debt_credits),
      entryId: row.entry_id === null ? null : Number(row.entry_id),
      replayed: true,
    };
  }

  /**
   * Our top-up refund `refund.metadata.refundId` ended `refunded` when Stripe accepted it; Stripe
   * has since failed it. Re-credits it with the refund workflow's own compensation key (so never
   * twice, whoever gets there first), marks the refund failed, and tells a person.
   */
  async function recreditOwnFailedRefund(refund: RefundInfo): Promise<void> {
    const [row] = await db.sql<
      {
        id: string;
        workflow_id: string;
        customer_id: string;
        payment_id: string;
        credits: string;
        amount: string;
      }[]
    >`
      select id, workflow_id, customer_id, payment_id, credits, amount from refunds
      where id = ${refund.metadata.refundId!} and kind = 'topup' and status = 'refunded'
        and (stripe_refund_id is null or stripe_refund_id = ${refund.id})`;
    if (!row) return;
    const message = `Stripe reported refund ${refund.id} ${refund.status ?? 'failed'} after accepting it; the credits are back in the wallet and no money was returned.`;
    const recredited = await recreditTopup(
      { ledger },
      {
        refundId: row.id,
        workflowId: row.workflow_id,
        paymentId: row.payment_id,
        customerId: row.customer_id,
        credits: Number(row.credits),
        amount: Number(row.amount),
      },
      async (tx) => {
        await tx`
          update refunds set status = 'failed', error_code = 'refund_failed_at_stripe',
                             error_message = ${message}, updated_at = now()
          where id = ${row.id}`;
      },
    );
    await raiseAlert(
      db.sql,
      {
        key: `refund_failed:${row.id}`,
        kind: 'refund_failed',
        severity: 'warning',
        message: `Refund ${row.id} of payment ${row.payment_id}: ${message} Check the payment at Stripe and refund by hand if it should be.`,
        details: {
          refundId: row.id,
          paymentId: row.payment_id,
          stripeRefundId: refund.id,
          credits: Number(row.credits),
          entryId: recredited.entryId,
        },
        customerId: row.customer_id,
      },
      alertSinks,
    );
  }

  return {
    /**
     * Lists the payment intent's refunds at Stripe, every page, and answers those this service
     * must take back: succeeded, and not one of our own API refunds (whose credits the top-up
     * refund took back before it asked Stripe). The heartbeat carries the cursor, so a retried
     * attempt resumes at the page it reached.
     */
    async listStripeRefundsToTakeBack(input: {
      paymentId: string;
      paymentIntentId: string;
    }): Promise<StripeRefundsListed> {
      const ctx = Context.current();
      const resumed = ctx.info.heartbeatDetails as
        { cursor: string | null; found: RefundInfo[] } | undefined;
      const found: RefundInfo[] = resumed?.found ?? [];
      let cursor: string | null = resumed?.cursor ?? null;
      for (;;) {
        const page = await gateway().listRefunds({
          paymentIntentId: input.paymentIntentId,
          startingAfter: cursor,
          limit: 100,
        });
        found.push(...page.data);
        cursor = page.nextCursor;
        ctx.heartbeat({ cursor, found });
        if (!page.hasMore || !cursor) break;
      }
      const succeeded = found.filter(
        (r) => r.status === 'succeeded' && r.paymentIntentId === input.paymentIntentId,
      );
      const ourIds = succeeded
        .map((r) => r.metadata.refundId)
        .filter((id): id is string => typeof id === 'string' && id.length > 0);
      const ours = new Set(
        ourIds.length === 0
          ? []
          : (
              await db.sql<{ id: string }[]>`
                select id from refunds where id = any(${ourIds}::text[]) and kind = 'topup'`
            ).map((r) => r.id),
      );
      const foreign = succeeded.filter((r) => !ours.has(r.metadata.refundId ?? ''));
      // One of our own refunds that Stripe accepted and then failed (or cancelled): the money did
      // not go back, so the credits its claw-back took go back to the wallet, once.
      for (const failed of found.filter(
        (r) =>
          (r.status === 'failed' || r.status === 'canceled') &&
          r.paymentIntentId === input.paymentIntentId &&
          typeof r.metadata.refundId === 'string',
      )) {
        await recreditOwnFailedRefund(failed);
      }
      // Oldest first, so credits are taken back in the order the money went back.
      foreign.sort((a, b) => a.created - b.created || a.id.localeCompare(b.id));
      log.info('stripe refunds listed', {
        paymentId: input.paymentId,
        listed: found.length,
        toTakeBack: foreign.length,
      });
      return {
        toTakeBack: foreign.map((r) => ({ id: r.id, amount: r.amount, currency: r.currency })),
        succeededAmount: succeeded.reduce((sum, r) => sum + r.amount, 0),
      };
    },

    /**
     * Takes back one Stripe refund's share of the payment's credits, once: what the wallet holds
     * goes to the refunds account, the rest becomes the customer's debt (receivables). The
     * payment's refunded totals, our refunds row, the debt, the payment's status and the
     * customer's notification commit with the entry.
     */
    async takeBackStripeRefund(input: {
      paymentId: string;
      workflowId: string;
      refund: StripeRefundToTakeBack;
    }): Promise<StripeRefundTakenBack> {
      const stripeRefundId = input.refund.id;
      const key = stripeRefundEntryKey(stripeRefundId);
      const rowId = stripeRefundRowId(stripeRefundId);
      const { taskQueue } = Context.current().info;
      for (let attempt = 1; ; attempt++) {
        const done = await takenBack(stripeRefundId);
        if (done) return done;
        const payment = await readPaymentRow(db, input.paymentId);
        if (!payment) {
          throw new BusinessError('payment_not_found', `no payment ${input.paymentId}`);
        }
        if (!(CREDITED_STATUSES as readonly string[]).includes(payment.status)) {
          // Stripe refunded a payment whose credit has not landed yet: retry until it has.
          throw new Error(`payment ${payment.id} is ${payment.status}, not credited yet; retrying`);
        }
        const refundedCredits = Number(payment.refunded_credits);
        const share = creditsShare(
          {
            credits: Number(payment.credits),
            amount: Number(payment.amount),
            refundedCredits,
          },
          input.refund.amount,
        );
        const customerId = payment.customer_id;
        const recordRefund = async (tx: Tx, debt: number, entryId: number | null) => {
          const [locked] = await tx<{ refunded_credits: string }[]>`
            select refunded_credits from payments where id = ${payment.id} for update`;
          if (Number(locked?.refunded_credits) !== refundedCredits) throw new PaymentMoved();
          await tx`
            update payments set
              refunded_credits = refunded_credits + ${share},
              refunded_amount = refunded_amount + ${input.refund.amount},
              updated_at = now()
            where id = ${payment.id}`;
          await tx`
            insert into refunds (id, workflow_id, kind, customer_id, payment_id, stripe_refund_id,
                                 credits, amount, currency, debt_credits, reason, requested_by,
                                 status, entry_id)
            values (${rowId}, ${input.workflowId}, 'stripe', ${customerId}, ${payment.id},
                    ${stripeRefundId}, ${share}, ${input.refund.amount},
                    ${input.refund.currency || payment.currency}, ${debt}, 'refunded at Stripe',
                    'stripe', 'refunded', ${entryId})`;
          if (debt > 0) {
            await tx`
              insert into customer_debts (customer_id, source, credits, entry_id)
              values (${customerId}, ${key}, ${debt}, ${entryId})`;
            await raiseAlert(
              tx,
              {
                key: `customer_debt:${key}`,
                kind: 'customer_debt',
                severity: 'warning',
                message: `Stripe refund ${stripeRefundId} of payment ${payment.id} took back ${share} credits; the wallet held only ${share - debt}, so ${debt} credits are now the customer's debt, settled first by their next top-up.`,
                details: { paymentId: payment.id, stripeRefundId, credits: share, debt },
                customerId,
              },
              alertSinks,
            );
          }
          await settleRefundStatus(tx, payment.id);
        };

        try {
          if (share === 0) {
            // Every credit is already taken back: record the money only, once.
            await db.sql.begin(async (tx) => recordRefund(tx, 0, null));
            log.info('stripe refund recorded, no credits left to take back', {
              paymentId: payment.id,
              stripeRefundId,
            });
            return {
              stripeRefundId,
              refundId: rowId,
              credits: 0,
              debtCredits: 0,
              entryId: null,
              replayed: false,
            };
          }
          // What the wallet can give now (spendable grants), the payment's own grant first.
          const wallet = await spendableCredits(db, customerId);
          const held = Math.max(0, Math.min(share, wallet));
          const debt = share - held;
          const lines: PostingLine[] = [{ account: { system: 'refunds' }, amount: share }];
          if (held > 0) {
            lines.push({
              account: { wallet: customerId },
              amount: -held,
              ...(await drawTopupFirst(db, payment.id)),
            });
          }
          if (debt > 0) lines.push({ account: { system: 'receivables' }, amount: -debt });
          const posted = await ledger.postEntry(
            {
              idempotencyKey: key,
              type: 'stripe_refund_clawback',
              description: `Refunded at Stripe: ${share} credits of payment ${payment.id} taken back`,
              workflowId: input.workflowId,
              metadata: {
                paymentId: payment.id,
                stripeRefundId,
                amount: input.refund.amount,
                currency: input.refund.currency,
                debtCredits: debt,
              },
              lines,
            },
            async (tx, entry) => {
              await recordRefund(tx, debt, entry.entryId);
              const balanceAfter =
                held > 0 ? entry.lines[1]!.balanceAfter : await ledger.walletBalance(customerId);
              await enqueueMessage(
                tx,
                { taskQueue, entryId: entry.entryId },
                {
                  idempotencyKey: `${key}:notify`,
                  customerId,
                  kind: 'credits_deducted',
                  title: 'Credits taken back after a refund',
                  body:
                    debt > 0
                      ? `A refund of your payment ${payment.id} took back ${share} credits: ${held} from your balance and ${debt} owed, settled by your next top-up. Balance: ${balanceAfter}.`
                      : `A refund of your payment ${payment.id} took back ${share} credits. Balance: ${balanceAfter}.`,
                  amount: share,
                  balanceAfter,
                  data: { paymentId: payment.id, refundId: rowId, debtCredits: debt },
                },
              );
            },
          );
          if (posted.replayed) {
            // Another attempt posted it between our look and our post; its row is the answer.
            const row = await takenBack(stripeRefundId);
            if (row) return row;
            throw new Error(`entry ${key} exists without its refund row; retrying`);
          }
          log.info('stripe refund taken back', {
            paymentId: payment.id,
            stripeRefundId,
            credits: share,
            debt,
            entryId: posted.entryId,
          });
          return {
            stripeRefundId,
            refundId: rowId,
            credits: share,
            debtCredits: debt,
            entryId: posted.entryId,
            replayed: false,
          };
        } catch (err) {
          // The wallet or the payment moved since they were read, or a concurrent attempt of the
          // same refund won the race: look again.
          const moved =
            err instanceof PaymentMoved ||
            (err instanceof BusinessError &&
              (err.code === 'insufficient_credits' || err.code === 'idempotency_conflict')) ||
            (err as { code?: string }).code === '23505';
          if (!moved || attempt >= CLAW_BACK_ATTEMPTS) {
            if (moved) {
              throw new Error(`payment ${payment.id} kept moving; retrying later`, { cause: err });
            }
            throw err;
          }
        }
      }
    },
  };
}
