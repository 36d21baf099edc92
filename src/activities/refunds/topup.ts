// Refund activities (topup): take a top-up's credits back, refund its money at Stripe, and put
// the credits back when Stripe refuses for good. Every step is keyed by the workflow id.
import { log } from '@temporalio/activity';
import { raiseAlert } from '../../alerts/alerts.js';
import { closeUnlessPosted } from '../../ledger/fences.js';
import type { Tx } from '../../ledger/ledger.js';
import { settleRefundStatus } from '../../payments/state-machine.js';
import type { RefundInput, RefundState } from '../../shared.js';
import { StripeRequestRefused, type StripeGateway } from '../../stripe/gateway.js';
import { enqueueNotifications } from '../notifications.js';
import {
  activityAlertLog,
  drawTopupFirst,
  REFUND_ENTRY_TYPES,
  refusal,
  refusingWith,
  topupRefundClawedBack,
  topupRefundRecredited,
  upsertRefundRow,
} from './common.js';
import type { RefundActivityDeps } from './deps.js';

/** Activities of this kind that must finish whatever the error (compensations). */
export const TOPUP_REFUND_MUST_FINISH: readonly string[] = [
  'recreditTopupRefund',
  'closeTopupClawback',
];

/** Payment statuses a top-up can be refunded from. */
export const REFUNDABLE_PAYMENT_STATUSES = ['credited', 'partially_refunded'] as const;

/** The idempotency (and fence) key of a top-up refund's claw-back. */
export const clawbackKey = (workflowId: string) => `${workflowId}:clawback`;

/**
 * Money back for `credits` of a payment: pro rata, rounded down, except that the refund taking the
 * payment's last credits gets exactly what is left of its amount, so the parts add up to the whole.
 */
export function refundAmount(
  payment: { credits: number; amount: number; refundedCredits: number; refundedAmount: number },
  credits: number,
): number {
  if (credits >= payment.credits - payment.refundedCredits) {
    return payment.amount - payment.refundedAmount;
  }
  return Number((BigInt(credits) * BigInt(payment.amount)) / BigInt(payment.credits));
}

export interface RefundablePayment {
  id: string;
  customerId: string;
  credits: number;
  amount: number;
  currency: string;
  status: string;
  paymentIntentId: string | null;
  refundedCredits: number;
  refundedAmount: number;
  createdAt: Date;
}

interface PaymentRow {
  id: string;
  customer_id: string;
  credits: string;
  amount: string;
  currency: string;
  status: string;
  payment_intent_id: string | null;
  refunded_credits: string;
  refunded_amount: string;
  created_at: Date;
}

const toRefundable = (row: PaymentRow): RefundablePayment => ({
  id: row.id,
  customerId: row.customer_id,
  credits: Number(row.credits),
  amount: Number(row.amount),
  currency: row.currency,
  status: row.status,
  paymentIntentId: row.payment_intent_id,
  refundedCredits: Number(row.refunded_credits),
  refundedAmount: Number(row.refunded_amount),
  createdAt: new Date(row.created_at),
});

type Sql = Parameters<typeof settleRefundStatus>[0];

/** One payment as a refund sees it; `forUpdate` inside the transaction that changes it. */
export async function readRefundablePayment(
  sql: Sql,
  paymentId: string,
  forUpdate = false,
): Promise<RefundablePayment | undefined> {
  const [row] = forUpdate
    ? await sql<PaymentRow[]>`
        select id, customer_id, credits, amount, currency, status, payment_intent_id,
               refunded_credits, refunded_amount, created_at
        from payments where id = ${paymentId} for update`
    : await sql<PaymentRow[]>`
        select id, customer_id, credits, amount, currency, status, payment_intent_id,
               refunded_credits, refunded_amount, created_at
        from payments where id = ${paymentId}`;
  return row ? toRefundable(row) : undefined;
}

