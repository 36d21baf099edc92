// Auto top-up activities: saving a checkout's card, and running one requested charge from the
// monthly cap through the off-session charge to the credit (or the recorded, paused failure).
import { Context, log } from '@temporalio/activity';
import { toDate, type Database } from '../db/client.js';
import type { Ledger, Tx } from '../ledger/ledger.js';
import { enqueueMessage, type OutboxMessage } from '../notifications/outbox.js';
import {
  StripeRequestRefused,
  type OffSessionChargeResult,
  type StripeGateway,
} from '../stripe/gateway.js';
import { refusalsAreFinal } from './ledger.js';

export interface AutoTopupActivityDeps {
  db: Database;
  ledger: Ledger;
  /** Absent in processes that run no payments; a charge then retries until it is configured. */
  stripe?: StripeGateway | undefined;
}

/** A requested charge as the workflow carries it. */
export interface AutoTopupCharge {
  id: string;
  customerId: string;
  crossing: number;
  pack: string;
  credits: number;
  /** Minor units. */
  amount: number;
  currency: string;
  expiresInDays: number | null;
}

/**
 * What to do with the customer's oldest open charge: `charge` it with the saved card, or it was
 * settled without a charge (`skipped`: capped, disabled, paused, no card).
 */
export type NextAutoTopupCharge =
  | {
      action: 'charge';
      charge: AutoTopupCharge;
      stripeCustomerId: string;
      paymentMethodId: string;
    }
  | { action: 'skipped'; charge: AutoTopupCharge; status: string; reason: string };

/** A charge's end as the workflow reports it. */
export interface AutoTopupChargeOutcome {
  chargeId: string;
  status: 'succeeded' | 'declined' | 'requires_action' | 'failed' | 'capped';
  code: string | null;
  grantId: string | null;
}

/** A failed charge: what Stripe (or our own checks) said. */
export interface AutoTopupFailure {
  chargeId: string;
  status: 'declined' | 'requires_action' | 'failed';
  code: string;
  message: string;
  paymentIntentId: string | null;
}

interface ChargeRow {
  id: string;
  customer_id: string;
  crossing: string;
  status: string;
  pack: string;
  credits: string;
  amount: string;
  currency: string;
  expires_in_days: number | null;
  grant_id: string | null;
  payment_intent_id: string | null;
}

const toCharge = (row: ChargeRow): AutoTopupCharge => ({
  id: row.id,
  customerId: row.customer_id,
  crossing: Number(row.crossing),
  pack: row.pack,
  credits: Number(row.credits),
  amount: Number(row.amount),
  currency: row.currency,
  expiresInDays: row.expires_in_days,
});

/** Price in major units for a message ("12.50 EUR"). */
const price = (amount: number, currency: string) =>
  `${(amount / 100).toFixed(2)} ${currency.toUpperCase()}`;

/** Settings are paused until the customer changes them; nothing is charged meanwhile. */
async function pause(tx: Tx, customerId: string, reason: string): Promise<void> {
  await tx`
    update auto_topup_settings set paused_at = coalesce(paused_at, now()),
      pause_reason = coalesce(pause_reason, ${reason}), updated_at = now()
    where customer_id = ${customerId}`;
}

/** Queues a message for the customer with the money movement (or decision) it is about. */
async function notifyCustomer(tx: Tx, message: OutboxMessage): Promise<void> {
  await enqueueMessage(tx, { taskQueue: Context.current().info.taskQueue }, message);
}

