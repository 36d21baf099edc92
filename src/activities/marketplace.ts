// Marketplace activities: the order workflow's steps over items, the ledger and the orders read model.
import { log } from '@temporalio/activity';
import type postgres from 'postgres';
import type { Database } from '../db/client.js';
import { permanentDbErrorReason, sqlState } from '../db/errors.js';
import { BusinessError } from '../errors.js';
import type { Ledger } from '../ledger/ledger.js';
import type { OrderItemFailureReason, OrderState } from '../shared.js';
import { closeUnlessPosted, recordedRefusal, refusalMark } from '../ledger/fences.js';
import { itemSold, orderDebited, orderRefunded } from '../notifications/messages.js';
import { finalRefusalClosesStep, refusalsAreFinal, spendableCredits } from './ledger.js';
import { enqueueNotifications } from './notifications.js';

/** The idempotency (and fence) key of an order's debit: refunds give back to what it drew. */
export const orderDebitKey = (workflowId: string) => `${workflowId}:debit`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Test seams: a test can hold one item's transfer to change the world between two steps. */
export interface MarketplaceHooks {
  beforeTransfer?: (input: TransferItemInput) => Promise<void>;
}

export interface MarketplaceActivityDeps {
  db: Database;
  ledger: Ledger;
  hooks?: MarketplaceHooks;
}

/** An item that passed validation, with what the buyer agreed to pay and to whom. */
export interface PricedItem {
  itemId: string;
  price: number;
  sellerId: string;
}

export interface OrderValidation {
  valid: PricedItem[];
  invalid: Array<{ itemId: string; reason: OrderItemFailureReason }>;
  /** The buyer's spendable credits (grants open, effective and unexpired now). */
  balance: number;
}

interface OrderStepInput {
  orderId: string;
  workflowId: string;
  buyerId: string;
}

export interface TransferItemInput extends OrderStepInput {
  item: PricedItem;
}

export type TransferOutcome =
  { sold: true; entryId: number } | { sold: false; reason: OrderItemFailureReason };

/**
 * Thrown inside the sale transaction when the item can no longer change hands, so the sale
 * posting rolls back with it; the activity reports it as the item's reason, never retried.
 */
class ItemRefusal extends Error {
  constructor(readonly reason: OrderItemFailureReason) {
    super(`item refused: ${reason}`);
    this.name = 'ItemRefusal';
  }
}

interface ItemRow {
  id: string;
  price: string;
  seller_id: string;
  owner_id: string;
  status: string;
  seller_active: boolean;
}

/** Why an item cannot be bought by this buyer right now, or undefined if it can. */
function refusalFor(row: ItemRow | undefined, buyerId: string): OrderItemFailureReason | undefined {
  if (!row) return 'item_not_found';
  if (row.status === 'withdrawn') return 'item_withdrawn';
  if (row.status === 'sold' || row.owner_id !== row.seller_id) return 'item_sold';
  if (row.status !== 'available') return 'item_changed';
  if (row.seller_id === buyerId) return 'own_item';
  if (!row.seller_active) return 'seller_unavailable';
  return undefined;
}

