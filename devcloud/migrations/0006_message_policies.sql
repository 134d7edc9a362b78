-- Message policies at a hash lookup per row. The 0003 policies called three SECURITY
-- DEFINER functions per row (conversation_org, is_org_member/can_write_org, org_role), each
-- with its own plan and search_path switch: reading or inserting 1,000 messages as a user
-- spent ~300 ms in RLS alone (3 ms as the service role). Here the conversations a user may
-- read or write are one uncorrelated subquery, which Postgres evaluates once per statement
-- (a hashed SubPlan). Who may read and write is unchanged.
CREATE FUNCTION public.readable_conversations() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT c.id FROM public.conversations c
  JOIN public.workspaces w ON w.id = c.workspace_id
  JOIN public.org_memberships m ON m.org_id = w.org_id
  WHERE m.user_id = auth.uid()
$$;
CREATE FUNCTION public.writable_conversations() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT c.id FROM public.conversations c
  JOIN public.workspaces w ON w.id = c.workspace_id
  JOIN public.org_memberships m ON m.org_id = w.org_id
  WHERE m.user_id = auth.uid() AND m.role IN ('owner', 'admin', 'member')
$$;
GRANT EXECUTE ON FUNCTION public.readable_conversations() TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.writable_conversations() TO anon, authenticated, service_role;

DROP POLICY msg_read ON public.messages;
CREATE POLICY msg_read ON public.messages FOR SELECT
  USING (conversation_id IN (SELECT public.readable_conversations()));
DROP POLICY msg_insert ON public.messages;
CREATE POLICY msg_insert ON public.messages FOR INSERT
  WITH CHECK (conversation_id IN (SELECT public.writable_conversations())
              AND (sender_user_id IS NULL OR sender_user_id = auth.uid()));