export function createAutoTopupActivities({ db, ledger, stripe }: AutoTopupActivityDeps) {
  const gateway = (): StripeGateway => {
    // Configuration an operator can fix; the activity retries until then.
    if (!stripe) throw new Error('Stripe is not configured: set STRIPE_SECRET_KEY on the worker');
    return stripe;
  };

  /** Settles a charge without charging: its status, the reason, and a pause or a message. */
  async function skip(
    tx: Tx,
    charge: AutoTopupCharge,
    status: 'failed' | 'capped',
    code: string,
    message: string,
    options: { pause?: boolean; notify?: OutboxMessage } = {},
  ): Promise<NextAutoTopupCharge> {
    await tx`
      update auto_topup_charges set status = ${status}, failure_code = ${code},
        failure_message = ${message}, updated_at = now()
      where id = ${charge.id}`;
    if (options.pause) await pause(tx, charge.customerId, `${code}: ${message}`);
    if (options.notify) await notifyCustomer(tx, options.notify);
    log.info('auto top-up charge settled without a charge', { chargeId: charge.id, status, code });
    return { action: 'skipped', charge, status, reason: code };
  }

  return {
    /**
     * After a saveCard checkout was paid: stores the Stripe customer and card the payment used,
     * so auto top-up can charge it off-session. A payment without a reusable card saves nothing.
     */
    async saveCheckoutCard(input: { paymentId: string }): Promise<{ saved: boolean }> {
      const [payment] = await db.sql<{ customer_id: string; payment_intent_id: string | null }[]>`
        select customer_id, payment_intent_id from payments where id = ${input.paymentId}`;
      if (!payment?.payment_intent_id) {
        log.warn('card not saved: the payment has no payment intent', {
          paymentId: input.paymentId,
        });
        return { saved: false };
      }
      let card;
      try {
        card = await gateway().retrievePaymentIntentCard(payment.payment_intent_id);
      } catch (err) {
        if (err instanceof StripeRequestRefused) {
          log.warn('card not saved: Stripe refused to show the payment intent', {
            paymentId: input.paymentId,
            code: err.code,
          });
          return { saved: false };
        }
        throw err;
      }
      if (!card.stripeCustomerId || !card.paymentMethodId || card.setupFutureUsage === null) {
        log.warn('card not saved: the payment intent has no reusable card', {
          paymentId: input.paymentId,
          hasCustomer: card.stripeCustomerId !== null,
          hasPaymentMethod: card.paymentMethodId !== null,
        });
        return { saved: false };
      }
      await db.sql`
        insert into saved_payment_methods
          (customer_id, stripe_customer_id, payment_method_id, payment_id, card_brand, card_last4)
        values (${payment.customer_id}, ${card.stripeCustomerId}, ${card.paymentMethodId},
                ${input.paymentId}, ${card.cardBrand}, ${card.cardLast4})
        on conflict (customer_id) do update set
          stripe_customer_id = excluded.stripe_customer_id,
          payment_method_id = excluded.payment_method_id, payment_id = excluded.payment_id,
          card_brand = excluded.card_brand, card_last4 = excluded.card_last4, updated_at = now()`;
      log.info('card saved for auto top-up', { paymentId: input.paymentId });
      return { saved: true };
    },

    /**
     * Takes the customer's oldest open charge: checks the settings and the monthly cap, and marks
     * it `charging` when it is to be charged. A charge left `charging` by an interrupted run is
     * handed back as it is (its Stripe idempotency key makes charging it again safe).
     */
    async nextAutoTopupCharge(input: {
      customerId: string;
      workflowId: string;
    }): Promise<NextAutoTopupCharge | null> {
      return db.sql.begin(async (tx) => {
        const [row] = await tx<ChargeRow[]>`
          select * from auto_topup_charges
          where customer_id = ${input.customerId} and status in ('requested', 'charging')
          order by crossing limit 1 for update`;
        if (!row) return null;
        const charge = toCharge(row);
        const [settings] = await tx<
          { enabled: boolean; paused_at: Date | null; monthly_cap: number }[]
        >`select enabled, paused_at, monthly_cap from auto_topup_settings
          where customer_id = ${input.customerId} for update`;
        const [card] = await tx<{ stripe_customer_id: string; payment_method_id: string }[]>`
          select stripe_customer_id, payment_method_id from saved_payment_methods
          where customer_id = ${input.customerId}`;
        const charging = (): NextAutoTopupCharge => ({
          action: 'charge',
          charge,
          stripeCustomerId: card!.stripe_customer_id,
          paymentMethodId: card!.payment_method_id,
        });
        if (row.status === 'charging' && card) return charging();

        if (!settings?.enabled) {
          return skip(tx, charge, 'failed', 'auto_topup_disabled', 'auto top-up was turned off');
        }
        if (settings.paused_at) {
          return skip(tx, charge, 'failed', 'auto_topup_paused', 'auto top-up is paused');
        }
        // The cap counts the calendar month in UTC.
        const [month] = await tx<{ count: string }[]>`
          select count(*) from auto_topup_charges
          where customer_id = ${input.customerId} and status = 'succeeded'
            and created_at >= date_trunc('month', now() at time zone 'utc') at time zone 'utc'`;
        if (Number(month?.count ?? 0) >= settings.monthly_cap) {
          return skip(
            tx,
            charge,
            'capped',
            'monthly_cap_reached',
            `${settings.monthly_cap} auto top-ups this month already`,
            {
              notify: {
                idempotencyKey: `${charge.id}:capped`,
                customerId: charge.customerId,
                kind: 'auto_topup_failed',
                title: 'Auto top-up skipped',
                body: `Your balance fell below your auto top-up threshold, but you already had ${settings.monthly_cap} auto top-ups this month, your monthly limit. Top up by hand or raise the limit.`,
                data: { chargeId: charge.id, reason: 'monthly_cap_reached' },
              },
            },
          );
        }
        if (!card) {
          return skip(tx, charge, 'failed', 'no_saved_payment_method', 'no saved card to charge', {
            pause: true,
            notify: {
              idempotencyKey: `${charge.id}:failed`,
              customerId: charge.customerId,
              kind: 'auto_topup_failed',
              title: 'Auto top-up paused',
              body: 'We could not top up your credits: there is no saved card. Buy a pack with "save card" and turn auto top-up on again.',
              data: { chargeId: charge.id, reason: 'no_saved_payment_method' },
            },
          });
        }
        await tx`
          update auto_topup_charges set status = 'charging', workflow_id = ${input.workflowId},
            updated_at = now()
          where id = ${charge.id}`;
        return charging();
      });
    },

    /**
     * Charges the saved card off-session for one charge; the idempotency key is the charge id, so
     * a retry after a timeout gets Stripe's first answer. Declines come back as outcomes.
     */
    async chargeAutoTopup(input: {
      charge: AutoTopupCharge;
      stripeCustomerId: string;
      paymentMethodId: string;
      workflowId: string;
    }): Promise<OffSessionChargeResult | { outcome: 'failed'; code: string; message: string }> {
      const { charge } = input;
      try {
        const result = await gateway().chargeSavedCard({
          stripeCustomerId: input.stripeCustomerId,
          paymentMethodId: input.paymentMethodId,
          amount: charge.amount,
          currency: charge.currency,
          description: `Auto top-up: ${charge.credits} credits (${charge.pack} pack)`,
          metadata: {
            autoTopupChargeId: charge.id,
            workflowId: input.workflowId,
            customerId: charge.customerId,
            pack: charge.pack,
            credits: String(charge.credits),
          },
          idempotencyKey: charge.id,
        });
        log.info('auto top-up charge answered', { chargeId: charge.id, outcome: result.outcome });
        return result;
      } catch (err) {
        // Stripe refused the request itself (the card was removed, the key reused): final.
        if (err instanceof StripeRequestRefused) {
          return { outcome: 'failed', code: err.code, message: err.message };
        }
        throw err;
      }
    },

    /**
     * Credits a succeeded charge: a paid grant (source auto_topup) keyed by the charge id, with
     * the charge marked succeeded and the customer's message queued in the same transaction.
     */
    async creditAutoTopup(input: {
      chargeId: string;
      paymentIntentId: string;
      workflowId: string;
    }): Promise<{ grantId: string | null; expiresAt: string | null; entryId: number | null }> {
      return refusalsAreFinal(async () => {
        const [row] = await db.sql<ChargeRow[]>`
          select * from auto_topup_charges where id = ${input.chargeId}`;
        if (!row) throw new Error(`no auto top-up charge ${input.chargeId}`);
        const charge = toCharge(row);
        const expiresAt =
          charge.expiresInDays !== null
            ? new Date(Date.now() + charge.expiresInDays * 24 * 60 * 60 * 1000)
            : null;
        const posted = await ledger.postEntry(
          {
            idempotencyKey: charge.id,
            type: 'auto_topup',
            description: `Auto top-up: ${charge.credits} credits (${charge.pack} pack)`,
            workflowId: input.workflowId,
            metadata: {
              autoTopupChargeId: charge.id,
              pack: charge.pack,
              amount: charge.amount,
              currency: charge.currency,
              paymentIntentId: input.paymentIntentId,
            },
            lines: [
              { account: { system: 'stripe_clearing' }, amount: -charge.credits },
              {
                account: { wallet: charge.customerId },
                amount: charge.credits,
                credit: {
                  grant: {
                    category: 'paid',
                    source: 'auto_topup',
                    expiresAt,
                    reason: `auto top-up (${charge.pack} pack)`,
                    metadata: { autoTopupChargeId: charge.id },
                  },
                },
              },
            ],
          },
          async (tx, entry) => {
            const grantId = entry.grants.find((g) => g.kind === 'grant')?.grantId ?? null;
            const [moved] = await tx`
              update auto_topup_charges set status = 'succeeded', grant_id = ${grantId},
                payment_intent_id = ${input.paymentIntentId}, failure_code = null,
                failure_message = null, updated_at = now()
              where id = ${charge.id} and status in ('charging', 'requested')
              returning id`;
            // Someone settled the charge otherwise meanwhile: roll back and look again.
            if (!moved) throw new Error(`auto top-up charge ${charge.id} is no longer charging`);
            const wallet = entry.lines.find((l) => 'wallet' in l.account);
            await notifyCustomer(tx, {
              idempotencyKey: `${charge.id}:succeeded`,
              customerId: charge.customerId,
              kind: 'auto_topup_succeeded',
              title: 'Credits topped up',
              body: `Your balance fell below your threshold, so we charged ${price(charge.amount, charge.currency)} to your saved card for ${charge.credits} credits (${charge.pack} pack).`,
              amount: charge.credits,
              ...(wallet ? { balanceAfter: BigInt(wallet.balanceAfterExact) } : {}),
              data: { chargeId: charge.id, paymentIntentId: input.paymentIntentId },
            });
          },
        );
        const grantId = posted.grants.find((g) => g.kind === 'grant')?.grantId ?? null;
        const [grant] = grantId
          ? await db.sql<{ expires_at: Date | string | null }[]>`
              select expires_at from grants where id = ${grantId}`
          : [];
        log.info('auto top-up credited', {
          chargeId: charge.id,
          entryId: posted.entryId,
          replayed: posted.replayed,
        });
        return {
          grantId,
          expiresAt: grant?.expires_at ? toDate(grant.expires_at).toISOString() : null,
          entryId: posted.entryId,
        };
      });
    },

    /**
     * Records a charge that did not go through: the failure on the charge, auto top-up paused with
     * the reason (until the customer changes the settings), and the customer told. Never retried.
     */
    async recordAutoTopupFailure(input: AutoTopupFailure): Promise<void> {
      await db.sql.begin(async (tx) => {
        const [row] = await tx<ChargeRow[]>`
          update auto_topup_charges set status = ${input.status}, failure_code = ${input.code},
            failure_message = ${input.message.slice(0, 1000)},
            payment_intent_id = coalesce(${input.paymentIntentId}, payment_intent_id),
            updated_at = now()
          where id = ${input.chargeId} and status in ('charging', 'requested')
          returning *`;
        if (!row) return; // already recorded by an earlier attempt
        const charge = toCharge(row);
        await pause(tx, charge.customerId, `${input.code}: ${input.message.slice(0, 200)}`);
        const why =
          input.status === 'requires_action'
            ? 'your bank asked you to confirm the payment, which we cannot do while you are away'
            : input.status === 'declined'
              ? 'your card was declined'
              : 'the payment could not be made';
        await notifyCustomer(tx, {
          idempotencyKey: `${charge.id}:failed`,
          customerId: charge.customerId,
          kind: 'auto_topup_failed',
          title: 'Auto top-up paused',
          body: `We tried to charge ${price(charge.amount, charge.currency)} for ${charge.credits} credits, but ${why}. Auto top-up is paused until you update its settings.`,
          data: { chargeId: charge.id, reason: input.code, status: input.status },
        });
      });
      log.warn('auto top-up failed and paused', {
        chargeId: input.chargeId,
        status: input.status,
        code: input.code,
      });
    },
  };
}
