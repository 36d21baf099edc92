// order: a marketplace cart checkout. Validate (no writes) → debit the total once → sell each
// item all-or-nothing → refund, in one entry, what the items that could not be sold cost.
import {
  ApplicationFailure,
  CancellationScope,
  log,
  patched,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { PricedItem, TransferOutcome } from '../activities/marketplace.js';
import {
  orderStateQuery,
  searchAttributes,
  type OrderInput,
  type OrderState,
  type OrderStatus,
  type OrderStep,
} from '../shared.js';
import { businessFailure } from './failures.js';
import { DB_STEP_START_TO_CLOSE_MS, HEARTBEAT_TIMEOUT_MS } from './timeouts.js';

// Each step is one short database transaction; ten seconds is generous and keeps a step lost
// with a dead worker from stalling the order for long before it is retried elsewhere.
const { validateOrder, debitOrder, transferItem, refundOrder, recordOrder, notify } =
  proxyActivities<Activities>({
    startToCloseTimeout: DB_STEP_START_TO_CLOSE_MS,
    heartbeatTimeout: HEARTBEAT_TIMEOUT_MS,
    // Infrastructure failures retry until they succeed; business refusals are non-retryable.
    retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
  });

const sum = (items: PricedItem[]) => items.reduce((total, item) => total + item.price, 0);

/** Buys the cart's items that can still be bought; the buyer pays only for what changed hands. */
export async function order(input: OrderInput): Promise<OrderState> {
  const { workflowId, startTime } = workflowInfo();
  const { orderId, buyerId } = input;
  const state: OrderState = {
    id: orderId,
    workflowId,
    buyerId,
    itemIds: input.itemIds,
    status: 'processing',
    step: 'validating',
    purchased: [],
    failed: [],
    charged: 0,
    refunded: 0,
    error: null,
    createdAt: startTime.toISOString(),
    updatedAt: startTime.toISOString(),
  };
  setHandler(orderStateQuery, () => state);
  // Buyer and sellers are told about their credits; runs started before this existed are not.
  // New runs queue those notices with the ledger entries (the outbox); only histories recorded
  // before it notify from here.
  const notifyParties = patched('order-notifications') && !patched('notifications-outbox');
  upsertSearchAttributes([
    { key: searchAttributes.customerId, value: buyerId },
    { key: searchAttributes.flowStatus, value: 'processing' },
  ]);
  log.info('order started', { orderId, buyerId, items: input.itemIds.length });

  // The step is also kept in the memo, so the API can follow an order by describing it,
  // without a query that needs a worker.
  const enter = (step: OrderStep) => {
    state.step = step;
    upsertMemo({ step });
    state.updatedAt = new Date().toISOString();
    log.info(`order ${step}`, { orderId, step });
  };

  /** Records the outcome; a failed order also fails the workflow with the error's type. */
  const finish = async (
    status: OrderStatus,
    error: { code: string; message: string } | null = null,
  ): Promise<OrderState> => {
    // Report items in cart order, whatever order their transfers finished in.
    const position = new Map(input.itemIds.map((id, i) => [id.toLowerCase(), i]));
    const at = (id: string) => position.get(id.toLowerCase()) ?? Number.MAX_SAFE_INTEGER;
    state.purchased.sort((a, b) => at(a) - at(b));
    state.failed.sort((a, b) => at(a.itemId) - at(b.itemId));
    state.status = status;
    state.step = 'done';
    upsertMemo({ step: 'done' });
    state.error = error;
    state.updatedAt = new Date().toISOString();
    await recordOrder(state);
    upsertSearchAttributes([{ key: searchAttributes.flowStatus, value: status }]);
    log.info('order finished', {
      orderId,
      status,
      purchased: state.purchased.length,
      failed: state.failed.length,
      charged: state.charged,
      refunded: state.refunded,
      error: error?.code,
    });
    if (error) {
      throw ApplicationFailure.create({
        message: error.message,
        type: error.code,
        nonRetryable: true,
        details: [state],
      });
    }
    return state;
  };

  const refusedBy = (err: unknown) => {
    const refusal = businessFailure(err);
    if (!refusal) throw err;
    return { code: refusal.type ?? 'rejected', message: refusal.message };
  };

  // Phase 1 and 2: which items can be bought, what they cost, whether the wallet covers it.
  let validation;
  try {
    validation = await validateOrder({ orderId, buyerId, itemIds: input.itemIds });
  } catch (err) {
    return finish('failed', refusedBy(err));
  }
  state.failed.push(...validation.invalid);
  const valid = validation.valid;
  log.info('order validated', {
    orderId,
    valid: valid.length,
    invalid: validation.invalid.length,
    balance: validation.balance,
  });
  if (valid.length === 0) {
    return finish('failed', {
      code: 'items_unavailable',
      message: `None of the items can be bought (${state.failed
        .map((f) => `${f.itemId}: ${f.reason}`)
        .join(', ')}); nothing was charged.`,
    });
  }
  const total = sum(valid);
  if (validation.balance < total) {
    const shortfall = total - validation.balance;
    return finish('failed', {
      code: 'insufficient_credits',
      message:
        `Insufficient credits: the order costs ${total} credits, the wallet holds ` +
        `${validation.balance} (short by ${shortfall}). Top up at least ${shortfall} credits ` +
        'and try again; nothing was charged.',
    });
  }

  // From the debit on, credits are moving: an operator's cancel must not strand them in escrow
  // or leave an item half sold, so this phase always runs to its end.
  return CancellationScope.nonCancellable(async () => {
    // Phase 3: one debit for the whole cart. A refusal here (the balance dropped since the
    // check) writes nothing, so the order simply fails.
    enter('charging');
    let debit;
    try {
      debit = await debitOrder({
        orderId,
        workflowId,
        buyerId,
        total,
        itemIds: valid.map((i) => i.itemId),
      });
    } catch (err) {
      return finish('failed', refusedBy(err));
    }
    state.charged = total;
    if (notifyParties) {
      await notify({
        idempotencyKey: `${workflowId}:notify-debit`,
        customerId: buyerId,
        kind: 'credits_deducted',
        title: 'Credits used',
        body: `${total} credits for order ${orderId} (${valid.length} item${valid.length === 1 ? '' : 's'}). Balance: ${debit.balanceAfter}.`,
        amount: total,
        balanceAfter: debit.balanceAfter,
        data: { orderId },
      });
    }

    enter('transferring');
    const outcomes: TransferOutcome[] = await Promise.all(
      valid.map(async (item) => {
        const outcome = await transferItem({ orderId, workflowId, buyerId, item });
        if (outcome.sold && notifyParties) {
          await notify({
            idempotencyKey: `${workflowId}:notify-sale:${item.itemId}`,
            customerId: item.sellerId,
            kind: 'credits_added',
            title: 'Item sold',
            body: `Your item ${item.itemId} sold for ${item.price} credits (order ${orderId}).`,
            amount: item.price,
            data: { orderId, itemId: item.itemId },
          });
        }
        if (outcome.sold) state.purchased.push(item.itemId);
        else state.failed.push({ itemId: item.itemId, reason: outcome.reason });
        state.updatedAt = new Date().toISOString();
        return outcome;
      }),
    );

    const skipped = valid.filter((_, i) => !outcomes[i]!.sold);
    if (skipped.length > 0) {
      enter('refunding');
      const amount = sum(skipped);
      const refund = await refundOrder({
        orderId,
        workflowId,
        buyerId,
        amount,
        itemIds: skipped.map((i) => i.itemId),
      });
      state.refunded = amount;
      if (notifyParties) {
        await notify({
          idempotencyKey: `${workflowId}:notify-refund`,
          customerId: buyerId,
          kind: 'credits_refunded',
          title: 'Credits refunded',
          body: `${amount} credits are back: ${skipped.length} item${skipped.length === 1 ? '' : 's'} of order ${orderId} could not be bought. Balance: ${refund.balanceAfter}.`,
          amount,
          balanceAfter: refund.balanceAfter,
          data: { orderId, itemIds: skipped.map((i) => i.itemId) },
        });
      }
    }

    if (state.purchased.length === 0) {
      return finish('failed', {
        code: 'items_unavailable',
        message: `None of the items could be bought; the ${state.refunded} credits charged were refunded.`,
      });
    }
    return finish(
      state.purchased.length === input.itemIds.length ? 'completed' : 'partially_completed',
    );
  });
}