/** A refusal when the payment cannot give back `credits` now (or all that is left when absent). */
export function topupRefundRefusal(
  payment: RefundablePayment | undefined,
  customerId: string,
  credits: number | null | undefined,
): { code: string; message: string } | undefined {
  if (!payment || payment.customerId !== customerId) {
    return { code: 'payment_not_found', message: 'No such payment for this customer.' };
  }
  const left = payment.credits - payment.refundedCredits;
  if (payment.status === 'refunded' || left <= 0) {
    return {
      code: 'nothing_to_refund',
      message: `Payment ${payment.id} is already refunded in full.`,
    };
  }
  if (!(REFUNDABLE_PAYMENT_STATUSES as readonly string[]).includes(payment.status)) {
    return {
      code: 'refund_not_allowed',
      message: `Payment ${payment.id} is ${payment.status}; only a credited or partially refunded top-up can be refunded.`,
    };
  }
  if (!payment.paymentIntentId) {
    return {
      code: 'refund_not_allowed',
      message: `Payment ${payment.id} has no Stripe payment on record to refund.`,
    };
  }
  const asked = credits ?? left;
  if (asked > left) {
    return {
      code: 'refund_exceeds_payment',
      message: `Payment ${payment.id} has ${left} credits left to refund; ${asked} were asked.`,
    };
  }
  if (refundAmount(payment, asked) <= 0) {
    return {
      code: 'refund_too_small',
      message: `${asked} credits are worth less than the smallest unit of ${payment.currency.toUpperCase()}; refund more credits at once.`,
    };
  }
  return undefined;
}

