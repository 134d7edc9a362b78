-- Supabase Storage's metadata tables. Object bytes live on disk; these rows carry RLS.
CREATE SCHEMA IF NOT EXISTS storage;
GRANT USAGE ON SCHEMA storage TO anon, authenticated, service_role;

CREATE TABLE storage.buckets (
  id         text PRIMARY KEY,
  name       text NOT NULL UNIQUE,
  public     boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE storage.objects (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  bucket_id        text NOT NULL REFERENCES storage.buckets (id),
  name             text NOT NULL,
  owner            uuid,
  metadata         jsonb NOT NULL DEFAULT '{}',
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  last_accessed_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (bucket_id, name)
);

CREATE FUNCTION storage.workspace_of(p_name text) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$
  SELECT public.try_uuid(split_part(p_name, '/', 1))
$$;

GRANT ALL ON ALL TABLES IN SCHEMA storage TO anon, authenticated, service_role;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA storage TO anon, authenticated, service_role;
ALTER TABLE storage.buckets ENABLE ROW LEVEL SECURITY;
ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY;

CREATE POLICY bucket_read ON storage.buckets FOR SELECT USING (auth.role() IS NOT NULL);

CREATE POLICY object_read ON storage.objects FOR SELECT USING (
  bucket_id = 'workspace-files'
  AND public.is_org_member(public.workspace_org(storage.workspace_of(name))));
CREATE POLICY object_insert ON storage.objects FOR INSERT WITH CHECK (
  bucket_id = 'workspace-files'
  AND public.can_write_org(public.workspace_org(storage.workspace_of(name))));
CREATE POLICY object_update ON storage.objects FOR UPDATE
  USING (bucket_id = 'workspace-files'
         AND public.can_write_org(public.workspace_org(storage.workspace_of(name))))
  WITH CHECK (bucket_id = 'workspace-files'
         AND public.can_write_org(public.workspace_org(storage.workspace_of(name))));
CREATE POLICY object_delete ON storage.objects FOR DELETE USING (
  bucket_id = 'workspace-files'
  AND public.can_write_org(public.workspace_org(storage.workspace_of(name))));

INSERT INTO storage.buckets (id, name, public) VALUES ('workspace-files', 'workspace-files', false);
