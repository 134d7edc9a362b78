-- Change capture for Realtime's postgres_changes, on stock PostgreSQL (no extension, no
-- logical decoding). Triggers copy each committed change into realtime.changes; the server
-- reads that table in `seq` order, and NOTIFY only wakes it (a notification carries no row:
-- payloads are limited to 8,000 bytes).
--
-- Commit order: `seq` is assigned at commit by a deferred constraint trigger that first locks
-- the single row of realtime.commit_counter. That lock is held until the transaction ends,
-- so no other transaction can take a `seq` until this one is committed (and visible): a
-- reader that has seen `seq` n has seen every committed change below it.
--
-- The schema is not granted to anon/authenticated: the trigger functions are SECURITY
-- DEFINER, so writes made through /rest/v1 (as those roles) are still captured.

CREATE SCHEMA realtime;
REVOKE ALL ON SCHEMA realtime FROM PUBLIC;

CREATE TABLE realtime.changes (
  id          bigserial PRIMARY KEY,
  xid         bigint NOT NULL,
  seq         bigint,
  schema_name text NOT NULL,
  table_name  text NOT NULL,
  type        text NOT NULL CHECK (type IN ('INSERT', 'UPDATE', 'DELETE')),
  record      jsonb,
  old_record  jsonb,
  commit_ts   timestamptz
);
CREATE UNIQUE INDEX changes_seq_idx ON realtime.changes (seq) WHERE seq IS NOT NULL;
CREATE INDEX changes_pending_idx ON realtime.changes (xid) WHERE seq IS NULL;

CREATE TABLE realtime.commit_counter (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  last_seq bigint NOT NULL
);
INSERT INTO realtime.commit_counter (last_seq) VALUES (0);

-- One row per writing transaction: its insert queues the one deferred trigger event that
-- assigns the transaction's `seq`s at commit.
CREATE TABLE realtime.pending (xid bigint PRIMARY KEY);

CREATE FUNCTION realtime.current_xid() RETURNS bigint LANGUAGE sql VOLATILE AS $$
  SELECT pg_current_xact_id()::text::bigint
$$;

-- INSERT and DELETE are captured per statement (one insert for a bulk write, through the
-- transition table); UPDATE per row, which pairs the old and the new row.
CREATE FUNCTION realtime.capture_statement() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' SET timezone = 'UTC' AS $$
DECLARE
  x bigint := realtime.current_xid();
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO realtime.changes (xid, schema_name, table_name, type, record)
    SELECT x, TG_TABLE_SCHEMA, TG_TABLE_NAME, 'INSERT', to_jsonb(n) FROM new_rows n;
  ELSE
    INSERT INTO realtime.changes (xid, schema_name, table_name, type, old_record)
    SELECT x, TG_TABLE_SCHEMA, TG_TABLE_NAME, 'DELETE', to_jsonb(o) FROM old_rows o;
  END IF;
  IF FOUND THEN
    INSERT INTO realtime.pending (xid) VALUES (x) ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END
$$;

CREATE FUNCTION realtime.capture_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' SET timezone = 'UTC' AS $$
DECLARE
  x bigint := realtime.current_xid();
BEGIN
  INSERT INTO realtime.changes (xid, schema_name, table_name, type, record, old_record)
  VALUES (x, TG_TABLE_SCHEMA, TG_TABLE_NAME, 'UPDATE', to_jsonb(NEW), to_jsonb(OLD));
  INSERT INTO realtime.pending (xid) VALUES (x) ON CONFLICT DO NOTHING;
  RETURN NULL;
END
$$;

-- Runs at commit: takes the counter row's lock, numbers this transaction's changes in the
-- order they were made, and wakes the server.
CREATE FUNCTION realtime.assign_seq() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  n bigint;
  base bigint;
BEGIN
  -- Deleted now, so that a change made later in this commit (by another deferred trigger)
  -- queues this trigger again.
  DELETE FROM realtime.pending WHERE xid = NEW.xid;
  SELECT count(*) INTO n FROM realtime.changes WHERE xid = NEW.xid AND seq IS NULL;
  IF n = 0 THEN
    RETURN NULL;
  END IF;
  UPDATE realtime.commit_counter SET last_seq = last_seq + n RETURNING last_seq - n INTO base;
  UPDATE realtime.changes c
     SET seq = base + s.rn, commit_ts = clock_timestamp()
    FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn
            FROM realtime.changes WHERE xid = NEW.xid AND seq IS NULL) s
   WHERE c.id = s.id;
  PERFORM pg_notify('realtime_changes', '');
  RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER assign_seq AFTER INSERT ON realtime.pending
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION realtime.assign_seq();

-- The captured tables (Supabase's publication `supabase_realtime`). To capture another
-- table, create the same three triggers on it.
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['messages', 'workspaces', 'workspace_members', 'workspace_files',
                           'conversations', 'activity_feed'] LOOP
    EXECUTE format('CREATE TRIGGER realtime_capture_insert AFTER INSERT ON public.%I
                    REFERENCING NEW TABLE AS new_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION realtime.capture_statement()', t);
    EXECUTE format('CREATE TRIGGER realtime_capture_delete AFTER DELETE ON public.%I
                    REFERENCING OLD TABLE AS old_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION realtime.capture_statement()', t);
    EXECUTE format('CREATE TRIGGER realtime_capture_update AFTER UPDATE ON public.%I
                    FOR EACH ROW EXECUTE FUNCTION realtime.capture_update()', t);
  END LOOP;
END
$$;
