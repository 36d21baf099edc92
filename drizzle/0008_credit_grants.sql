CREATE TABLE "auto_topup_charges" (
	"id" text PRIMARY KEY NOT NULL,
	"customer_id" uuid NOT NULL,
	"crossing" bigint NOT NULL,
	"workflow_id" text,
	"status" text DEFAULT 'requested' NOT NULL,
	"pack" text NOT NULL,
	"credits" bigint NOT NULL,
	"amount" bigint NOT NULL,
	"currency" text NOT NULL,
	"expires_in_days" integer,
	"payment_intent_id" text,
	"grant_id" uuid,
	"failure_code" text,
	"failure_message" text,
	"task_queue" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "auto_topup_charges_status_check" CHECK ("auto_topup_charges"."status" in ('requested', 'charging', 'succeeded', 'declined', 'requires_action', 'failed', 'capped'))
);
--> statement-breakpoint
CREATE TABLE "auto_topup_settings" (
	"customer_id" uuid PRIMARY KEY NOT NULL,
	"enabled" boolean DEFAULT false NOT NULL,
	"threshold" bigint NOT NULL,
	"pack" text NOT NULL,
	"pack_credits" bigint NOT NULL,
	"pack_amount" bigint NOT NULL,
	"pack_currency" text NOT NULL,
	"pack_expires_in_days" integer,
	"monthly_cap" integer NOT NULL,
	"armed" boolean DEFAULT true NOT NULL,
	"crossings" bigint DEFAULT 0 NOT NULL,
	"paused_at" timestamp with time zone,
	"pause_reason" text,
	"task_queue" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "auto_topup_settings_threshold_check" CHECK ("auto_topup_settings"."threshold" > 0),
	CONSTRAINT "auto_topup_settings_cap_check" CHECK ("auto_topup_settings"."monthly_cap" between 1 and 1000)
);
--> statement-breakpoint
CREATE TABLE "grant_postings" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"entry_id" bigint,
	"grant_id" uuid NOT NULL,
	"customer_id" uuid NOT NULL,
	"amount" bigint NOT NULL,
	"kind" text NOT NULL,
	"returns_entry_id" bigint,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "grant_postings_amount_check" CHECK ("grant_postings"."amount" <> 0),
	CONSTRAINT "grant_postings_kind_check" CHECK ("grant_postings"."kind" in ('grant', 'draw', 'return', 'breakage', 'expiry', 'void', 'opening'))
);
--> statement-breakpoint
CREATE TABLE "grants" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"customer_id" uuid NOT NULL,
	"category" text NOT NULL,
	"source" text NOT NULL,
	"credits" bigint NOT NULL,
	"remaining" bigint NOT NULL,
	"priority" integer DEFAULT 100 NOT NULL,
	"effective_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone,
	"status" text DEFAULT 'open' NOT NULL,
	"closed_at" timestamp with time zone,
	"entry_id" bigint,
	"reason" text,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "grants_category_check" CHECK ("grants"."category" in ('paid', 'promotional')),
	CONSTRAINT "grants_source_check" CHECK ("grants"."source" in ('topup', 'auto_topup', 'adjustment', 'promotion', 'refund', 'sale', 'opening')),
	CONSTRAINT "grants_status_check" CHECK ("grants"."status" in ('open', 'expired', 'voided')),
	CONSTRAINT "grants_amounts_check" CHECK ("grants"."credits" > 0 and "grants"."remaining" between 0 and "grants"."credits"),
	CONSTRAINT "grants_priority_check" CHECK ("grants"."priority" between 0 and 1000),
	CONSTRAINT "grants_dates_check" CHECK ("grants"."expires_at" is null or "grants"."expires_at" > "grants"."effective_at"),
	CONSTRAINT "grants_closed_check" CHECK (("grants"."status" = 'open') = ("grants"."closed_at" is null))
);
--> statement-breakpoint
CREATE TABLE "low_balance_alerts" (
	"customer_id" uuid PRIMARY KEY NOT NULL,
	"thresholds" bigint[] NOT NULL,
	"armed" bigint[] NOT NULL,
	"crossings" bigint DEFAULT 0 NOT NULL,
	"task_queue" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "saved_payment_methods" (
	"customer_id" uuid PRIMARY KEY NOT NULL,
	"stripe_customer_id" text NOT NULL,
	"payment_method_id" text NOT NULL,
	"payment_id" text,
	"card_brand" text,
	"card_last4" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "auto_topup_charges" ADD CONSTRAINT "auto_topup_charges_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "auto_topup_charges" ADD CONSTRAINT "auto_topup_charges_grant_id_grants_id_fk" FOREIGN KEY ("grant_id") REFERENCES "public"."grants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "auto_topup_settings" ADD CONSTRAINT "auto_topup_settings_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "grant_postings" ADD CONSTRAINT "grant_postings_entry_id_entries_id_fk" FOREIGN KEY ("entry_id") REFERENCES "public"."entries"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "grant_postings" ADD CONSTRAINT "grant_postings_grant_id_grants_id_fk" FOREIGN KEY ("grant_id") REFERENCES "public"."grants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "grant_postings" ADD CONSTRAINT "grant_postings_returns_entry_id_entries_id_fk" FOREIGN KEY ("returns_entry_id") REFERENCES "public"."entries"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "grants" ADD CONSTRAINT "grants_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "grants" ADD CONSTRAINT "grants_entry_id_entries_id_fk" FOREIGN KEY ("entry_id") REFERENCES "public"."entries"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "low_balance_alerts" ADD CONSTRAINT "low_balance_alerts_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "saved_payment_methods" ADD CONSTRAINT "saved_payment_methods_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "auto_topup_charges_crossing_key" ON "auto_topup_charges" USING btree ("customer_id","crossing");--> statement-breakpoint
CREATE INDEX "auto_topup_charges_pending_idx" ON "auto_topup_charges" USING btree ("task_queue","created_at") WHERE "auto_topup_charges"."status" = 'requested';--> statement-breakpoint
CREATE INDEX "auto_topup_charges_customer_idx" ON "auto_topup_charges" USING btree ("customer_id","created_at");--> statement-breakpoint
CREATE INDEX "grant_postings_grant_idx" ON "grant_postings" USING btree ("grant_id","id");--> statement-breakpoint
CREATE INDEX "grant_postings_entry_idx" ON "grant_postings" USING btree ("entry_id");--> statement-breakpoint
CREATE INDEX "grant_postings_returns_idx" ON "grant_postings" USING btree ("returns_entry_id","grant_id") WHERE "grant_postings"."returns_entry_id" is not null;--> statement-breakpoint
CREATE INDEX "grants_customer_idx" ON "grants" USING btree ("customer_id","created_at");--> statement-breakpoint
CREATE INDEX "grants_open_idx" ON "grants" USING btree ("customer_id","priority") WHERE "grants"."status" = 'open' and "grants"."remaining" > 0;--> statement-breakpoint
CREATE INDEX "grants_expiry_idx" ON "grants" USING btree ("expires_at") WHERE "grants"."status" = 'open' and "grants"."expires_at" is not null;--> statement-breakpoint
CREATE INDEX "grants_entry_idx" ON "grants" USING btree ("entry_id");--> statement-breakpoint
-- Where the remainder of an expired or voided grant goes.
INSERT INTO accounts (kind, code, shard)
SELECT 'system', 'breakage', shard FROM generate_series(0, 15) AS shard;
--> statement-breakpoint

-- Wallets that predate grants: what each holds becomes one paid opening grant.
INSERT INTO grants (customer_id, category, source, credits, remaining, priority, reason)
SELECT customer_id, 'paid', 'opening', balance, balance, 100, 'balance held before grants'
FROM accounts WHERE kind = 'wallet' AND balance > 0;
--> statement-breakpoint
INSERT INTO grant_postings (entry_id, grant_id, customer_id, amount, kind)
SELECT NULL, id, customer_id, credits, 'opening' FROM grants WHERE source = 'opening';
