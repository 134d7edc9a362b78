-- The workspace_files policies, same rules, checked once per statement instead of per row.
-- `is_org_member(workspace_org(workspace_id))` is a SECURITY DEFINER call (never inlined) per
-- row: listing 2,000 files cost two function calls and two lookups each. The caller's
-- workspaces do not depend on the row, so a set-returning function in a sub-select is run
-- once (a hashed subplan) and each row is a hash probe.

CREATE FUNCTION public.member_workspaces() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT w.id FROM public.workspaces w
  JOIN public.org_memberships m ON m.org_id = w.org_id
  WHERE m.user_id = auth.uid()
$$;
CREATE FUNCTION public.writable_workspaces() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT w.id FROM public.workspaces w
  JOIN public.org_memberships m ON m.org_id = w.org_id
  WHERE m.user_id = auth.uid() AND m.role IN ('owner', 'admin', 'member')
$$;
GRANT EXECUTE ON FUNCTION public.member_workspaces() TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.writable_workspaces() TO anon, authenticated, service_role;

DROP POLICY file_read ON public.workspace_files;
DROP POLICY file_insert ON public.workspace_files;
DROP POLICY file_update ON public.workspace_files;
DROP POLICY file_delete ON public.workspace_files;

CREATE POLICY file_read ON public.workspace_files FOR SELECT
  USING (workspace_id IN (SELECT public.member_workspaces()));
CREATE POLICY file_insert ON public.workspace_files FOR INSERT
  WITH CHECK (workspace_id IN (SELECT public.writable_workspaces()));
CREATE POLICY file_update ON public.workspace_files FOR UPDATE
  USING (workspace_id IN (SELECT public.writable_workspaces()))
  WITH CHECK (workspace_id IN (SELECT public.writable_workspaces()));
CREATE POLICY file_delete ON public.workspace_files FOR DELETE
  USING (workspace_id IN (SELECT public.writable_workspaces()));
