-- The realtime dispatcher reads the catalog at start: the captured tables, their SELECT
-- policies (embedded in its RLS probes) and the claims those policies can read. DDL made on
-- a running server now queues a 'CATALOG' marker in realtime.changes, numbered at commit like
-- any change, and the dispatcher re-reads the catalog at that point of the stream: no change
-- committed after the DDL is checked against the policies it replaced.
--
-- Event triggers need a superuser: on a database reached as another role (--database-url)
-- the marker is not installed, and a policy change takes a restart, as before.

ALTER TABLE realtime.changes DROP CONSTRAINT changes_type_check;
ALTER TABLE realtime.changes ADD CONSTRAINT changes_type_check
  CHECK (type IN ('INSERT', 'UPDATE', 'DELETE', 'CATALOG'));

CREATE FUNCTION realtime.capture_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  x bigint := realtime.current_xid();
BEGIN
  INSERT INTO realtime.changes (xid, schema_name, table_name, type)
  VALUES (x, '', '', 'CATALOG');
  INSERT INTO realtime.pending (xid) VALUES (x) ON CONFLICT DO NOTHING;
END
$$;

DO $$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    CREATE EVENT TRIGGER realtime_catalog ON ddl_command_end
      EXECUTE FUNCTION realtime.capture_ddl();
  END IF;
END
$$;
