// Drizzle schema: customers, the double-entry ledger (accounts, entries, postings) and admin records.
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  check,
  customType,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

/**
 * The 64-bit id of the transaction that wrote a row (PostgreSQL `xid8`), set by a trigger:
 * how the database proves that an entry's postings were written with the entry.
 */
const xid8 = customType<{ data: string; driverData: string }>({ dataType: () => 'xid8' });
const writtenInTransaction = () =>
  xid8('xact_id')
    .notNull()
    .default(sql`pg_current_xact_id()`);

const createdAt = () => timestamp('created_at', { withTimezone: true }).notNull().defaultNow();
const updatedAt = () => timestamp('updated_at', { withTimezone: true }).notNull().defaultNow();

export const customers = pgTable(
  'customers',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    email: text('email'),
    externalId: text('external_id'),
    createdAt: createdAt(),
    anonymisedAt: timestamp('anonymised_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('customers_email_key').on(sql`lower(${t.email})`),
    uniqueIndex('customers_external_id_key').on(t.externalId),
  ],
);

/** A customer's credits wallet, or one shard of a system account (clearing, revenue, …). */
export const accounts = pgTable(
  'accounts',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    kind: text('kind', { enum: ['wallet', 'system'] }).notNull(),
    customerId: uuid('customer_id').references(() => customers.id),
    code: text('code').notNull(),
    shard: integer('shard').notNull().default(0),
    balance: bigint('balance', { mode: 'number' }).notNull().default(0),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('accounts_customer_key').on(t.customerId),
    uniqueIndex('accounts_system_code_shard_key')
      .on(t.code, t.shard)
      .where(sql`kind = 'system'`),
    check('accounts_kind_check', sql`${t.kind} in ('wallet', 'system')`),
    check(
      'accounts_wallet_owner_check',
      sql`(${t.kind} = 'wallet') = (${t.customerId} is not null)`,
    ),
    check('accounts_wallet_not_negative', sql`${t.kind} <> 'wallet' or ${t.balance} >= 0`),
  ],
);

/**
 * What each account was opened as, written by a trigger when the account is created and never
 * changed: the checker compares it with the account to prove no account changed hands.
 */
export const accountIdentities = pgTable('account_identities', {
  accountId: bigint('account_id', { mode: 'number' })
    .primaryKey()
    .references(() => accounts.id, { onDelete: 'cascade' }),
  kind: text('kind').notNull(),
  customerId: uuid('customer_id'),
  code: text('code').notNull(),
  shard: integer('shard').notNull(),
  createdAt: createdAt(),
});

/** One business event; its postings sum to zero. Append-only. */
export const entries = pgTable(
  'entries',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    idempotencyKey: text('idempotency_key').notNull(),
    contentHash: text('content_hash').notNull(),
    type: text('type').notNull(),
    description: text('description').notNull(),
    workflowId: text('workflow_id'),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull().default({}),
    xactId: writtenInTransaction(),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('entries_idempotency_key_key').on(t.idempotencyKey),
    index('entries_workflow_id_idx').on(t.workflowId),
  ],
);

/** One line of an entry: a signed amount on one account and that account's balance after it. */
export const postings = pgTable(
  'postings',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    entryId: bigint('entry_id', { mode: 'number' })
      .notNull()
      .references(() => entries.id),
    accountId: bigint('account_id', { mode: 'number' })
      .notNull()
      .references(() => accounts.id),
    amount: bigint('amount', { mode: 'number' }).notNull(),
    balanceAfter: bigint('balance_after', { mode: 'number' }).notNull(),
    xactId: writtenInTransaction(),
    createdAt: createdAt(),
  },
  (t) => [
    index('postings_account_idx').on(t.accountId, t.id),
    index('postings_entry_idx').on(t.entryId),
    check('postings_amount_not_zero', sql`${t.amount} <> 0`),
  ],
);

/**
 * Wallets someone is watching live: each API process registers the customers whose event
 * streams it holds (and refreshes them), and the postings trigger notifies only for these, so a
 * posting nobody listens to pays nothing for wallet events.
 */
