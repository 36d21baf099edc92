-- Seeds and triggers the money-movement workflows rely on.

-- Credits held between an order's debit and its per-item sales (sharded like every system account).
INSERT INTO accounts (kind, code, shard)
SELECT 'system', 'order_escrow', shard FROM generate_series(0, 15) AS shard;
--> statement-breakpoint

-- Starting price table for phone verifications (credits); admins edit it through the API.
INSERT INTO prices (service, country, price)
SELECT s.service, c.country, s.base + c.surcharge
FROM (VALUES ('whatsapp', 40), ('telegram', 30), ('google', 25), ('uber', 20), ('other', 15)) AS s(service, base)
CROSS JOIN (VALUES ('US', 10), ('GB', 8), ('DE', 6), ('FR', 6), ('IN', 0), ('BR', 2)) AS c(country, surcharge);
--> statement-breakpoint

-- Every change of a wallet's balance is announced on channel wallet_events at commit, so the
-- API can push it to the customer's open event streams without polling.
CREATE FUNCTION ledger_notify_wallet_change() RETURNS trigger LANGUAGE plpgsql AS $$
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
    'balance', NEW.balance_after,
    'entry', json_build_object('id', NEW.entry_id, 'type', entry_type, 'amount', NEW.amount),
    'at', NEW.created_at
  )::text);
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER postings_notify_wallet AFTER INSERT ON postings
  FOR EACH ROW EXECUTE FUNCTION ledger_notify_wallet_change();
