// The contract both sides of Temporal share: ids, queries, search attributes, failure types.
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery } from '@temporalio/workflow';

export const DEFAULT_TASK_QUEUE = 'creditflow';

/** Workflow ids are business ids, so a retried request finds the same workflow. */
export const workflowIds = {
  adjustment: (adjustmentId: string) => `adjustment-${adjustmentId}`,
  order: (orderId: string) => `order-${orderId}`,
};

/** Search attributes operators filter on in the Temporal UI. */
export const searchAttributes = {
  customerId: defineSearchAttributeKey('CustomerId', SearchAttributeType.KEYWORD),
  flowStatus: defineSearchAttributeKey('FlowStatus', SearchAttributeType.KEYWORD),
};

/** Registration for the dev server's --search-attribute flags (name=Type). */
export const SEARCH_ATTRIBUTE_REGISTRATION: Record<string, string> = {
  CustomerId: 'Keyword',
  FlowStatus: 'Keyword',
};

/** ApplicationFailure types that mean "the request was refused", never retried. */
export const BUSINESS_FAILURE_TYPES = [
  'insufficient_credits',
  'idempotency_conflict',
  'customer_not_found',
  'account_not_found',
  'invalid_posting',
  'items_unavailable',
] as const;

export interface AdjustmentInput {
  adjustmentId: string;
  customerId: string;
  /** Signed credits: positive credits the wallet, negative debits it. */
  amount: number;
  reason: string;
  requestedBy: string;
}

export type AdjustmentStatus = 'pending' | 'completed' | 'rejected';

export interface AdjustmentState {
  id: string;
  workflowId: string;
  customerId: string;
  amount: number;
  reason: string;
  requestedBy: string;
  status: AdjustmentStatus;
  entryId: number | null;
  balanceAfter: number | null;
  error: { code: string; message: string } | null;
  createdAt: string;
  updatedAt: string;
}

export const adjustmentStateQuery = defineQuery<AdjustmentState>('state');

export interface OrderInput {
  orderId: string;
  buyerId: string;
  /** The cart: distinct item ids, in the order the buyer listed them. */
  itemIds: string[];
}

export type OrderStatus = 'processing' | 'completed' | 'partially_completed' | 'failed';

/** Where a running order is; `done` once it has an outcome. */
export type OrderStep = 'validating' | 'charging' | 'transferring' | 'refunding' | 'done';

/** Why one item of a cart was not bought. */
export type OrderItemFailureReason =
  | 'item_not_found'
  | 'item_withdrawn'
  | 'item_sold'
  | 'own_item'
  | 'seller_unavailable'
  | 'duplicate_item'
  | 'item_changed';

export interface OrderState {
  id: string;
  workflowId: string;
  buyerId: string;
  itemIds: string[];
  status: OrderStatus;
  step: OrderStep;
  purchased: string[];
  failed: Array<{ itemId: string; reason: OrderItemFailureReason }>;
  /** Credits taken from the wallet by the order's one debit. */
  charged: number;
  /** Credits given back for the items that could not be transferred. */
  refunded: number;
  error: { code: string; message: string } | null;
  createdAt: string;
  updatedAt: string;
}

export const orderStateQuery = defineQuery<OrderState>('state');
