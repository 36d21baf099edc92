CREATE TABLE "account_identities" (
	"account_id" bigint PRIMARY KEY NOT NULL,
	"kind" text NOT NULL,
	"customer_id" uuid,
	"code" text NOT NULL,
	"shard" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "entries" ADD COLUMN "xact_id" "xid8" DEFAULT pg_current_xact_id() NOT NULL;--> statement-breakpoint
ALTER TABLE "postings" ADD COLUMN "xact_id" "xid8" DEFAULT pg_current_xact_id() NOT NULL;--> statement-breakpoint
ALTER TABLE "account_identities" ADD CONSTRAINT "account_identities_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint

-- Postings are written in the transaction that created their entry, and nowhere else. Both
-- rows carry the id of the transaction that wrote them, set here so no writer can choose it.
CREATE FUNCTION ledger_stamp_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.xact_id := pg_current_xact_id();
  RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER entries_stamp_transaction BEFORE INSERT ON entries
  FOR EACH ROW EXECUTE FUNCTION ledger_stamp_transaction();
--> statement-breakpoint

-- A posting must (1) belong to an entry written by this same transaction, (2) continue its
-- account's history (balance_after = the previous posting's balance_after + amount) and
-- (3) record the account's balance as this transaction just set it. The account row is locked
-- first, so no concurrent posting can slip in between the read and the insert.
CREATE FUNCTION ledger_check_posting() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  entry_xact xid8;
  current_balance bigint;
  previous bigint;
BEGIN
  NEW.xact_id := pg_current_xact_id();
  SELECT xact_id INTO entry_xact FROM entries WHERE id = NEW.entry_id;
  IF FOUND AND entry_xact <> NEW.xact_id THEN
    RAISE EXCEPTION 'posting refused: entry % was written by another transaction; postings are added only with their entry', NEW.entry_id
      USING ERRCODE = '23514', CONSTRAINT = 'postings_same_transaction';
  END IF;
  SELECT balance INTO current_balance FROM accounts WHERE id = NEW.account_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN NEW; -- the foreign key refuses it
  END IF;
  SELECT balance_after INTO previous FROM postings
    WHERE account_id = NEW.account_id ORDER BY id DESC LIMIT 1;
  IF coalesce(previous, 0) + NEW.amount <> NEW.balance_after THEN
    RAISE EXCEPTION 'posting refused: account % had % and moves by %, so balance_after cannot be %',
      NEW.account_id, coalesce(previous, 0), NEW.amount, NEW.balance_after
      USING ERRCODE = '23514', CONSTRAINT = 'postings_balance_chain';
  END IF;
  IF current_balance <> NEW.balance_after THEN
    RAISE EXCEPTION 'posting refused: account % holds %, not the % this posting records',
      NEW.account_id, current_balance, NEW.balance_after
      USING ERRCODE = '23514', CONSTRAINT = 'postings_balance_chain';
  END IF;
  RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER postings_check BEFORE INSERT ON postings
  FOR EACH ROW EXECUTE FUNCTION ledger_check_posting();
--> statement-breakpoint

-- A cached balance moves only with a posting: at commit, an account whose balance changed in
-- this transaction must hold exactly what its latest posting, written by this transaction, says.
CREATE FUNCTION ledger_check_balance_posted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  now_balance bigint;
  last_after bigint;
  last_xact xid8;
BEGIN
  SELECT balance INTO now_balance FROM accounts WHERE id = NEW.id;
  SELECT balance_after, xact_id INTO last_after, last_xact FROM postings
    WHERE account_id = NEW.id ORDER BY id DESC LIMIT 1;
  IF last_xact IS DISTINCT FROM pg_current_xact_id() OR last_after IS DISTINCT FROM now_balance THEN
    RAISE EXCEPTION 'account % balance changed to % without a posting recording it', NEW.id, now_balance
      USING ERRCODE = '23514', CONSTRAINT = 'accounts_balance_posted';
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE CONSTRAINT TRIGGER accounts_balance_posted AFTER UPDATE OF balance ON accounts
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN (OLD.balance IS DISTINCT FROM NEW.balance)
  EXECUTE FUNCTION ledger_check_balance_posted();
--> statement-breakpoint