export const walletEventListeners = pgTable(
  'wallet_event_listeners',
  {
    customerId: uuid('customer_id').notNull(),
    /** The API process (its event hub) holding the streams. */
    hubId: text('hub_id').notNull(),
    refreshedAt: timestamp('refreshed_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.customerId, t.hubId] }),
    index('wallet_event_listeners_refreshed_idx').on(t.refreshedAt),
  ],
);

/** Admin credit adjustments: the read model behind GET /v1/admin/adjustments/:id. */
export const adjustments = pgTable(
  'adjustments',
  {
    id: text('id').primaryKey(),
    workflowId: text('workflow_id').notNull(),
    customerId: uuid('customer_id')
      .notNull()
      .references(() => customers.id),
    amount: bigint('amount', { mode: 'number' }).notNull(),
    reason: text('reason').notNull(),
    requestedBy: text('requested_by').notNull(),
    status: text('status', { enum: ['pending', 'completed', 'rejected'] }).notNull(),
    entryId: bigint('entry_id', { mode: 'number' }).references(() => entries.id),
    balanceAfter: bigint('balance_after', { mode: 'number' }),
    errorCode: text('error_code'),
    errorMessage: text('error_message'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('adjustments_workflow_id_key').on(t.workflowId),
    index('adjustments_customer_idx').on(t.customerId),
  ],
);

/** Who did what to whom and why, for every admin action. Append-only. */
export const auditLog = pgTable(
  'audit_log',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    idempotencyKey: text('idempotency_key').notNull(),
    actor: text('actor').notNull(),
    action: text('action').notNull(),
    targetType: text('target_type').notNull(),
    targetId: text('target_id').notNull(),
    reason: text('reason'),
    details: jsonb('details').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('audit_log_idempotency_key_key').on(t.idempotencyKey),
    index('audit_log_target_idx').on(t.targetType, t.targetId),
  ],
);

/** What a customer is told about their credits; written by a retried, idempotent activity. */
export const notifications = pgTable(
  'notifications',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    idempotencyKey: text('idempotency_key').notNull(),
    customerId: uuid('customer_id')
      .notNull()
      .references(() => customers.id),
    kind: text('kind').notNull(),
    title: text('title').notNull(),
    body: text('body').notNull(),
    amount: bigint('amount', { mode: 'number' }),
    balanceAfter: bigint('balance_after', { mode: 'number' }),
    data: jsonb('data').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('notifications_idempotency_key_key').on(t.idempotencyKey),
    index('notifications_customer_idx').on(t.customerId, t.id),
  ],
);

/**
 * Side messages (notifications now, e-mails later) waiting to be delivered. A row is written in
 * the same transaction as the ledger entry it is about, so it exists exactly when the money moved;
 * a dispatcher delivers it later, retrying, so delivery never holds up the money.
 */
export const notificationOutbox = pgTable(
  'notification_outbox',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    idempotencyKey: text('idempotency_key').notNull(),
    customerId: uuid('customer_id')
      .notNull()
      .references(() => customers.id),
    kind: text('kind').notNull(),
    /** What to deliver: title, body, amount and balance after (decimal strings), data. */
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
    /** The ledger entry that caused the message, when there is one. */
    entryId: bigint('entry_id', { mode: 'number' }).references(() => entries.id),
    /** The worker task queue that wrote it; that queue's dispatchers deliver it. */
    taskQueue: text('task_queue').notNull(),
    status: text('status').notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true }).notNull().defaultNow(),
    lastError: text('last_error'),
    createdAt: createdAt(),
    deliveredAt: timestamp('delivered_at', { withTimezone: true }),
    /**
     * Each channel's outcome, null until it is settled: a retry redoes only the channels still
     * null, so a failing e-mail never repeats the in-app notification and the reverse.
     */
    inAppStatus: text('in_app_status'),
    emailStatus: text('email_status'),
    /** When the SMTP server accepted the e-mail (committed with `email_status` = 'sent'). */
    emailSentAt: timestamp('email_sent_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('notification_outbox_idempotency_key_key').on(t.idempotencyKey),
    index('notification_outbox_due_idx')
      .on(t.taskQueue, t.nextAttemptAt, t.id)
      .where(sql`${t.status} = 'pending'`),
    index('notification_outbox_open_idx')
      .on(t.status)
      .where(sql`${t.status} in ('pending', 'failed')`),
    check(
      'notification_outbox_status_check',
      sql`${t.status} in ('pending', 'delivered', 'failed', 'muted')`,
    ),
    check('notification_outbox_attempts_check', sql`${t.attempts} >= 0`),
    check(
      'notification_outbox_in_app_status_check',
      sql`${t.inAppStatus} in ('sent', 'duplicate', 'muted')`,
    ),
    check(
      'notification_outbox_email_status_check',
      sql`${t.emailStatus} in ('sent', 'muted', 'no_address', 'off')`,
    ),
  ],
);

