// Checkout activities: the payment record, the Stripe session, and the top-up credit, each
// idempotent so a retried or replayed step changes nothing twice.
import { ApplicationFailure, log } from '@temporalio/activity';
import { toDate, type Database } from '../db/client.js';
import { BusinessError } from '../errors.js';
import type { NewGrant } from '../ledger/grants.js';
import type { Ledger, PostedEntry, PostingLine, Tx } from '../ledger/ledger.js';
import {
  CREDITED_STATUSES,
  transitionPayment,
  type PaymentStatus,
  type TransitionResult,
} from '../payments/state-machine.js';
import { DEFAULT_CREDIT_PACKS, packExpiry, type CreditPacks } from '../payments/packs.js';
import type { CheckoutInput } from '../shared.js';
import {
  StripeRequestRefused,
  type CheckoutSessionInfo,
  type StripeGateway,
} from '../stripe/gateway.js';
import { topupCredited } from '../notifications/messages.js';
import { refusalsAreFinal } from './ledger.js';
import { enqueueNotifications } from './notifications.js';

export interface PaymentRecord {
  id: string;
  workflowId: string;
  customerId: string;
  pack: string;
  credits: number;
  amount: number;
  currency: string;
  status: PaymentStatus;
  sessionId: string | null;
  checkoutUrl: string | null;
  paymentIntentId: string | null;
  topupEntryId: number | null;
  createdAt: string;
  updatedAt: string;
}

interface PaymentRow {
  id: string;
  workflow_id: string;
  customer_id: string;
  pack: string;
  credits: string;
  amount: string;
  currency: string;
  status: PaymentStatus;
  stripe_session_id: string | null;
  checkout_url: string | null;
  payment_intent_id: string | null;
  topup_entry_id: string | null;
  created_at: Date | string;
  updated_at: Date | string;
}

export function toPaymentRecord(row: PaymentRow): PaymentRecord {
  return {
    id: row.id,
    workflowId: row.workflow_id,
    customerId: row.customer_id,
    pack: row.pack,
    credits: Number(row.credits),
    amount: Number(row.amount),
    currency: row.currency,
    status: row.status,
    sessionId: row.stripe_session_id,
    checkoutUrl: row.checkout_url,
    paymentIntentId: row.payment_intent_id,
    topupEntryId: row.topup_entry_id === null ? null : Number(row.topup_entry_id),
    createdAt: toDate(row.created_at).toISOString(),
    updatedAt: toDate(row.updated_at).toISOString(),
  };
}

/** Reads one payment, or undefined. */
export async function readPayment(db: Database, paymentId: string) {
  const [row] = await db.sql<PaymentRow[]>`select * from payments where id = ${paymentId}`;
  return row ? toPaymentRecord(row) : undefined;
}

export interface CheckoutActivityDeps {
  db: Database;
  ledger: Ledger;
  /** Absent in processes that run no checkouts; a checkout then retries until it is configured. */
  stripe?: StripeGateway | undefined;
  /** The packs on sale (CREDIT_PACKS): a pack's `expiresInDays` dates its top-up grant. */
  packs?: CreditPacks | undefined;
}

export interface TopupResult {
  credited: boolean;
  entryId: number | null;
  balanceAfter: number | null;
  replayed: boolean;
  status: PaymentStatus;
  /** The paid grant the top-up created (none when every credit settled a debt). */
  grantId?: string | null;
  /** When that grant expires (ISO), from the pack's `expiresInDays`; null when it never does. */
  expiresAt?: string | null;
}

/** The grant a top-up entry created, if any, with its expiry. */
async function topupGrant(
  db: Database,
  entryId: number | null,
): Promise<{ grantId: string | null; expiresAt: string | null }> {
  if (entryId === null) return { grantId: null, expiresAt: null };
  const [row] = await db.sql<{ id: string; expires_at: Date | string | null }[]>`
    select id, expires_at from grants where entry_id = ${entryId} and source = 'topup'
    order by created_at limit 1`;
  return {
    grantId: row?.id ?? null,
    expiresAt: row?.expires_at ? toDate(row.expires_at).toISOString() : null,
  };
}