/** The order workflow's activities; every write is idempotent per order and item. */
export function createMarketplaceActivities({ db, ledger, hooks }: MarketplaceActivityDeps) {
  async function readItems(sql: postgres.ISql, ids: string[]): Promise<Map<string, ItemRow>> {
    const rows = await sql<ItemRow[]>`
      select i.id, i.price, i.seller_id, i.owner_id, i.status,
             (c.anonymised_at is null and exists (
               select 1 from accounts a where a.kind = 'wallet' and a.customer_id = i.seller_id
             )) as seller_active
      from items i join customers c on c.id = i.seller_id
      where i.id = any(${ids}::uuid[])`;
    return new Map(rows.map((r) => [r.id, r]));
  }

  return {
    /** Checks every item and the buyer's balance without writing anything. */
    async validateOrder(input: {
      orderId: string;
      buyerId: string;
      itemIds: string[];
    }): Promise<OrderValidation> {
      return refusalsAreFinal(async () => {
        const ids = input.itemIds.map((id) => id.toLowerCase());
        const rows = await readItems(
          db.sql,
          [...new Set(ids)].filter((id) => UUID.test(id)),
        );
        const seen = new Set<string>();
        const valid: PricedItem[] = [];
        const invalid: OrderValidation['invalid'] = [];
        for (const itemId of ids) {
          if (seen.has(itemId)) {
            invalid.push({ itemId, reason: 'duplicate_item' });
            continue;
          }
          seen.add(itemId);
          const row = rows.get(itemId);
          const reason = refusalFor(row, input.buyerId);
          if (reason || !row) invalid.push({ itemId, reason: reason ?? 'item_not_found' });
          else valid.push({ itemId, price: Number(row.price), sellerId: row.seller_id });
        }
        // Refuses a buyer without a wallet; then what the order can spend (a future-dated or
        // expired grant is in the balance, not here).
        await ledger.walletBalance(input.buyerId);
        const balance = await spendableCredits(db, input.buyerId);
        log.info('order items checked', {
          orderId: input.orderId,
          valid: valid.length,
          invalid: invalid.length,
        });
        return { valid, invalid, balance };
      });
    },

    /** Takes the order's total from the buyer into escrow, once per order. */
    async debitOrder(
      input: OrderStepInput & { total: number; itemIds: string[] },
    ): Promise<{ entryId: number; balanceAfter: number; replayed: boolean }> {
      const key = orderDebitKey(input.workflowId);
      // A refusal closes the debit's fence: an attempt still running cannot charge a failed order.
      return refusalsAreFinal(() =>
        finalRefusalClosesStep(db, key, async () => {
          const posted = await ledger.postEntry(
            {
              idempotencyKey: key,
              fence: key,
              type: 'order_purchase',
              description: `Order ${input.orderId}: ${input.itemIds.length} item(s)`,
              workflowId: input.workflowId,
              metadata: { orderId: input.orderId, itemIds: input.itemIds },
              lines: [
                { account: { wallet: input.buyerId }, amount: -input.total },
                { account: { system: 'order_escrow' }, amount: input.total },
              ],
            },
            (tx, entry) =>
              enqueueNotifications(
                tx,
                entry,
                orderDebited({
                  ...input,
                  itemCount: input.itemIds.length,
                  balanceAfter: entry.lines[0]!.balanceAfter,
                }),
              ),
          );
          log.info('order debited', {
            orderId: input.orderId,
            entryId: posted.entryId,
            total: input.total,
            replayed: posted.replayed,
          });
          return {
            entryId: posted.entryId,
            balanceAfter: posted.lines[0]!.balanceAfter,
            replayed: posted.replayed,
          };
        }),
      );
    },

    /**
     * Sells one item: pays the seller from escrow and hands the item to the buyer in one
     * transaction, or neither. An item that can no longer be sold comes back as a reason.
     */
    async transferItem(input: TransferItemInput): Promise<TransferOutcome> {
      await hooks?.beforeTransfer?.(input);
      const { item } = input;
      const key = `${input.workflowId}:sale:${item.itemId}`;
      try {
        const posted = await ledger.postEntry(
          {
            idempotencyKey: key,
            fence: key,
            type: 'sale',
            description: `Sale of item ${item.itemId} (order ${input.orderId})`,
            workflowId: input.workflowId,
            metadata: { orderId: input.orderId, itemId: item.itemId, buyerId: input.buyerId },
            lines: [
              { account: { system: 'order_escrow' }, amount: -item.price },
              {
                account: { wallet: item.sellerId },
                amount: item.price,
                credit: {
                  grant: {
                    category: 'paid',
                    source: 'sale',
                    reason: `sale of item ${item.itemId}`,
                    metadata: { orderId: input.orderId, itemId: item.itemId },
                  },
                },
              },
            ],
          },
          async (tx, entry) => {
            // Only an item still listed by this seller at this price changes hands; the row
            // lock taken here is what makes two racing orders sell it once.
            const [sold] = await tx<{ id: string }[]>`
              update items set status = 'sold', owner_id = ${input.buyerId},
                               sold_in_order = ${input.orderId}, updated_at = now()
              where id = ${item.itemId} and status = 'available'
                and seller_id = ${item.sellerId} and owner_id = ${item.sellerId}
                and price = ${item.price}
                and exists (select 1 from customers c
                            where c.id = ${item.sellerId} and c.anonymised_at is null)
              returning id`;
            if (!sold) {
              const rows = await readItems(tx, [item.itemId]);
              throw new ItemRefusal(
                refusalFor(rows.get(item.itemId), input.buyerId) ?? 'item_changed',
              );
            }
            await enqueueNotifications(
              tx,
              entry,
              itemSold({
                ...input,
                ...item,
                balanceAfter: entry.lines[1]!.balanceAfter,
              }),
            );
          },
        );
        log.info('order item sold', {
          orderId: input.orderId,
          itemId: item.itemId,
          entryId: posted.entryId,
          replayed: posted.replayed,
        });
        return { sold: true, entryId: posted.entryId };
      } catch (err) {
        const earlier = recordedRefusal(err) as OrderItemFailureReason | undefined;
        let reason: OrderItemFailureReason | undefined;
        if (err instanceof ItemRefusal) reason = err.reason;
        // The seller's wallet is gone: nothing was posted, and retrying will not bring it back.
        else if (err instanceof BusinessError && err.code === 'account_not_found') {
          reason = 'seller_unavailable';
        }
        // An earlier attempt was refused and closed the sale, but its answer never reached the
        // workflow (its worker died, or it timed out): that refusal is this step's answer.
        else if (earlier) reason = earlier;
        // Any other final refusal (the ledger or the database refuses the sale's data the same
        // way on every try): the sale did not post, so the item is not bought and its price goes
        // back from escrow. Failing the step instead would end the order with the buyer's credits
        // left in escrow. Logged at error level: it needs a look, but not at the buyer's expense.
        else if (err instanceof BusinessError || permanentDbErrorReason(err)) {
          reason = 'transfer_failed';
          log.error('order item sale refused by the ledger; the item is refunded', {
            orderId: input.orderId,
            itemId: item.itemId,
            code: err instanceof BusinessError ? err.code : sqlState(err),
            error: (err as Error).message,
          });
        }
        if (!reason) throw err;
        // The workflow will refund this item: close its sale, so an earlier attempt still
        // running cannot pay the seller from escrow afterwards. If it already did, it is sold.
        const found = await closeUnlessPosted(db.sql, key, refusalMark(reason));
        if (found.posted) return { sold: true, entryId: found.entryId };
        log.info('order item skipped', { orderId: input.orderId, itemId: item.itemId, reason });
        return { sold: false, reason };
      }
    },

    /**
     * Gives the buyer back, in one entry, what the skipped items cost. A compensation: any
     * failure, even a refusal, is retried rather than leaving credits in escrow.
     */
    async refundOrder(
      input: OrderStepInput & { amount: number; itemIds: string[] },
    ): Promise<{ entryId: number; balanceAfter: number; replayed: boolean }> {
      const posted = await ledger.postEntry(
        {
          idempotencyKey: `${input.workflowId}:refund`,
          type: 'order_refund',
          description: `Order ${input.orderId}: refund for ${input.itemIds.length} item(s) not bought`,
          workflowId: input.workflowId,
          metadata: { orderId: input.orderId, itemIds: input.itemIds },
          lines: [
            { account: { system: 'order_escrow' }, amount: -input.amount },
            // Back to the grants the order's debit drew from; a share whose grant closed is breakage.
            {
              account: { wallet: input.buyerId },
              amount: input.amount,
              credit: { returnTo: orderDebitKey(input.workflowId) },
            },
          ],
        },
        (tx, entry) =>
          enqueueNotifications(
            tx,
            entry,
            orderRefunded({ ...input, balanceAfter: entry.lines[1]!.balanceAfter }),
          ),
      );
      log.info('order refunded', {
        orderId: input.orderId,
        entryId: posted.entryId,
        amount: input.amount,
        replayed: posted.replayed,
      });
      const wallet = posted.lines[1]!;
      return {
        entryId: posted.entryId,
        balanceAfter: wallet.balanceAfter,
        replayed: posted.replayed,
      };
    },

    /** Writes the order's state to the orders read model (GET reads it once the workflow closed). */
    async recordOrder(state: OrderState): Promise<void> {
      const itemIds = state.itemIds.filter((id) => UUID.test(id));
      if (!UUID.test(state.buyerId)) {
        log.warn('order not recorded: the buyer is not a customer id', { orderId: state.id });
        return;
      }
      try {
        await writeOrder(state, itemIds);
      } catch (err) {
        // No such customer: the order failed validation and there is no one to show it to.
        if ((err as { code?: string }).code !== '23503') throw err;
        log.warn('order not recorded: unknown buyer', { orderId: state.id });
        return;
      }
      log.info('order recorded', { orderId: state.id, status: state.status });
    },
  };

  async function writeOrder(state: OrderState, itemIds: string[]): Promise<void> {
    await db.sql`
        insert into orders (id, workflow_id, buyer_id, item_ids, status, purchased, failed,
                            charged, refunded, error_code, error_message, created_at, updated_at)
        values (${state.id}, ${state.workflowId}, ${state.buyerId}, ${itemIds}::uuid[],
                ${state.status}, ${JSON.stringify(state.purchased)}::jsonb,
                ${JSON.stringify(state.failed)}::jsonb, ${state.charged}, ${state.refunded},
                ${state.error?.code ?? null}, ${state.error?.message ?? null},
                ${state.createdAt}::timestamptz, now())
        on conflict (id) do update set
          status = excluded.status, purchased = excluded.purchased, failed = excluded.failed,
          charged = excluded.charged, refunded = excluded.refunded,
          error_code = excluded.error_code, error_message = excluded.error_message,
          updated_at = now()`;
  }
}
