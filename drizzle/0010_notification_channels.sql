-- Per-channel delivery state on the outbox and channels in the preferences. The app role's
-- table-level grants (0004) cover the new columns; nothing to grant.
ALTER TABLE "notification_outbox" ADD COLUMN "in_app_status" text;--> statement-breakpoint
ALTER TABLE "notification_outbox" ADD COLUMN "email_status" text;--> statement-breakpoint
ALTER TABLE "notification_outbox" ADD COLUMN "email_sent_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "notification_preferences" ADD COLUMN "channels" jsonb;--> statement-breakpoint
ALTER TABLE "notification_outbox" ADD CONSTRAINT "notification_outbox_in_app_status_check" CHECK ("notification_outbox"."in_app_status" in ('sent', 'duplicate', 'muted'));--> statement-breakpoint
ALTER TABLE "notification_outbox" ADD CONSTRAINT "notification_outbox_email_status_check" CHECK ("notification_outbox"."email_status" in ('sent', 'muted', 'no_address', 'off'));