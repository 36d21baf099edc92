// Refund activities (purchase): an operator's goodwill credit for a verification or an order
// (item), up to what was paid for it and once per target: the posting's key names the target, and
// the goodwill_refunded CHECKs cap the credits in the database.
import { log } from '@temporalio/activity';
import type postgres from 'postgres';
import type { Database } from '../../db/client.js';
import type { RefundInput } from '../../shared.js';
import { orderDebitKey } from '../marketplace.js';
import { enqueueNotifications } from '../notifications.js';
import { verificationDebitKey } from '../verification.js';
import {
  REFUND_ENTRY_TYPES,
  entryUnderKey,
  purchaseRefunded,
  refusal,
  refusingWith,
} from './common.js';
import type { RefundActivityDeps } from './deps.js';

/** Activities of this kind that must finish whatever the error (compensations). */
export const PURCHASE_REFUND_MUST_FINISH: readonly string[] = [];

type Sql = postgres.Sql | postgres.TransactionSql;

/** What a purchase refund is about: who paid, how much can still come back, its one key. */
export interface PurchaseTarget {
  customerId: string;
  /** Credits that can still be given back for this target. */
  refundable: number;
  /** The goodwill posting's idempotency key: one per verification, order or order item. */
  key: string;
  /** The key of the purchase's debit entry: the credits go back to the grants it drew from. */
  purchaseKey: string;
  /** For the customer's message. */
  what: string;
}

/** The ledger key of a goodwill refund: at most one per target. */
export function goodwillKey(input: Pick<RefundInput, 'verificationId' | 'orderId' | 'itemId'>) {
  if (input.verificationId) return `goodwill:verification:${input.verificationId}`;
  if (input.itemId) return `goodwill:order:${input.orderId}:item:${input.itemId}`;
  return `goodwill:order:${input.orderId}`;
}

/** The price an order's item was sold at: its sale entry's escrow line. */
async function itemSalePrice(sql: Sql, orderId: string, itemId: string) {
  const [row] = await sql<{ price: string }[]>`
    select -p.amount as price
    from entries e
    join postings p on p.entry_id = e.id
    join accounts a on a.id = p.account_id and a.kind = 'system' and a.code = 'order_escrow'
    where e.type = 'sale' and e.metadata->>'orderId' = ${orderId}
      and e.metadata->>'itemId' = ${itemId}`;
  return row ? Number(row.price) : undefined;
}

/**
 * Reads the target (locked when `forUpdate`, inside the posting transaction) and says what can
 * be given back, or throws the refusal the workflow ends `rejected` with.
 */
export async function purchaseTarget(
  sql: Sql,
  input: Pick<RefundInput, 'verificationId' | 'orderId' | 'itemId'>,
  forUpdate = false,
): Promise<PurchaseTarget> {
  const lock = forUpdate ? sql`for update` : sql``;
  if (input.verificationId) {
    const [v] = await sql<
      {
        customer_id: string;
        workflow_id: string;
        status: string;
        price: string;
        goodwill_refunded: string;
      }[]
    >`select customer_id, workflow_id, status, price, goodwill_refunded from verifications
      where id = ${input.verificationId} ${lock}`;
    if (!v) throw refusal('verification_not_found', `No verification ${input.verificationId}.`);
    if (v.status === 'refunded') {
      throw refusal(
        'already_refunded',
        `Verification ${input.verificationId} was already refunded automatically.`,
      );
    }
    if (v.status !== 'completed') {
      throw refusal(
        v.status === 'failed' ? 'nothing_to_refund' : 'refund_not_allowed',
        v.status === 'failed'
          ? `Verification ${input.verificationId} failed; nothing was paid for it.`
          : `Verification ${input.verificationId} is still ${v.status}; cancel it instead (its credits then come back by themselves).`,
      );
    }
    return {
      customerId: v.customer_id,
      refundable: Number(v.price) - Number(v.goodwill_refunded),
      key: goodwillKey(input),
      purchaseKey: verificationDebitKey(v.workflow_id),
      what: `verification ${input.verificationId}`,
    };
  }
  const [o] = await sql<
    {
      buyer_id: string;
      workflow_id: string;
      status: string;
      purchased: string[];
      charged: string;
      refunded: string;
      goodwill_refunded: string;
    }[]
  >`select buyer_id, workflow_id, status, purchased, charged, refunded, goodwill_refunded from orders
    where id = ${input.orderId ?? ''} ${lock}`;
  if (!o) throw refusal('order_not_found', `No order ${input.orderId}.`);
  const kept = Number(o.charged) - Number(o.refunded) - Number(o.goodwill_refunded);
  if (!['completed', 'partially_completed'].includes(o.status)) {
    throw refusal(
      o.status === 'failed' ? 'nothing_to_refund' : 'refund_not_allowed',
      o.status === 'failed'
        ? `Order ${input.orderId} failed; nothing was charged for it.`
        : `Order ${input.orderId} is still ${o.status}; refund it once it has finished.`,
    );
  }
  if (!input.itemId) {
    return {
      customerId: o.buyer_id,
      refundable: kept,
      key: goodwillKey(input),
      purchaseKey: orderDebitKey(o.workflow_id),
      what: `order ${input.orderId}`,
    };
  }
  const itemId = input.itemId.toLowerCase();
  if (!o.purchased.map((id) => id.toLowerCase()).includes(itemId)) {
    throw refusal(
      'nothing_to_refund',
      `Item ${input.itemId} was not bought by order ${input.orderId}; nothing was paid for it.`,
    );
  }
  const price = await itemSalePrice(sql, input.orderId!, itemId);
  if (price === undefined) {
    throw refusal(
      'nothing_to_refund',
      `No sale of item ${input.itemId} in order ${input.orderId}.`,
    );
  }
  return {
    customerId: o.buyer_id,
    refundable: Math.min(price, kept),
    key: goodwillKey({ ...input, itemId }),
    purchaseKey: orderDebitKey(o.workflow_id),
    what: `item ${itemId} of order ${input.orderId}`,
  };
}