/** Which notification kinds a customer wants, on which channels, and from what amount. */
export const notificationPreferences = pgTable('notification_preferences', {
  customerId: uuid('customer_id')
    .primaryKey()
    .references(() => customers.id),
  /** Kinds to deliver; null means every kind. */
  kinds: text('kinds').array(),
  minAmount: bigint('min_amount', { mode: 'number' }).notNull().default(0),
  /** Channels by kind (`{ "credits_refunded": ["in_app", "email"] }`); a kind left out, or null: every channel. */
  channels: jsonb('channels').$type<Record<string, string[]>>(),
  updatedAt: updatedAt(),
});

/** Price of one phone verification, in credits, by service and country. Admin-editable. */
export const prices = pgTable(
  'prices',
  {
    service: text('service').notNull(),
    country: text('country').notNull(),
    price: bigint('price', { mode: 'number' }).notNull(),
    updatedAt: updatedAt(),
  },
  (t) => [
    primaryKey({ columns: [t.service, t.country] }),
    check('prices_price_positive', sql`${t.price} > 0`),
  ],
);

/** Read model of verificationPurchase workflows. */
export const verifications = pgTable(
  'verifications',
  {
    id: text('id').primaryKey(),
    workflowId: text('workflow_id').notNull(),
    customerId: uuid('customer_id')
      .notNull()
      .references(() => customers.id),
    service: text('service').notNull(),
    country: text('country').notNull(),
    price: bigint('price', { mode: 'number' }).notNull(),
    timeoutSeconds: integer('timeout_seconds').notNull(),
    status: text('status').notNull(),
    phoneNumber: text('phone_number'),
    providerRef: text('provider_ref'),
    code: text('code'),
    refundReason: text('refund_reason'),
    debitEntryId: bigint('debit_entry_id', { mode: 'number' }).references(() => entries.id),
    refundEntryId: bigint('refund_entry_id', { mode: 'number' }).references(() => entries.id),
    error: text('error'),
    /** Set when releasing the rented number kept failing: an operator releases it by hand. */
    releaseFailedAt: timestamp('release_failed_at', { withTimezone: true }),
    releaseError: text('release_error'),
    /** Credits given back by an operator's goodwill refund; never more than the price. */
    goodwillRefunded: bigint('goodwill_refunded', { mode: 'number' }).notNull().default(0),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    check(
      'verifications_goodwill_refunded_check',
      sql`${t.goodwillRefunded} between 0 and ${t.price}`,
    ),
    uniqueIndex('verifications_workflow_id_key').on(t.workflowId),
    uniqueIndex('verifications_provider_ref_key').on(t.providerRef),
    index('verifications_customer_idx').on(t.customerId, t.createdAt),
  ],
);

