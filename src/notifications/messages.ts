// What the customer is told about each money movement: one builder per event, keyed by its step.
import type { RefundReason } from '../shared.js';
import type { Credits, OutboxMessage } from './outbox.js';

/** Credits inside `data`: a JSON number while exact, else the decimal string. */
const exactJson = (value: Credits): number | string =>
  Number.isSafeInteger(Number(value)) ? Number(value) : String(value);

const plural = (count: number, word: string) => `${count} ${word}${count === 1 ? '' : 's'}`;

const refundReasonText: Record<RefundReason, string> = {
  timeout: 'timed out before a code arrived',
  cancelled: 'was cancelled',
  provider_failed: 'could not get a number from the provider',
  invalid_code: 'received a code that could not be recorded',
};

interface VerificationFacts {
  workflowId: string;
  verificationId: string;
  customerId: string;
  service: string;
  country: string;
  price: number;
  balanceAfter: Credits;
}

export function verificationDebited(v: VerificationFacts): OutboxMessage {
  return {
    idempotencyKey: `${v.workflowId}:notify-debit`,
    customerId: v.customerId,
    kind: 'credits_deducted',
    title: 'Credits used',
    body: `${v.price} credits for a ${v.service} verification (${v.country}). Balance: ${v.balanceAfter}.`,
    amount: v.price,
    balanceAfter: v.balanceAfter,
    data: { verificationId: v.verificationId },
  };
}

export function verificationRefunded(
  v: VerificationFacts & { reason: RefundReason },
): OutboxMessage {
  return {
    idempotencyKey: `${v.workflowId}:notify-refund`,
    customerId: v.customerId,
    kind: 'credits_refunded',
    title: 'Credits refunded',
    body: `${v.price} credits are back: your ${v.service} verification (${v.country}) ${refundReasonText[v.reason]}. Balance: ${v.balanceAfter}.`,
    amount: v.price,
    balanceAfter: v.balanceAfter,
    data: { verificationId: v.verificationId, reason: v.reason },
  };
}

export function orderDebited(o: {
  workflowId: string;
  orderId: string;
  buyerId: string;
  total: number;
  itemCount: number;
  balanceAfter: Credits;
}): OutboxMessage {
  return {
    idempotencyKey: `${o.workflowId}:notify-debit`,
    customerId: o.buyerId,
    kind: 'credits_deducted',
    title: 'Credits used',
    body: `${o.total} credits for order ${o.orderId} (${plural(o.itemCount, 'item')}). Balance: ${o.balanceAfter}.`,
    amount: o.total,
    balanceAfter: o.balanceAfter,
    data: { orderId: o.orderId },
  };
}

export function itemSold(s: {
  workflowId: string;
  orderId: string;
  itemId: string;
  sellerId: string;
  price: number;
  balanceAfter: Credits;
}): OutboxMessage {
  return {
    idempotencyKey: `${s.workflowId}:notify-sale:${s.itemId}`,
    customerId: s.sellerId,
    kind: 'credits_added',
    title: 'Item sold',
    body: `Your item ${s.itemId} sold for ${s.price} credits (order ${s.orderId}). Balance: ${s.balanceAfter}.`,
    amount: s.price,
    balanceAfter: s.balanceAfter,
    data: { orderId: s.orderId, itemId: s.itemId },
  };
}

export function orderRefunded(o: {
  workflowId: string;
  orderId: string;
  buyerId: string;
  amount: number;
  itemIds: string[];
  balanceAfter: Credits;
}): OutboxMessage {
  return {
    idempotencyKey: `${o.workflowId}:notify-refund`,
    customerId: o.buyerId,
    kind: 'credits_refunded',
    title: 'Credits refunded',
    body: `${o.amount} credits are back: ${plural(o.itemIds.length, 'item')} of order ${o.orderId} could not be bought. Balance: ${o.balanceAfter}.`,
    amount: o.amount,
    balanceAfter: o.balanceAfter,
    data: { orderId: o.orderId, itemIds: o.itemIds },
  };
}

export function topupCredited(t: {
  workflowId: string;
  paymentId: string;
  customerId: string;
  credits: number;
  pack: string;
  balanceAfter: Credits;
}): OutboxMessage {
  return {
    idempotencyKey: `${t.workflowId}:notify-credited`,
    customerId: t.customerId,
    kind: 'credits_added',
    title: 'Credits added',
    body: `${t.credits} credits from your ${t.pack} pack are in your wallet.`,
    amount: t.credits,
    balanceAfter: t.balanceAfter,
    data: { paymentId: t.paymentId },
  };
}

/**
 * A wallet's available balance fell below one or more of the customer's alert thresholds in one
 * posting. One message per crossing (keyed by the customer's crossing counter), naming the lowest
 * threshold crossed; every threshold crossed is in `data.thresholds`.
 */
export function lowBalance(l: {
  customerId: string;
  /** The customer's crossing counter after this crossing: never reused, so never deduplicated away. */
  crossing: number;
  /** The thresholds this posting took the available balance below, any order. */
  crossed: number[];
  available: Credits;
}): OutboxMessage {
  const crossed = [...l.crossed].sort((a, b) => b - a);
  const lowest = crossed[crossed.length - 1]!;
  return {
    idempotencyKey: `low-balance:${l.customerId}:${l.crossing}`,
    customerId: l.customerId,
    kind: 'low_balance',
    title: 'Low balance',
    body: `You have ${l.available} credits left to spend, below your alert at ${lowest} credits.`,
    // Not balanceAfter: that is the wallet balance, which also counts credits not yet spendable.
    data: {
      threshold: lowest,
      thresholds: crossed,
      available: exactJson(l.available),
      crossing: l.crossing,
    },
  };
}

/** What the customer is told when a grant expires with credits left. */
export function grantExpired(g: {
  grantId: string;
  customerId: string;
  category: string;
  credits: number;
  expiresAt: string | null;
  balanceAfter: string;
}): OutboxMessage {
  return {
    idempotencyKey: `grant-expiry:${g.grantId}:notify`,
    customerId: g.customerId,
    kind: 'credits_expired',
    title: 'Credits expired',
    body: `${g.credits} ${g.category} credits expired${g.expiresAt ? ` on ${g.expiresAt.slice(0, 10)}` : ''}. Balance: ${g.balanceAfter}.`,
    amount: g.credits,
    balanceAfter: BigInt(g.balanceAfter),
    data: { grantId: g.grantId, category: g.category },
  };
}