/** Checks the asked credits against what can still come back; returns the credits to give. */
function creditsFor(target: PurchaseTarget, asked: number | null | undefined): number {
  if (target.refundable <= 0) {
    throw refusal('already_refunded', `Everything paid for ${target.what} was already given back.`);
  }
  const credits = asked ?? target.refundable;
  if (credits > target.refundable) {
    throw refusal(
      'refund_exceeds_purchase',
      `At most ${target.refundable} credits can be given back for ${target.what}; ${credits} were asked.`,
    );
  }
  return credits;
}

/**
 * Whose wallet gets how many credits for a purchase refund, or the refusal (an ApplicationFailure
 * with the code). Writes nothing: the API asks it before starting, the workflow again after.
 */
export async function checkPurchaseRefund(
  db: Database,
  input: Pick<RefundInput, 'refundId' | 'verificationId' | 'orderId' | 'itemId' | 'credits'>,
): Promise<{ customerId: string; credits: number }> {
  const target = await purchaseTarget(db.sql, input);
  const earlier = await entryUnderKey(db, target.key);
  if (earlier && earlier.refundId !== input.refundId) {
    throw refusal(
      'already_refunded',
      `${target.what} already had a goodwill refund (${earlier.refundId ?? 'unknown'}); it is given once.`,
    );
  }
  return { customerId: target.customerId, credits: creditsFor(target, input.credits) };
}

export function createPurchaseRefundActivities({ db, ledger }: RefundActivityDeps) {
  return {
    /** Decides whose wallet gets how many credits for the target; writes nothing. */
    async preparePurchaseRefund(input: RefundInput): Promise<{
      customerId: string;
      credits: number;
    }> {
      const checked = await checkPurchaseRefund(db, input);
      if (checked.customerId !== input.customerId) {
        throw refusal('refund_not_allowed', 'The purchase belongs to another customer.');
      }
      return checked;
    },

    /**
     * Credits the wallet back (refunds → wallet) and books it on the verification or order in the
     * same transaction. Keyed by the target: a second refund of it is refused `already_refunded`.
     */
    async creditPurchaseRefund(input: {
      refundId: string;
      workflowId: string;
      customerId: string;
      credits: number;
      verificationId: string | null;
      orderId: string | null;
      itemId: string | null;
    }): Promise<{ entryId: number; balanceAfter: number; replayed: boolean }> {
      const key = goodwillKey(input);
      // Read before posting (the transaction re-reads and locks it): which debit to give back to.
      const { purchaseKey } = await purchaseTarget(db.sql, input);
      const posted = await refusingWith(
        { idempotency_conflict: 'already_refunded', invalid_data: 'refund_exceeds_purchase' },
        () =>
          ledger.postEntry(
            {
              idempotencyKey: key,
              type: REFUND_ENTRY_TYPES.goodwill,
              description: `Goodwill refund ${input.refundId}: ${input.credits} credits back`,
              workflowId: input.workflowId,
              metadata: {
                refundId: input.refundId,
                verificationId: input.verificationId,
                orderId: input.orderId,
                itemId: input.itemId,
              },
              lines: [
                { account: { system: 'refunds' }, amount: -input.credits },
                // Back to the grants the purchase drew from; a share whose grant closed is breakage.
                {
                  account: { wallet: input.customerId },
                  amount: input.credits,
                  credit: { returnTo: purchaseKey },
                },
              ],
            },
            async (tx, entry) => {
              const target = await purchaseTarget(tx, input, true);
              creditsFor(target, input.credits);
              if (input.verificationId) {
                await tx`
                  update verifications set goodwill_refunded = goodwill_refunded + ${input.credits},
                                           updated_at = now()
                  where id = ${input.verificationId}`;
              } else {
                await tx`
                  update orders set goodwill_refunded = goodwill_refunded + ${input.credits},
                                    updated_at = now()
                  where id = ${input.orderId}`;
              }
              await tx`
                update refunds set entry_id = ${entry.entryId}, credits = ${input.credits},
                                   updated_at = now()
                where id = ${input.refundId}`;
              const wallet = entry.lines.find((l) => 'wallet' in l.account)!;
              await enqueueNotifications(
                tx,
                entry,
                purchaseRefunded({
                  workflowId: input.workflowId,
                  refundId: input.refundId,
                  customerId: input.customerId,
                  credits: input.credits,
                  what: target.what,
                  balanceAfter: wallet.balanceAfter,
                  data: {
                    verificationId: input.verificationId,
                    orderId: input.orderId,
                    itemId: input.itemId,
                  },
                }),
              );
            },
          ),
      );
      if (posted.replayed) {
        // The same credits for the same target by another refund: that one gave them, not this.
        const earlier = await entryUnderKey(db, key);
        if (earlier?.refundId !== input.refundId) {
          throw refusal(
            'already_refunded',
            `This purchase already had a goodwill refund (${earlier?.refundId ?? 'unknown'}); it is given once.`,
          );
        }
      }
      const wallet = posted.lines.find((l) => 'wallet' in l.account)!;
      log.info('purchase refunded', {
        refundId: input.refundId,
        entryId: posted.entryId,
        credits: input.credits,
        replayed: posted.replayed,
      });
      return {
        entryId: posted.entryId,
        balanceAfter: wallet.balanceAfter,
        replayed: posted.replayed,
      };
    },
  };
}
