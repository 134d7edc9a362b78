-- The captured rows as whole rows whatever the table's columns: `to_jsonb(n)` over
-- `new_rows n` meant the column `n` as soon as a captured table had one (a column name wins
-- over a table alias), and every change of that table went out without its record.
CREATE OR REPLACE FUNCTION realtime.capture_statement() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' SET timezone = 'UTC' AS $$
DECLARE
  x bigint := realtime.current_xid();
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO realtime.changes (xid, schema_name, table_name, type, record)
    SELECT x, TG_TABLE_SCHEMA, TG_TABLE_NAME, 'INSERT', to_jsonb(new_rows.*) FROM new_rows;
  ELSE
    INSERT INTO realtime.changes (xid, schema_name, table_name, type, old_record)
    SELECT x, TG_TABLE_SCHEMA, TG_TABLE_NAME, 'DELETE', to_jsonb(old_rows.*) FROM old_rows;
  END IF;
  IF FOUND THEN
    INSERT INTO realtime.pending (xid) VALUES (x) ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END
$$;
