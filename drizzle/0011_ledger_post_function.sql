CREATE TABLE "wallet_event_listeners" (
	"customer_id" uuid NOT NULL,
	"hub_id" text NOT NULL,
	"refreshed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "wallet_event_listeners_customer_id_hub_id_pk" PRIMARY KEY("customer_id","hub_id")
);
--> statement-breakpoint
CREATE INDEX "wallet_event_listeners_refreshed_idx" ON "wallet_event_listeners" USING btree ("refreshed_at");--> statement-breakpoint

-- Wallet events leave the commit path: one trigger per INSERT statement on postings, which
-- notifies only for wallets an API process is streaming (wallet_event_listeners). A posting
-- nobody watches pays one look at that small table. A stream registers its wallet before it
-- reads the first balance FOR SHARE, so a posting that missed the registration is in that read.
DROP TRIGGER postings_notify_wallet ON postings;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION ledger_notify_wallet_listeners() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM wallet_event_listeners) THEN
    RETURN NULL;
  END IF;
  PERFORM pg_notify('wallet_events', json_build_object(
    'customerId', a.customer_id,
    'balance', CASE WHEN abs(p.balance_after) <= 9007199254740991 THEN to_json(p.balance_after)
                    ELSE to_json(p.balance_after::text) END,
    'entry', json_build_object('id', p.entry_id, 'type', e.type, 'amount', p.amount),
    'at', p.created_at
  )::text)
  FROM new_postings p
  JOIN accounts a ON a.id = p.account_id AND a.kind = 'wallet'
  JOIN entries e ON e.id = p.entry_id
  WHERE EXISTS (SELECT 1 FROM wallet_event_listeners l WHERE l.customer_id = a.customer_id)
  ORDER BY p.id;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER postings_notify_wallet AFTER INSERT ON postings
  REFERENCING NEW TABLE AS new_postings
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_notify_wallet_listeners();
--> statement-breakpoint

-- One balance check per entry: entries_balanced already sums every posting of an entry at
-- commit, and a posting can only be written in its entry's transaction (postings_check), so
-- the per-posting run of the same check proved nothing more.
DROP TRIGGER postings_balanced ON postings;
--> statement-breakpoint

-- Identity and transaction stamps: call the trigger functions only when there is something to
-- refuse or to correct, not on every balance move or entry.
DROP TRIGGER accounts_identity_fixed ON accounts;
--> statement-breakpoint
CREATE TRIGGER accounts_identity_fixed BEFORE UPDATE ON accounts
  FOR EACH ROW
  WHEN (NEW.id IS DISTINCT FROM OLD.id OR NEW.kind IS DISTINCT FROM OLD.kind
        OR NEW.customer_id IS DISTINCT FROM OLD.customer_id OR NEW.code IS DISTINCT FROM OLD.code
        OR NEW.shard IS DISTINCT FROM OLD.shard)
  EXECUTE FUNCTION ledger_account_identity_fixed();
--> statement-breakpoint
DROP TRIGGER entries_stamp_transaction ON entries;
--> statement-breakpoint
CREATE TRIGGER entries_stamp_transaction BEFORE INSERT ON entries
  FOR EACH ROW WHEN (NEW.xact_id IS DISTINCT FROM pg_current_xact_id())
  EXECUTE FUNCTION ledger_stamp_transaction();
--> statement-breakpoint

-- An entry as the ledger recorded it, by idempotency key: its postings (in write order, with
-- their accounts) and grant shares. NULL when the key was never posted.
CREATE FUNCTION ledger_read_entry(p_key text) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object(
    'entryId', e.id,
    'createdAt', e.created_at,
    'type', e.type,
    'contentHash', e.content_hash,
    'lines', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'accountId', p.account_id, 'kind', a.kind, 'customerId', a.customer_id,
                'code', a.code, 'amount', p.amount, 'balanceAfter', p.balance_after::text)
                ORDER BY p.id), '[]'::jsonb)
              FROM postings p JOIN accounts a ON a.id = p.account_id WHERE p.entry_id = e.id),
    'grants', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'grantId', g.grant_id, 'customerId', g.customer_id, 'amount', g.amount,
                 'kind', g.kind) ORDER BY g.id), '[]'::jsonb)
               FROM grant_postings g WHERE g.entry_id = e.id))
  FROM entries e WHERE e.idempotency_key = p_key
$$;
--> statement-breakpoint

