// Drizzle schema: customers, the double-entry ledger (accounts, entries, postings) and admin records.
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  check,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

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
    createdAt: createdAt(),
  },
  (t) => [
    index('postings_account_idx').on(t.accountId, t.id),
    index('postings_entry_idx').on(t.entryId),
    check('postings_amount_not_zero', sql`${t.amount} <> 0`),
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