export function createTopupRefundActivities({ db, ledger, stripe, metrics }: RefundActivityDeps) {
  const gateway = (): StripeGateway => {
    // Configuration an operator can fix; the activity retries until then.
    if (!stripe) throw new Error('Stripe is not configured: set STRIPE_SECRET_KEY on the worker');
    return stripe;
  };

  return {
    /** Writes the refund's row as the workflow's state says (every status change). */
    async recordRefundState(input: {
      state: RefundState;
      requestedBy: string;
      stripeRefundId?: string | null;
    }): Promise<void> {
      await upsertRefundRow(db.sql, input.state, input.requestedBy, {
        stripeRefundId: input.stripeRefundId ?? null,
      });
      const { state } = input;
      if (state.status === 'failed') {
        // The money did not go back: the customer still expects it, so a person follows up.
        await raiseAlert(
          db.sql,
          {
            key: `refund_failed:${state.id}`,
            kind: 'refund_failed',
            severity: 'warning',
            message: `Refund ${state.id} of payment ${state.paymentId ?? '?'} failed (${state.error?.code ?? 'unknown'}); its ${state.credits} credits are back in the wallet and no money was returned. Check the payment at Stripe and refund by hand if it should be.`,
            details: {
              refundId: state.id,
              paymentId: state.paymentId,
              credits: state.credits,
              amount: state.amount,
              error: state.error,
            },
            customerId: state.customerId,
          },
          { log: activityAlertLog, counter: metrics?.alertsRaised },
        );
      }
    },

    /** Decides how many credits and how much money this refund is about; writes nothing. */
    async prepareTopupRefund(
      input: RefundInput,
    ): Promise<{ credits: number; amount: number; currency: string; paymentIntentId: string }> {
      const payment = await readRefundablePayment(db.sql, input.paymentId ?? '');
      const refused = topupRefundRefusal(payment, input.customerId, input.credits);
      if (refused || !payment) throw refusal(refused!.code, refused!.message);
      const credits = input.credits ?? payment.credits - payment.refundedCredits;
      return {
        credits,
        amount: refundAmount(payment, credits),
        currency: payment.currency,
        paymentIntentId: payment.paymentIntentId!,
      };
    },

    /**
     * Takes the credits back (wallet → refunds) and books them on the payment in the same
     * transaction; the money is fixed there, under the payment's lock, so concurrent partial
     * refunds can never give back more than was paid. Refused: credits_already_spent.
     */
    async clawBackTopupRefund(input: {
      refundId: string;
      workflowId: string;
      paymentId: string;
      customerId: string;
      credits: number;
    }): Promise<{ entryId: number; amount: number; currency: string; replayed: boolean }> {
      const key = clawbackKey(input.workflowId);
      // The top-up's own grant gives its credits back first; then burn-down order.
      const draw = await drawTopupFirst(db, input.paymentId);
      let fixed: { amount: number; currency: string } | undefined;
      const posted = await refusingWith(
        { insufficient_credits: 'credits_already_spent', invalid_data: 'refund_exceeds_payment' },
        () =>
          ledger.postEntry(
            {
              idempotencyKey: key,
              fence: key,
              type: REFUND_ENTRY_TYPES.clawback,
              description: `Top-up refund ${input.refundId}: ${input.credits} credits taken back`,
              workflowId: input.workflowId,
              metadata: { paymentId: input.paymentId, refundId: input.refundId },
              lines: [
                { account: { wallet: input.customerId }, amount: -input.credits, ...draw },
                { account: { system: 'refunds' }, amount: input.credits },
              ],
            },
            async (tx, entry) => {
              const payment = await readRefundablePayment(tx, input.paymentId, true);
              const refused = topupRefundRefusal(payment, input.customerId, input.credits);
              if (refused || !payment) throw refusal(refused!.code, refused!.message);
              const amount = refundAmount(payment, input.credits);
              // The CHECKs on payments refuse anything beyond what was paid, whatever this code says.
              await tx`
              update payments set refunded_credits = refunded_credits + ${input.credits},
                                  refunded_amount = refunded_amount + ${amount}, updated_at = now()
              where id = ${input.paymentId}`;
              await settleRefundStatus(tx, input.paymentId);
              await tx`
              update refunds set status = 'processing', credits = ${input.credits},
                                 amount = ${amount}, currency = ${payment.currency},
                                 entry_id = ${entry.entryId}, updated_at = now()
              where id = ${input.refundId}`;
              const wallet = entry.lines.find((l) => 'wallet' in l.account)!;
              await enqueueNotifications(
                tx,
                entry,
                topupRefundClawedBack({
                  workflowId: input.workflowId,
                  refundId: input.refundId,
                  paymentId: input.paymentId,
                  customerId: input.customerId,
                  credits: input.credits,
                  amount,
                  currency: payment.currency,
                  balanceAfter: wallet.balanceAfter,
                }),
              );
              fixed = { amount, currency: payment.currency };
            },
          ),
      );
      if (!fixed) {
        // Posted by an earlier attempt: the money it fixed is on the refund's row.
        const [row] = await db.sql<{ amount: string; currency: string }[]>`
          select amount, currency from refunds where id = ${input.refundId}`;
        if (!row) throw new Error(`refund ${input.refundId} has a claw-back but no row`);
        fixed = { amount: Number(row.amount), currency: row.currency };
      }
      log.info('top-up refund clawed back', {
        refundId: input.refundId,
        entryId: posted.entryId,
        credits: input.credits,
        amount: fixed.amount,
        replayed: posted.replayed,
      });
      return { entryId: posted.entryId, ...fixed, replayed: posted.replayed };
    },

    /**
     * After a refused claw-back: closes its fence so an earlier attempt that outlived its timeout
     * can never post it now; answers whether it had posted after all.
     */
    async closeTopupClawback(input: {
      workflowId: string;
    }): Promise<{ posted: boolean; entryId: number | null }> {
      const closed = await closeUnlessPosted(
        db.sql,
        clawbackKey(input.workflowId),
        `${input.workflowId}:rejected`,
      );
      return closed.posted
        ? { posted: true, entryId: closed.entryId }
        : { posted: false, entryId: null };
    },

    /**
     * Refunds the money at Stripe, once (the idempotency key is the workflow's). A refund Stripe
     * refuses, or reports failed or canceled, is final: the workflow puts the credits back.
     */
    async refundTopupAtStripe(input: {
      refundId: string;
      workflowId: string;
      paymentIntentId: string;
      amount: number;
    }): Promise<{ stripeRefundId: string; status: string | null }> {
      let refund;
      try {
        refund = await gateway().createRefund({
          paymentIntentId: input.paymentIntentId,
          amount: input.amount,
          refundId: input.refundId,
          workflowId: input.workflowId,
          idempotencyKey: `${input.workflowId}:stripe-refund`,
        });
      } catch (err) {
        if (err instanceof StripeRequestRefused) {
          throw refusal(
            'refund_refused',
            `Stripe refused the refund (${err.code}): ${err.message}`,
          );
        }
        throw err;
      }
      if (refund.status === 'failed' || refund.status === 'canceled') {
        throw refusal(
          'refund_refused',
          `Stripe reports refund ${refund.id} ${refund.status}; the card could not take it.`,
          { stripeRefundId: refund.id },
        );
      }
      await db.sql`
        update refunds set stripe_refund_id = ${refund.id}, updated_at = now()
        where id = ${input.refundId} and stripe_refund_id is null`;
      log.info('top-up refunded at Stripe', {
        refundId: input.refundId,
        stripeRefundId: refund.id,
        status: refund.status,
      });
      return { stripeRefundId: refund.id, status: refund.status };
    },

    /** Compensation: Stripe refused, so the credits go back and the payment's refund is undone. */
    async recreditTopupRefund(
      input: RecreditInput,
    ): Promise<{ entryId: number; replayed: boolean }> {
      return recreditTopup({ ledger }, input);
    },
  };
}