function requirePayment(payment: PaymentRecord | undefined, paymentId: string): PaymentRecord {
  if (!payment) {
    throw ApplicationFailure.create({
      message: `no payment ${paymentId}`,
      type: 'payment_not_found',
      nonRetryable: true,
    });
  }
  return payment;
}

function stripeRefusalsAreFinal(err: unknown): never {
  if (err instanceof StripeRequestRefused) {
    throw ApplicationFailure.create({
      message: `Stripe refused the request (${err.code}): ${err.message}`,
      type: 'stripe_request_refused',
      nonRetryable: true,
    });
  }
  throw err;
}

/** Credits the customer still owes (customer_debts not yet settled). */
async function openDebt(db: Database, customerId: string): Promise<number> {
  const [row] = await db.sql<{ open: string | null }[]>`
    select sum(credits - settled_credits) as open from customer_debts
    where customer_id = ${customerId} and settled_credits < credits`;
  return Number(row?.open ?? 0);
}

/**
 * Inside the top-up's posting: settles `credits` of the customer's debts, oldest first. The debts
 * are locked; if they no longer add up to what the posting took (another top-up settled them
 * meanwhile), the transaction rolls back and the activity retries with what is owed now.
 */
async function settleDebts(tx: Tx, customerId: string, credits: number): Promise<void> {
  const debts = await tx<{ id: string; open: string }[]>`
    select id, credits - settled_credits as open from customer_debts
    where customer_id = ${customerId} and settled_credits < credits
    order by id for update`;
  let left = credits;
  for (const debt of debts) {
    if (left === 0) break;
    const take = Math.min(left, Number(debt.open));
    await tx`
      update customer_debts set settled_credits = settled_credits + ${take},
        settled_at = case when settled_credits + ${take} = credits then now() else settled_at end
      where id = ${debt.id}`;
    left -= take;
  }
  if (left > 0) throw new Error(`the debts of ${customerId} changed while settling; retrying`);
}

/** The wallet's balance after an entry (read when the entry has no wallet line). */
async function walletAfter(tx: Tx, entry: PostedEntry, customerId: string): Promise<number> {
  const line = entry.lines.find((l) => 'wallet' in l.account);
  if (line) return line.balanceAfter;
  const [row] = await tx<{ balance: string }[]>`
    select balance from accounts where kind = 'wallet' and customer_id = ${customerId}`;
  return Number(row?.balance ?? 0);
}

/** A saveCard session reuses the Stripe customer of the customer's saved card, if any. */
async function cardToSave(db: Database, customerId: string) {
  const [saved] = await db.sql<{ stripe_customer_id: string }[]>`
    select stripe_customer_id from saved_payment_methods where customer_id = ${customerId}`;
  return { saveCard: true, stripeCustomerId: saved?.stripe_customer_id ?? null };
}

