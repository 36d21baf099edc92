-- The pack an auto top-up charges, as the customer agreed to it (nothing wrote these tables before).
ALTER TABLE "auto_topup_charges" ADD COLUMN "expires_in_days" integer;--> statement-breakpoint
ALTER TABLE "auto_topup_settings" ADD COLUMN "pack_credits" bigint NOT NULL;--> statement-breakpoint
ALTER TABLE "auto_topup_settings" ADD COLUMN "pack_amount" bigint NOT NULL;--> statement-breakpoint
ALTER TABLE "auto_topup_settings" ADD COLUMN "pack_currency" text NOT NULL;--> statement-breakpoint
ALTER TABLE "auto_topup_settings" ADD COLUMN "pack_expires_in_days" integer;