/** A credit-pack purchase through Stripe Checkout; its status follows one state machine. */
export const payments = pgTable(
  'payments',
  {
    id: text('id').primaryKey(),
    workflowId: text('workflow_id').notNull(),
    customerId: uuid('customer_id')
      .notNull()
      .references(() => customers.id),
    pack: text('pack').notNull(),
    credits: bigint('credits', { mode: 'number' }).notNull(),
    amount: bigint('amount', { mode: 'number' }).notNull(),
    currency: text('currency').notNull(),
    status: text('status').notNull(),
    stripeSessionId: text('stripe_session_id'),
    checkoutUrl: text('checkout_url'),
    paymentIntentId: text('payment_intent_id'),
    topupEntryId: bigint('topup_entry_id', { mode: 'number' }).references(() => entries.id),
    expiresAt: timestamp('expires_at', { withTimezone: true }),
    /** Credits taken back by refunds so far (claw-backs net of re-credits). */
    refundedCredits: bigint('refunded_credits', { mode: 'number' }).notNull().default(0),
    /** Money (minor units) refunded so far; the database refuses more than was paid. */
    refundedAmount: bigint('refunded_amount', { mode: 'number' }).notNull().default(0),
    /** The status before a dispute opened, restored when the dispute is won. */
    statusBeforeDispute: text('status_before_dispute'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    check('payments_refunded_credits_check', sql`${t.refundedCredits} between 0 and ${t.credits}`),
    check('payments_refunded_amount_check', sql`${t.refundedAmount} between 0 and ${t.amount}`),
    uniqueIndex('payments_workflow_id_key').on(t.workflowId),
    uniqueIndex('payments_stripe_session_key').on(t.stripeSessionId),
    uniqueIndex('payments_payment_intent_key').on(t.paymentIntentId),
    index('payments_customer_idx').on(t.customerId, t.createdAt),
  ],
);

/** Every verified Stripe webhook event, once (the event id is the key). */
export const stripeEvents = pgTable(
  'stripe_events',
  {
    id: text('id').primaryKey(),
    type: text('type').notNull(),
    status: text('status').notNull(),
    paymentId: text('payment_id'),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
    error: text('error'),
    receivedAt: timestamp('received_at', { withTimezone: true }).notNull().defaultNow(),
    processedAt: timestamp('processed_at', { withTimezone: true }),
  },
  (t) => [index('stripe_events_payment_idx').on(t.paymentId)],
);

/** Marketplace items: listed by a seller, owned by whoever bought them last. */
export const items = pgTable(
  'items',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    sellerId: uuid('seller_id')
      .notNull()
      .references(() => customers.id),
    ownerId: uuid('owner_id')
      .notNull()
      .references(() => customers.id),
    title: text('title').notNull(),
    price: bigint('price', { mode: 'number' }).notNull(),
    status: text('status').notNull(),
    soldInOrder: text('sold_in_order'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index('items_status_idx').on(t.status, t.createdAt),
    index('items_seller_idx').on(t.sellerId),
    check('items_price_positive', sql`${t.price} > 0`),
  ],
);

/** Read model of order workflows (cart checkouts). */
export const orders = pgTable(
  'orders',
  {
    id: text('id').primaryKey(),
    workflowId: text('workflow_id').notNull(),
    buyerId: uuid('buyer_id')
      .notNull()
      .references(() => customers.id),
    itemIds: uuid('item_ids').array().notNull(),
    status: text('status').notNull(),
    purchased: jsonb('purchased').$type<string[]>().notNull().default([]),
    failed: jsonb('failed')
      .$type<Array<{ itemId: string; reason: string }>>()
      .notNull()
      .default([]),
    charged: bigint('charged', { mode: 'number' }).notNull().default(0),
    refunded: bigint('refunded', { mode: 'number' }).notNull().default(0),
    /** Credits given back by operators' goodwill refunds; never more than the order kept. */
    goodwillRefunded: bigint('goodwill_refunded', { mode: 'number' }).notNull().default(0),
    errorCode: text('error_code'),
    errorMessage: text('error_message'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    check(
      'orders_goodwill_refunded_check',
      sql`${t.goodwillRefunded} between 0 and ${t.charged} - ${t.refunded}`,
    ),
    uniqueIndex('orders_workflow_id_key').on(t.workflowId),
    index('orders_buyer_idx').on(t.buyerId, t.createdAt),
  ],
);

/**
 * One row per fenced forward step (keyed like its ledger entry). A forward posting and the
 * compensation that looks for it both lock this row first; a compensation (or a refusal) that
 * finds no entry closes it, after which the forward posting refuses for good.
 */
export const stepFences = pgTable('step_fences', {
  key: text('key').primaryKey(),
  closedAt: timestamp('closed_at', { withTimezone: true }),
  closedBy: text('closed_by'),
  createdAt: createdAt(),
});

/**
 * Read model of refund workflows: one row per refund, whatever its kind (a top-up refunded through
 * the API, a refund made at Stripe, a goodwill credit for a purchase).
 */
export const refunds = pgTable(
  'refunds',
  {
    id: text('id').primaryKey(),
    workflowId: text('workflow_id').notNull(),
    kind: text('kind').notNull(),
    customerId: uuid('customer_id')
      .notNull()
      .references(() => customers.id),
    paymentId: text('payment_id').references(() => payments.id),
    verificationId: text('verification_id').references(() => verifications.id),
    orderId: text('order_id').references(() => orders.id),
    itemId: uuid('item_id'),
    /** The refund at Stripe: ours once created, or the one Stripe reported. */
    stripeRefundId: text('stripe_refund_id'),
    /** Credits taken back from (top-up) or given back to (purchase) the wallet. */
    credits: bigint('credits', { mode: 'number' }).notNull().default(0),
    /** Money back, minor units of `currency` (top-ups only). */
    amount: bigint('amount', { mode: 'number' }).notNull().default(0),
    currency: text('currency'),
    /** Credits the wallet no longer held, recorded as the customer's debt. */
    debtCredits: bigint('debt_credits', { mode: 'number' }).notNull().default(0),
    reason: text('reason').notNull(),
    requestedBy: text('requested_by').notNull(),
    status: text('status').notNull(),
    entryId: bigint('entry_id', { mode: 'number' }).references(() => entries.id),
    errorCode: text('error_code'),
    errorMessage: text('error_message'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index('refunds_workflow_idx').on(t.workflowId),
    index('refunds_payment_idx').on(t.paymentId, t.createdAt),
    index('refunds_customer_idx').on(t.customerId, t.createdAt),
    uniqueIndex('refunds_stripe_refund_key').on(t.stripeRefundId),
    check('refunds_kind_check', sql`${t.kind} in ('topup', 'stripe', 'verification', 'order')`),
    check(
      'refunds_status_check',
      sql`${t.status} in ('pending', 'processing', 'refunded', 'rejected', 'failed')`,
    ),
    check(
      'refunds_amounts_check',
      sql`${t.credits} >= 0 and ${t.amount} >= 0 and ${t.debtCredits} between 0 and ${t.credits}`,
    ),
  ],
);

/** A Stripe dispute (chargeback) on one of our payments, and the credits it holds. */
export const disputes = pgTable(
  'disputes',
  {
    /** Stripe's dispute id (dp_…). */
    id: text('id').primaryKey(),
    workflowId: text('workflow_id').notNull(),
    paymentId: text('payment_id')
      .notNull()
      .references(() => payments.id),
    customerId: uuid('customer_id')
      .notNull()
      .references(() => customers.id),
    amount: bigint('amount', { mode: 'number' }).notNull(),
    currency: text('currency').notNull(),
    /** The payment's credits the disputed amount stands for. */
    credits: bigint('credits', { mode: 'number' }).notNull(),
    /** Credits moved out of the spendable balance while the dispute is open. */
    heldCredits: bigint('held_credits', { mode: 'number' }).notNull().default(0),
    status: text('status').notNull(),
    reason: text('reason'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    closedAt: timestamp('closed_at', { withTimezone: true }),
  },
  (t) => [
    index('disputes_payment_idx').on(t.paymentId),
    index('disputes_customer_idx').on(t.customerId, t.createdAt),
    check('disputes_status_check', sql`${t.status} in ('open', 'won', 'lost')`),
    check('disputes_held_check', sql`${t.heldCredits} between 0 and ${t.credits}`),
  ],
);

/**
 * What a customer owes after a refund at Stripe took back more credits than the wallet held;
 * the next top-up settles it first. The ledger side is the `receivables` account.
 */
export const customerDebts = pgTable(
  'customer_debts',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    customerId: uuid('customer_id')
      .notNull()
      .references(() => customers.id),
    /** The refund or dispute that created it. */
    source: text('source').notNull(),
    credits: bigint('credits', { mode: 'number' }).notNull(),
    settledCredits: bigint('settled_credits', { mode: 'number' }).notNull().default(0),
    entryId: bigint('entry_id', { mode: 'number' }).references(() => entries.id),
    createdAt: createdAt(),
    settledAt: timestamp('settled_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('customer_debts_source_key').on(t.source),
    index('customer_debts_open_idx')
      .on(t.customerId, t.id)
      .where(sql`${t.settledCredits} < ${t.credits}`),
    check(
      'customer_debts_amounts_check',
      sql`${t.credits} > 0 and ${t.settledCredits} between 0 and ${t.credits}`,
    ),
  ],
);

/** Something a person should look at, raised once per key and counted while it repeats. */
export const alerts = pgTable(
  'alerts',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    /** What makes two raises the same alert (e.g. `large_deduction:<entry id>`). */
    key: text('key').notNull(),
    kind: text('kind').notNull(),
    severity: text('severity').notNull(),
    status: text('status').notNull().default('open'),
    message: text('message').notNull(),
    details: jsonb('details').$type<Record<string, unknown>>().notNull().default({}),
    customerId: uuid('customer_id'),
    occurrences: integer('occurrences').notNull().default(1),
    createdAt: createdAt(),
    lastSeenAt: timestamp('last_seen_at', { withTimezone: true }).notNull().defaultNow(),
    ackedAt: timestamp('acked_at', { withTimezone: true }),
    ackedBy: text('acked_by'),
  },
  (t) => [
    uniqueIndex('alerts_key_key').on(t.key),
    index('alerts_status_idx').on(t.status, t.id),
    check('alerts_status_check', sql`${t.status} in ('open', 'acked')`),
    check('alerts_severity_check', sql`${t.severity} in ('warning', 'critical')`),
  ],
);

/** One reconciliation run and its report. */
export const reconciliationRuns = pgTable(
  'reconciliation_runs',
  {
    id: text('id').primaryKey(),
    workflowId: text('workflow_id').notNull(),
    /** schedule | sweep | manual */
    trigger: text('trigger').notNull(),
    windowFrom: timestamp('window_from', { withTimezone: true }).notNull(),
    windowTo: timestamp('window_to', { withTimezone: true }).notNull(),
    status: text('status').notNull(),
    /** Counts and sums per category, matched count, cut-offs: the report's summary. */
    summary: jsonb('summary').$type<Record<string, unknown>>().notNull().default({}),
    matched: integer('matched').notNull().default(0),
    findingsCount: integer('findings_count').notNull().default(0),
    error: text('error'),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('reconciliation_runs_workflow_id_key').on(t.workflowId),
    index('reconciliation_runs_started_idx').on(t.startedAt),
    check(
      'reconciliation_runs_status_check',
      sql`${t.status} in ('running', 'completed', 'failed')`,
    ),
  ],
);

/** One thing a reconciliation run found, and what was done about it. */
export const reconciliationFindings = pgTable(
  'reconciliation_findings',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    runId: text('run_id')
      .notNull()
      .references(() => reconciliationRuns.id),
    /** Names the finding across runs (e.g. `paid_not_credited:pay_…`): repairs are keyed by it. */
    key: text('key').notNull(),
    kind: text('kind').notNull(),
    refs: jsonb('refs').$type<Record<string, unknown>>().notNull().default({}),
    amount: bigint('amount', { mode: 'number' }),
    currency: text('currency'),
    /** repaired | flagged | none */
    action: text('action').notNull(),
    outcome: text('outcome').notNull(),
    details: jsonb('details').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('reconciliation_findings_run_key').on(t.runId, t.key),
    index('reconciliation_findings_key_idx').on(t.key),
  ],
);

/** A repair a reconciliation made, once per finding key whatever the number of runs. */
export const reconciliationRepairs = pgTable('reconciliation_repairs', {
  key: text('key').primaryKey(),
  runId: text('run_id').notNull(),
  action: text('action').notNull(),
  details: jsonb('details').$type<Record<string, unknown>>().notNull().default({}),
  createdAt: createdAt(),
});

/**
 * Credits a wallet holds, as grants: every credit that enters a wallet arrives as one. The
 * wallet account's balance is the sum of its grants' `remaining`; each wallet posting is split
 * over grants in `grant_postings`, and the checker proves both.
 */
export const grants = pgTable(
  'grants',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    customerId: uuid('customer_id')
      .notNull()
      .references(() => customers.id),
    category: text('category', { enum: ['paid', 'promotional'] }).notNull(),
    /** Where the credits came from: topup, auto_topup, adjustment, promotion, refund, sale, opening. */
    source: text('source').notNull(),
    credits: bigint('credits', { mode: 'number' }).notNull(),
    remaining: bigint('remaining', { mode: 'number' }).notNull(),
    /** Lower is drawn first. */
    priority: integer('priority').notNull().default(100),
    effectiveAt: timestamp('effective_at', { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp('expires_at', { withTimezone: true }),
    /** open while it can be drawn from; expired or voided once its remainder went to breakage. */
    status: text('status').notNull().default('open'),
    closedAt: timestamp('closed_at', { withTimezone: true }),
    /** The entry that created it (none for the opening grant of a wallet that predates grants). */
    entryId: bigint('entry_id', { mode: 'number' }).references(() => entries.id),
    reason: text('reason'),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index('grants_customer_idx').on(t.customerId, t.createdAt),
    index('grants_open_idx')
      .on(t.customerId, t.priority)
      .where(sql`${t.status} = 'open' and ${t.remaining} > 0`),
    index('grants_expiry_idx')
      .on(t.expiresAt)
      .where(sql`${t.status} = 'open' and ${t.expiresAt} is not null`),
    index('grants_entry_idx').on(t.entryId),
    check('grants_category_check', sql`${t.category} in ('paid', 'promotional')`),
    check(
      'grants_source_check',
      sql`${t.source} in ('topup', 'auto_topup', 'adjustment', 'promotion', 'refund', 'sale', 'opening')`,
    ),
    check('grants_status_check', sql`${t.status} in ('open', 'expired', 'voided')`),
    check(
      'grants_amounts_check',
      sql`${t.credits} > 0 and ${t.remaining} between 0 and ${t.credits}`,
    ),
    check('grants_priority_check', sql`${t.priority} between 0 and 1000`),
    check('grants_dates_check', sql`${t.expiresAt} is null or ${t.expiresAt} > ${t.effectiveAt}`),
    check('grants_closed_check', sql`(${t.status} = 'open') = (${t.closedAt} is null)`),
  ],
);

/**
 * One grant's share of one wallet posting: the split that says which grants an entry drew
 * from, gave back to or created. Per entry and wallet they sum to the wallet posting.
 */
export const grantPostings = pgTable(
  'grant_postings',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    /** None only for a wallet's opening grant. */
    entryId: bigint('entry_id', { mode: 'number' }).references(() => entries.id),
    grantId: uuid('grant_id')
      .notNull()
      .references(() => grants.id),
    customerId: uuid('customer_id').notNull(),
    amount: bigint('amount', { mode: 'number' }).notNull(),
    /**
     * grant (credits in), draw (a debit), return (a refund back to the grant it came from),
     * breakage (a returned share whose grant had closed, straight to breakage), expiry, void,
     * opening.
     */
    kind: text('kind').notNull(),
    /** For returns and their breakage: the entry whose draw this gives back. */
    returnsEntryId: bigint('returns_entry_id', { mode: 'number' }).references(() => entries.id),
    createdAt: createdAt(),
  },
  (t) => [
    index('grant_postings_grant_idx').on(t.grantId, t.id),
    index('grant_postings_entry_idx').on(t.entryId),
    index('grant_postings_returns_idx')
      .on(t.returnsEntryId, t.grantId)
      .where(sql`${t.returnsEntryId} is not null`),
    check('grant_postings_amount_check', sql`${t.amount} <> 0`),
    check(
      'grant_postings_kind_check',
      sql`${t.kind} in ('grant', 'draw', 'return', 'breakage', 'expiry', 'void', 'opening')`,
    ),
  ],
);

/** A customer's low-balance thresholds and which of them are armed (not yet crossed). */
export const lowBalanceAlerts = pgTable('low_balance_alerts', {
  customerId: uuid('customer_id')
    .primaryKey()
    .references(() => customers.id),
  /** Available-balance thresholds, descending. */
  thresholds: bigint('thresholds', { mode: 'number' }).array().notNull(),
  /** Thresholds the available balance is at or above; crossing below one notifies once. */
  armed: bigint('armed', { mode: 'number' }).array().notNull(),
  /** Counts crossings, so each notification has a key of its own. */
  crossings: bigint('crossings', { mode: 'number' }).notNull().default(0),
  /** The task queue whose outbox dispatcher delivers the notifications. */
  taskQueue: text('task_queue').notNull(),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

/** A card saved off-session at Stripe for a customer's auto top-up. */
export const savedPaymentMethods = pgTable('saved_payment_methods', {
  customerId: uuid('customer_id')
    .primaryKey()
    .references(() => customers.id),
  stripeCustomerId: text('stripe_customer_id').notNull(),
  paymentMethodId: text('payment_method_id').notNull(),
  /** The checkout payment that saved it. */
  paymentId: text('payment_id'),
  cardBrand: text('card_brand'),
  cardLast4: text('card_last4'),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

/** A customer's auto top-up settings and the state of its crossing detection. */
export const autoTopupSettings = pgTable(
  'auto_topup_settings',
  {
    customerId: uuid('customer_id')
      .primaryKey()
      .references(() => customers.id),
    enabled: boolean('enabled').notNull().default(false),
    threshold: bigint('threshold', { mode: 'number' }).notNull(),
    pack: text('pack').notNull(),
    /**
     * The pack as it was when the customer agreed to it: an off-session charge takes exactly the
     * amount they saw, even if CREDIT_PACKS changes later.
     */
    packCredits: bigint('pack_credits', { mode: 'number' }).notNull(),
    packAmount: bigint('pack_amount', { mode: 'number' }).notNull(),
    packCurrency: text('pack_currency').notNull(),
    /** Days the credits of a charge stay spendable (none: they do not expire). */
    packExpiresInDays: integer('pack_expires_in_days'),
    monthlyCap: integer('monthly_cap').notNull(),
    /** True while the available balance is at or above the threshold (a crossing can fire). */
    armed: boolean('armed').notNull().default(true),
    /** Counts crossings; a charge's key is derived from it, so one crossing charges once. */
    crossings: bigint('crossings', { mode: 'number' }).notNull().default(0),
    pausedAt: timestamp('paused_at', { withTimezone: true }),
    pauseReason: text('pause_reason'),
    /** The task queue whose worker starts the charge workflows. */
    taskQueue: text('task_queue').notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    check('auto_topup_settings_threshold_check', sql`${t.threshold} > 0`),
    check('auto_topup_settings_cap_check', sql`${t.monthlyCap} between 1 and 1000`),
  ],
);

/** One auto top-up charge, one per crossing: requested in the posting transaction, then run. */
export const autoTopupCharges = pgTable(
  'auto_topup_charges',
  {
    /** `auto-topup:<customer>:<crossing>`: also the Stripe idempotency key's stem. */
    id: text('id').primaryKey(),
    customerId: uuid('customer_id')
      .notNull()
      .references(() => customers.id),
    crossing: bigint('crossing', { mode: 'number' }).notNull(),
    workflowId: text('workflow_id'),
    /** requested, charging, succeeded, declined, requires_action, failed, capped */
    status: text('status').notNull().default('requested'),
    pack: text('pack').notNull(),
    credits: bigint('credits', { mode: 'number' }).notNull(),
    amount: bigint('amount', { mode: 'number' }).notNull(),
    currency: text('currency').notNull(),
    /** Days the grant this charge credits stays spendable (none: it does not expire). */
    expiresInDays: integer('expires_in_days'),
    paymentIntentId: text('payment_intent_id'),
    grantId: uuid('grant_id').references(() => grants.id),
    failureCode: text('failure_code'),
    failureMessage: text('failure_message'),
    taskQueue: text('task_queue').notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('auto_topup_charges_crossing_key').on(t.customerId, t.crossing),
    index('auto_topup_charges_pending_idx')
      .on(t.taskQueue, t.createdAt)
      .where(sql`${t.status} = 'requested'`),
    index('auto_topup_charges_customer_idx').on(t.customerId, t.createdAt),
    check(
      'auto_topup_charges_status_check',
      sql`${t.status} in ('requested', 'charging', 'succeeded', 'declined', 'requires_action', 'failed', 'capped')`,
    ),
  ],
);