-- A whole posting in one statement, with the rules of src/ledger/ledger.ts and grants.ts:
-- the step's fence, the entry under its idempotency key (a taken key answers the first entry
-- for the caller to compare), wallet locks in id order, draws in burn-down order (or a grant per
-- credit), every balance moved in id order (wallets never below zero), then the postings.
-- p_lines: [{ i, a: account id, k: 'wallet'|'system', o: customer id or code, n: amount,
--             prefer?: [grant ids] (a debit), g?: the grant a credit creates }].
-- Refusals raise with their own SQLSTATE (class LD) and a JSON detail; the transaction rolls back.
-- Wallets with low-balance or auto top-up watchers answer 'watched' before writing anything:
-- their postings take the statement path, which runs the watchers.
CREATE FUNCTION ledger_post_entry(
  p_key text, p_hash text, p_type text, p_description text, p_workflow_id text,
  p_metadata jsonb, p_fence text, p_lines jsonb
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_wallets bigint[];
  v_owners uuid[];
  v_locked integer;
  v_fence record;
  v_entry_id bigint;
  v_created timestamptz;
  v_line record;
  v_grant record;
  v_prefer uuid[];
  v_need numeric;
  v_left numeric;
  v_take numeric;
  v_total numeric;
  v_ids uuid[];
  v_takes bigint[];
  v_kind text;
  v_gid uuid;
  v_balance bigint;
  v_acc_ids bigint[] := '{}';
  v_amounts bigint[] := '{}';
  v_afters bigint[] := '{}';
BEGIN
  -- A look-up after a taken key or a lock must see what committed meanwhile.
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'ledger_post_entry needs READ COMMITTED, not %',
      current_setting('transaction_isolation') USING ERRCODE = 'LD005';
  END IF;

  SELECT array_agg((l->>'a')::bigint ORDER BY (l->>'a')::bigint),
         array_agg((l->>'o')::uuid ORDER BY (l->>'a')::bigint)
    INTO v_wallets, v_owners
    FROM jsonb_array_elements(p_lines) l WHERE l->>'k' = 'wallet';
  IF v_wallets IS NOT NULL AND (
       EXISTS (SELECT 1 FROM low_balance_alerts WHERE customer_id = ANY (v_owners))
       OR EXISTS (SELECT 1 FROM auto_topup_settings WHERE customer_id = ANY (v_owners) AND enabled)) THEN
    RETURN jsonb_build_object('status', 'watched');
  END IF;

  IF p_fence IS NOT NULL THEN
    INSERT INTO step_fences (key) VALUES (p_fence)
      ON CONFLICT (key) DO UPDATE SET key = excluded.key
      RETURNING closed_at, closed_by INTO v_fence;
    IF v_fence.closed_at IS NOT NULL THEN
      RAISE EXCEPTION 'step % was closed', p_fence USING ERRCODE = 'LD004',
        DETAIL = json_build_object('closedBy', v_fence.closed_by)::text;
    END IF;
  END IF;

  INSERT INTO entries (idempotency_key, content_hash, type, description, workflow_id, metadata)
    VALUES (p_key, p_hash, p_type, p_description, p_workflow_id, coalesce(p_metadata, '{}'))
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, created_at INTO v_entry_id, v_created;
  IF v_entry_id IS NULL THEN
    RETURN coalesce(ledger_read_entry(p_key) || jsonb_build_object('status', 'exists'),
                    jsonb_build_object('status', 'retry'));
  END IF;

  IF v_wallets IS NOT NULL THEN
    SELECT count(*) INTO v_locked FROM (
      SELECT a.id FROM accounts a
      JOIN unnest(v_wallets, v_owners) AS w(id, owner) ON a.id = w.id AND a.customer_id = w.owner
      WHERE a.kind = 'wallet' ORDER BY a.id FOR UPDATE OF a) locked;
    IF v_locked <> cardinality(v_wallets) THEN
      RAISE EXCEPTION 'a wallet of entry % is not where the caller said', p_key
        USING ERRCODE = 'LD003';
    END IF;
  END IF;

  v_kind := CASE p_type WHEN 'grant_expiry' THEN 'expiry' WHEN 'grant_void' THEN 'void' ELSE 'draw' END;
  FOR v_line IN
    SELECT (l->>'i')::integer AS i, (l->>'a')::bigint AS a, (l->>'o')::uuid AS o,
           (l->>'n')::bigint AS n, l->'prefer' AS prefer, l->'g' AS g
    FROM jsonb_array_elements(p_lines) l WHERE l->>'k' = 'wallet' ORDER BY 2
  LOOP
    IF v_line.n < 0 THEN
      v_need := -v_line.n;
      v_left := v_need;
      v_total := NULL;
      v_ids := '{}';
      v_takes := '{}';
      v_prefer := coalesce(ARRAY(SELECT jsonb_array_elements_text(v_line.prefer)::uuid), '{}');
      -- Only the grants the draw reaches: those whose running total before them is short of it.
      FOR v_grant IN
        SELECT id, remaining, total FROM (
          SELECT id, remaining,
                 sum(remaining) OVER (ORDER BY array_position(v_prefer, id) ASC NULLS LAST,
                                      priority ASC, (category = 'paid') ASC,
                                      expires_at ASC NULLS LAST, created_at ASC, id ASC
                                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before,
                 sum(remaining) OVER () AS total
          FROM grants
          WHERE customer_id = v_line.o AND status = 'open' AND remaining > 0
            AND effective_at <= now() AND (expires_at IS NULL OR expires_at > now())
        ) g
        WHERE coalesce(before, 0) < v_need
        ORDER BY coalesce(before, 0)
      LOOP
        v_total := coalesce(v_total, v_grant.total);
        EXIT WHEN v_left = 0;
        v_take := least(v_grant.remaining, v_left);
        v_ids := v_ids || v_grant.id;
        v_takes := v_takes || v_take::bigint;
        v_left := v_left - v_take;
      END LOOP;
      IF coalesce(v_total, 0) < v_need THEN
        RAISE EXCEPTION 'insufficient credits' USING ERRCODE = 'LD001',
          DETAIL = json_build_object('index', v_line.i, 'available', coalesce(v_total, 0)::text,
                                     'required', v_need::text)::text;
      END IF;
      UPDATE grants g SET remaining = g.remaining - v.take, updated_at = now()
        FROM unnest(v_ids, v_takes) AS v(id, take) WHERE g.id = v.id;
      INSERT INTO grant_postings (entry_id, grant_id, customer_id, amount, kind)
        SELECT v_entry_id, v.id, v_line.o, -v.take, v_kind
        FROM unnest(v_ids, v_takes) WITH ORDINALITY AS v(id, take, ord) ORDER BY v.ord;
    ELSE
      INSERT INTO grants (id, customer_id, category, source, credits, remaining, priority,
                          effective_at, expires_at, entry_id, reason, metadata)
        VALUES (coalesce((v_line.g->>'id')::uuid, gen_random_uuid()), v_line.o,
                v_line.g->>'category', v_line.g->>'source', v_line.n, v_line.n,
                coalesce((v_line.g->>'priority')::integer, 100),
                coalesce((v_line.g->>'effectiveAt')::timestamptz, now()),
                (v_line.g->>'expiresAt')::timestamptz, v_entry_id, v_line.g->>'reason',
                coalesce(v_line.g->'metadata', '{}'::jsonb))
        RETURNING id INTO v_gid;
      INSERT INTO grant_postings (entry_id, grant_id, customer_id, amount, kind)
        VALUES (v_entry_id, v_gid, v_line.o, v_line.n, 'grant');
    END IF;
  END LOOP;

  -- Every account in ascending id order, so concurrent postings never deadlock.
  FOR v_line IN
    SELECT (l->>'i')::integer AS i, (l->>'a')::bigint AS a, l->>'k' AS k, l->>'o' AS o,
           (l->>'n')::bigint AS n
    FROM jsonb_array_elements(p_lines) l ORDER BY 2
  LOOP
    IF v_line.k = 'wallet' THEN
      UPDATE accounts SET balance = balance + v_line.n, updated_at = now()
        WHERE id = v_line.a AND kind = 'wallet' AND customer_id = v_line.o::uuid
          AND balance + v_line.n >= 0
        RETURNING balance INTO v_balance;
    ELSE
      UPDATE accounts SET balance = balance + v_line.n, updated_at = now()
        WHERE id = v_line.a AND kind = v_line.k AND code = v_line.o
        RETURNING balance INTO v_balance;
    END IF;
    IF NOT FOUND THEN
      SELECT balance INTO v_balance FROM accounts
        WHERE id = v_line.a AND kind = v_line.k
          AND (CASE WHEN v_line.k = 'wallet' THEN customer_id::text = v_line.o ELSE code = v_line.o END);
      IF NOT FOUND THEN
        RAISE EXCEPTION 'account % of entry % is not where the caller said', v_line.a, p_key
          USING ERRCODE = 'LD003';
      END IF;
      RAISE EXCEPTION 'insufficient credits' USING ERRCODE = 'LD002',
        DETAIL = json_build_object('index', v_line.i, 'balance', v_balance::text,
                                   'required', (-v_line.n)::text)::text;
    END IF;
    v_acc_ids := v_acc_ids || v_line.a;
    v_amounts := v_amounts || v_line.n;
    v_afters := v_afters || v_balance;
  END LOOP;

  INSERT INTO postings (entry_id, account_id, amount, balance_after)
    SELECT v_entry_id, p.a, p.n, p.b
    FROM unnest(v_acc_ids, v_amounts, v_afters) WITH ORDINALITY AS p(a, n, b, ord) ORDER BY p.ord;

  RETURN jsonb_build_object(
    'status', 'posted',
    'entryId', v_entry_id,
    'createdAt', v_created,
    'lines', (SELECT jsonb_agg(jsonb_build_object('accountId', p.a, 'amount', p.n,
                                                  'balanceAfter', p.b::text) ORDER BY p.ord)
              FROM unnest(v_acc_ids, v_amounts, v_afters) WITH ORDINALITY AS p(a, n, b, ord)),
    'grants', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'grantId', g.grant_id, 'customerId', g.customer_id, 'amount', g.amount,
                 'kind', g.kind) ORDER BY g.id), '[]'::jsonb)
               FROM grant_postings g WHERE g.entry_id = v_entry_id));
END
$$;