export function createCheckoutActivities({ db, ledger, stripe, packs }: CheckoutActivityDeps) {
  const onSale = packs ?? DEFAULT_CREDIT_PACKS;
  const gateway = (): StripeGateway => {
    // Configuration an operator can fix; the activity retries until then.
    if (!stripe) throw new Error('Stripe is not configured: set STRIPE_SECRET_KEY on the worker');
    return stripe;
  };

  return {
    /** Records the payment (status init) once; a repeat returns the row as it stands. */
    async recordPayment(input: CheckoutInput & { workflowId: string }): Promise<PaymentRecord> {
      return refusalsAreFinal(async () => {
        try {
          await db.sql`
            insert into payments (id, workflow_id, customer_id, pack, credits, amount, currency, status)
            values (${input.paymentId}, ${input.workflowId}, ${input.customerId}, ${input.pack},
                    ${input.credits}, ${input.amount}, ${input.currency}, 'init')
            on conflict (id) do nothing`;
        } catch (err) {
          if ((err as { code?: string }).code === '23503') {
            throw new BusinessError(
              'customer_not_found',
              `no customer ${input.customerId} for payment ${input.paymentId}`,
            );
          }
          throw err;
        }
        return requirePayment(await readPayment(db, input.paymentId), input.paymentId);
      });
    },

    /** Creates the Stripe Checkout Session once (keyed by the workflow) and stores its URL. */
    async openCheckoutSession(input: {
      paymentId: string;
      workflowId: string;
      expiresAt: number;
      saveCard?: boolean;
    }): Promise<PaymentRecord> {
      const payment = requirePayment(await readPayment(db, input.paymentId), input.paymentId);
      if (payment.sessionId) return payment;
      // Stripe wants expires_at 30 minutes to 24 hours from the moment of the call, which can be
      // later than the workflow's start; the workflow's own timer still ends the wait on time.
      const now = Math.floor(Date.now() / 1000);
      const expiresAt = Math.min(Math.max(input.expiresAt, now + 31 * 60), now + 24 * 60 * 60 - 60);
      let session: CheckoutSessionInfo;
      try {
        session = await gateway().createCheckoutSession({
          paymentId: payment.id,
          workflowId: input.workflowId,
          customerId: payment.customerId,
          pack: payment.pack,
          credits: payment.credits,
          amount: payment.amount,
          currency: payment.currency,
          expiresAt,
          idempotencyKey: `${input.workflowId}:create-session`,
          ...(input.saveCard ? await cardToSave(db, payment.customerId) : {}),
        });
      } catch (err) {
        return stripeRefusalsAreFinal(err);
      }
      await db.sql`
        update payments set stripe_session_id = ${session.id}, checkout_url = ${session.url},
          expires_at = to_timestamp(${expiresAt}), updated_at = now()
        where id = ${payment.id} and stripe_session_id is null`;
      log.info('checkout session opened', { paymentId: payment.id, sessionId: session.id });
      return requirePayment(await readPayment(db, input.paymentId), input.paymentId);
    },

    /** Compensation: expires the Stripe session so nobody pays after we gave up waiting. */
    async expireCheckoutSession(input: {
      sessionId: string;
      workflowId: string;
    }): Promise<CheckoutSessionInfo> {
      try {
        const session = await gateway().expireCheckoutSession(
          input.sessionId,
          `${input.workflowId}:expire-session`,
        );
        log.info('checkout session expired at Stripe', {
          sessionId: input.sessionId,
          status: session.status,
          paymentStatus: session.paymentStatus,
        });
        return session;
      } catch (err) {
        return stripeRefusalsAreFinal(err);
      }
    },

    /** Moves the payment to `paid` (from init, or expired/failed for a late payment). */
    async markPaymentPaid(input: {
      paymentId: string;
      paymentIntentId: string | null;
      cause: string;
    }): Promise<TransitionResult> {
      const result = await transitionPayment(
        db.sql,
        {
          paymentId: input.paymentId,
          to: 'paid',
          paymentIntentId: input.paymentIntentId,
          cause: input.cause,
        },
        log,
      );
      log.info('payment paid', { paymentId: input.paymentId, outcome: result.outcome });
      return result;
    },

    /** Moves the payment to `expired` or `failed`; refused (and logged) once it was paid. */
    async settleUnpaidPayment(input: {
      paymentId: string;
      to: 'expired' | 'failed';
      cause: string;
    }): Promise<TransitionResult> {
      return transitionPayment(
        db.sql,
        { paymentId: input.paymentId, to: input.to, cause: input.cause },
        log,
      );
    },

    /**
     * Credits a paid payment's pack to the wallet: one `topup` entry keyed by the payment intent,
     * and the move to `credited` in the same transaction, so it can happen only once.
     */
    async creditTopup(input: { paymentId: string; workflowId: string }): Promise<TopupResult> {
      return refusalsAreFinal(async () => {
        const payment = requirePayment(await readPayment(db, input.paymentId), input.paymentId);
        if (CREDITED_STATUSES.includes(payment.status)) {
          return {
            credited: true,
            entryId: payment.topupEntryId,
            balanceAfter: null,
            replayed: true,
            status: payment.status,
            ...(await topupGrant(db, payment.topupEntryId)),
          };
        }
        if (payment.status !== 'paid') {
          log.warn('top-up refused: payment is not paid', {
            paymentId: payment.id,
            status: payment.status,
          });
          return {
            credited: false,
            entryId: null,
            balanceAfter: null,
            replayed: false,
            status: payment.status,
          };
        }
        const idempotencyKey = payment.paymentIntentId
          ? `topup:${payment.paymentIntentId}`
          : `topup:payment:${payment.id}`;
        // What the customer owes (a refund at Stripe the wallet could not cover) is settled
        // first, inside this entry: the wallet, and so the paid grant, gets only the rest. The
        // posting re-checks it under the debts' lock and retries if it moved.
        const settled = Math.min(payment.credits, await openDebt(db, payment.customerId));
        const pack = Object.hasOwn(onSale, payment.pack) ? onSale[payment.pack] : undefined;
        const expiresAt = packExpiry(pack, new Date());
        const grant: NewGrant = {
          category: 'paid',
          source: 'topup',
          expiresAt,
          reason: `${payment.pack} pack`,
          metadata: { paymentId: payment.id, pack: payment.pack },
        };
        const lines: PostingLine[] = [
          { account: { system: 'stripe_clearing' }, amount: -payment.credits },
          ...(settled < payment.credits
            ? [
                {
                  account: { wallet: payment.customerId },
                  amount: payment.credits - settled,
                  credit: { grant },
                },
              ]
            : []),
          ...(settled > 0 ? [{ account: { system: 'receivables' }, amount: settled }] : []),
        ];
        const posted = await ledger.postEntry(
          {
            idempotencyKey,
            type: 'topup',
            description: `Top-up: ${payment.credits} credits (${payment.pack} pack)`,
            workflowId: input.workflowId,
            metadata: {
              paymentId: payment.id,
              pack: payment.pack,
              amount: payment.amount,
              currency: payment.currency,
              paymentIntentId: payment.paymentIntentId,
              sessionId: payment.sessionId,
              ...(settled > 0 ? { settledDebt: settled } : {}),
            },
            lines,
          },
          async (tx, entry) => {
            if (settled > 0) await settleDebts(tx, payment.customerId, settled);
            const moved = await transitionPayment(
              tx,
              {
                paymentId: payment.id,
                to: 'credited',
                topupEntryId: entry.entryId,
                cause: idempotencyKey,
              },
              log,
            );
            // Someone moved the payment since we read it: roll the entry back and look again.
            if (moved.outcome !== 'applied') {
              throw new Error(`payment ${payment.id} is ${moved.from ?? 'gone'}; retrying`);
            }
            const message = topupCredited({
              workflowId: input.workflowId,
              paymentId: payment.id,
              customerId: payment.customerId,
              credits: payment.credits,
              pack: payment.pack,
              balanceAfter: await walletAfter(tx, entry, payment.customerId),
            });
            await enqueueNotifications(
              tx,
              entry,
              settled > 0
                ? {
                    ...message,
                    body: `${payment.credits} credits from your ${payment.pack} pack: ${settled} settled what you owed after a refund, ${payment.credits - settled} are in your wallet.`,
                    data: { ...message.data, settledDebt: settled },
                  }
                : message,
            );
          },
        );
        const wallet = posted.lines.find((l) => 'wallet' in l.account);
        log.info('top-up credited', {
          paymentId: payment.id,
          entryId: posted.entryId,
          credits: payment.credits,
          settledDebt: settled,
          grantId: posted.grants.find((g) => g.kind === 'grant')?.grantId ?? null,
          replayed: posted.replayed,
        });
        return {
          credited: true,
          entryId: posted.entryId,
          balanceAfter: wallet
            ? wallet.balanceAfter
            : await ledger.walletBalance(payment.customerId),
          replayed: posted.replayed,
          status: 'credited',
          ...(posted.replayed
            ? await topupGrant(db, posted.entryId)
            : {
                grantId: posted.grants.find((g) => g.kind === 'grant')?.grantId ?? null,
                expiresAt: expiresAt?.toISOString() ?? null,
              }),
        };
      });
    },
  };
}