-- An account is always the same account: its id, kind, owner, code and shard never change.
CREATE FUNCTION ledger_account_identity_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id IS DISTINCT FROM OLD.id OR NEW.kind IS DISTINCT FROM OLD.kind
     OR NEW.customer_id IS DISTINCT FROM OLD.customer_id OR NEW.code IS DISTINCT FROM OLD.code
     OR NEW.shard IS DISTINCT FROM OLD.shard THEN
    RAISE EXCEPTION 'account % cannot change its kind, owner, code or shard', OLD.id
      USING ERRCODE = '42501';
  END IF;
  RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER accounts_identity_fixed BEFORE UPDATE ON accounts
  FOR EACH ROW EXECUTE FUNCTION ledger_account_identity_fixed();
--> statement-breakpoint

-- What each account was opened as, recorded once (existing accounts now, new ones by trigger);
-- the record itself never changes. The checker compares the two.
INSERT INTO account_identities (account_id, kind, customer_id, code, shard, created_at)
SELECT id, kind, customer_id, code, shard, created_at FROM accounts;
--> statement-breakpoint
-- Runs with the owner's rights, so the app role needs (and has) no write access to the record.
CREATE FUNCTION ledger_record_account_identity() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  INSERT INTO account_identities (account_id, kind, customer_id, code, shard)
  VALUES (NEW.id, NEW.kind, NEW.customer_id, NEW.code, NEW.shard);
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER accounts_record_identity AFTER INSERT ON accounts
  FOR EACH ROW EXECUTE FUNCTION ledger_record_account_identity();
--> statement-breakpoint
CREATE TRIGGER account_identities_append_only BEFORE UPDATE ON account_identities
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
--> statement-breakpoint
CREATE TRIGGER account_identities_no_truncate BEFORE TRUNCATE ON account_identities
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
--> statement-breakpoint

-- Wallet events carry the balance as a JSON number while it is exact in JavaScript
-- (|n| <= 2^53 - 1) and as a decimal string beyond, like the HTTP API.
CREATE OR REPLACE FUNCTION ledger_notify_wallet_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  owner uuid;
  entry_type text;
BEGIN
  SELECT customer_id INTO owner FROM accounts WHERE id = NEW.account_id AND kind = 'wallet';
  IF owner IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT type INTO entry_type FROM entries WHERE id = NEW.entry_id;
  PERFORM pg_notify('wallet_events', json_build_object(
    'customerId', owner,
    'balance', CASE WHEN abs(NEW.balance_after) <= 9007199254740991 THEN to_json(NEW.balance_after)
                    ELSE to_json(NEW.balance_after::text) END,
    'entry', json_build_object('id', NEW.entry_id, 'type', entry_type, 'amount', NEW.amount),
    'at', NEW.created_at
  )::text);
  RETURN NULL;
END
$$;
--> statement-breakpoint

-- The role the API and worker run as. It holds no object and cannot log in; a deployment
-- creates a login role that is a member of it (see README, "Database roles"). Roles belong to
-- the whole server, so another database on it may have created it already.
DO $$
BEGIN
  CREATE ROLE creditflow_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
EXCEPTION
  WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
--> statement-breakpoint
DO $$
BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO creditflow_app', current_database());
END
$$;
--> statement-breakpoint
GRANT USAGE ON SCHEMA public TO creditflow_app;
--> statement-breakpoint
-- Read models, payments, webhooks, notifications and the like: read and write, as the
-- workflows need; never TRUNCATE, TRIGGER or REFERENCES, and no DDL (the role owns nothing).
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO creditflow_app;
--> statement-breakpoint
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO creditflow_app;
--> statement-breakpoint
-- Tables and sequences later migrations create get the same, from whoever runs migrations.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO creditflow_app;
--> statement-breakpoint
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO creditflow_app;
--> statement-breakpoint
-- The ledger itself: entries, postings and the audit log are insert-only (account identities
-- are written by their trigger alone); accounts can be
-- opened (a customer's wallet) and their balance moved, and nothing else about them changes.
REVOKE UPDATE, DELETE ON entries, postings, audit_log, accounts FROM creditflow_app;
--> statement-breakpoint
REVOKE INSERT, UPDATE, DELETE ON account_identities FROM creditflow_app;
--> statement-breakpoint
GRANT UPDATE (balance, updated_at) ON accounts TO creditflow_app;