export interface RecreditInput {
  refundId: string;
  workflowId: string;
  paymentId: string;
  customerId: string;
  credits: number;
  amount: number;
}

/**
 * Puts a top-up refund's credits back when Stripe refused the refund, once (keyed by the refund's
 * workflow): the compensation of the refund workflow, and what a refund Stripe accepted and later
 * failed (reported by its webhook) gets. `alsoInTransaction` runs in the same transaction.
 */
export async function recreditTopup(
  { ledger }: Pick<RefundActivityDeps, 'ledger'>,
  input: RecreditInput,
  alsoInTransaction?: (tx: Tx) => Promise<void>,
): Promise<{ entryId: number; replayed: boolean }> {
  const posted = await ledger.postEntry(
    {
      idempotencyKey: `${input.workflowId}:recredit`,
      type: REFUND_ENTRY_TYPES.recredit,
      description: `Top-up refund ${input.refundId} refused at Stripe: ${input.credits} credits back`,
      workflowId: input.workflowId,
      metadata: { paymentId: input.paymentId, refundId: input.refundId },
      lines: [
        { account: { system: 'refunds' }, amount: -input.credits },
        // Back to the grants the claw-back drew from; a share whose grant closed is breakage.
        {
          account: { wallet: input.customerId },
          amount: input.credits,
          credit: { returnTo: clawbackKey(input.workflowId) },
        },
      ],
    },
    async (tx, entry) => {
      await tx`
        update payments set refunded_credits = refunded_credits - ${input.credits},
                            refunded_amount = refunded_amount - ${input.amount},
                            updated_at = now()
        where id = ${input.paymentId}`;
      await settleRefundStatus(tx, input.paymentId);
      const wallet = entry.lines.find((l) => 'wallet' in l.account)!;
      await enqueueNotifications(
        tx,
        entry,
        topupRefundRecredited({
          workflowId: input.workflowId,
          refundId: input.refundId,
          paymentId: input.paymentId,
          customerId: input.customerId,
          credits: input.credits,
          balanceAfter: wallet.balanceAfter,
        }),
      );
      await alsoInTransaction?.(tx);
    },
  );
  log.warn('top-up refund refused at Stripe; credits put back', {
    refundId: input.refundId,
    entryId: posted.entryId,
    credits: input.credits,
  });
  return { entryId: posted.entryId, replayed: posted.replayed };
}
