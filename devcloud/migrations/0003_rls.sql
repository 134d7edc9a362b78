-- Row-level security: a user sees and changes only the rows of organizations they belong
-- to (and their own profile); a viewer reads but never writes. The helpers are SECURITY
-- DEFINER so that policies on one table can consult another without recursing into its
-- policies.

CREATE FUNCTION public.try_uuid(p text) RETURNS uuid LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN p::uuid;
EXCEPTION WHEN others THEN
  RETURN NULL;
END
$$;

CREATE FUNCTION public.org_role(p_org uuid) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT role FROM public.org_memberships WHERE org_id = p_org AND user_id = auth.uid()
$$;
CREATE FUNCTION public.is_org_member(p_org uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT public.org_role(p_org) IS NOT NULL
$$;
CREATE FUNCTION public.can_write_org(p_org uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT coalesce(public.org_role(p_org) IN ('owner', 'admin', 'member'), false)
$$;
CREATE FUNCTION public.is_org_admin(p_org uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT coalesce(public.org_role(p_org) IN ('owner', 'admin'), false)
$$;
CREATE FUNCTION public.workspace_org(p_ws uuid) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT org_id FROM public.workspaces WHERE id = p_ws
$$;
CREATE FUNCTION public.conversation_org(p_conv uuid) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT w.org_id FROM public.conversations c JOIN public.workspaces w ON w.id = c.workspace_id
  WHERE c.id = p_conv
$$;
CREATE FUNCTION public.shares_org_with(p_user uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.org_memberships mine
    JOIN public.org_memberships theirs ON theirs.org_id = mine.org_id
    WHERE mine.user_id = auth.uid() AND theirs.user_id = p_user)
$$;

GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO anon, authenticated, service_role;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO anon, authenticated, service_role;

ALTER TABLE public.organizations     ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.profiles          ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.org_memberships   ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.workspaces        ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.workspace_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.cloud_agents      ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.conversations     ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.messages          ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.workspace_files   ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.activity_feed     ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.ai_usage          ENABLE ROW LEVEL SECURITY;

CREATE POLICY org_read ON public.organizations FOR SELECT USING (public.is_org_member(id));
CREATE POLICY org_update ON public.organizations FOR UPDATE
  USING (public.is_org_admin(id)) WITH CHECK (public.is_org_admin(id));

CREATE POLICY profile_read ON public.profiles FOR SELECT
  USING (id = auth.uid() OR public.shares_org_with(id));
CREATE POLICY profile_update ON public.profiles FOR UPDATE
  USING (id = auth.uid()) WITH CHECK (id = auth.uid());

CREATE POLICY membership_read ON public.org_memberships FOR SELECT
  USING (public.is_org_member(org_id));
CREATE POLICY membership_insert ON public.org_memberships FOR INSERT
  WITH CHECK (public.is_org_admin(org_id));
CREATE POLICY membership_update ON public.org_memberships FOR UPDATE
  USING (public.is_org_admin(org_id)) WITH CHECK (public.is_org_admin(org_id));
CREATE POLICY membership_delete ON public.org_memberships FOR DELETE
  USING (public.is_org_admin(org_id));

-- Tables owned by an organization directly.
CREATE POLICY ws_read ON public.workspaces FOR SELECT USING (public.is_org_member(org_id));
CREATE POLICY ws_insert ON public.workspaces FOR INSERT WITH CHECK (public.can_write_org(org_id));
CREATE POLICY ws_update ON public.workspaces FOR UPDATE
  USING (public.can_write_org(org_id)) WITH CHECK (public.can_write_org(org_id));
CREATE POLICY ws_delete ON public.workspaces FOR DELETE USING (public.can_write_org(org_id));

CREATE POLICY agent_read ON public.cloud_agents FOR SELECT USING (public.is_org_member(org_id));
CREATE POLICY agent_insert ON public.cloud_agents FOR INSERT WITH CHECK (public.is_org_admin(org_id));
CREATE POLICY agent_update ON public.cloud_agents FOR UPDATE
  USING (public.is_org_admin(org_id)) WITH CHECK (public.is_org_admin(org_id));
CREATE POLICY agent_delete ON public.cloud_agents FOR DELETE USING (public.is_org_admin(org_id));

CREATE POLICY activity_read ON public.activity_feed FOR SELECT USING (public.is_org_member(org_id));
CREATE POLICY activity_insert ON public.activity_feed FOR INSERT
  WITH CHECK (public.can_write_org(org_id) AND actor_id = auth.uid());

CREATE POLICY usage_read ON public.ai_usage FOR SELECT USING (public.is_org_member(org_id));

-- Tables owned through a workspace.
CREATE POLICY member_read ON public.workspace_members FOR SELECT
  USING (public.is_org_member(public.workspace_org(workspace_id)));
CREATE POLICY member_insert ON public.workspace_members FOR INSERT
  WITH CHECK (public.can_write_org(public.workspace_org(workspace_id)));
-- Anyone in the organization keeps their own presence row fresh, viewers included.
CREATE POLICY member_update ON public.workspace_members FOR UPDATE
  USING (public.is_org_member(public.workspace_org(workspace_id))
         AND (user_id = auth.uid() OR public.can_write_org(public.workspace_org(workspace_id))))
  WITH CHECK (public.is_org_member(public.workspace_org(workspace_id))
         AND (user_id = auth.uid() OR public.can_write_org(public.workspace_org(workspace_id))));
CREATE POLICY member_delete ON public.workspace_members FOR DELETE
  USING (public.can_write_org(public.workspace_org(workspace_id)));

CREATE POLICY conv_read ON public.conversations FOR SELECT
  USING (public.is_org_member(public.workspace_org(workspace_id)));
CREATE POLICY conv_insert ON public.conversations FOR INSERT
  WITH CHECK (public.can_write_org(public.workspace_org(workspace_id)));
CREATE POLICY conv_update ON public.conversations FOR UPDATE
  USING (public.can_write_org(public.workspace_org(workspace_id)))
  WITH CHECK (public.can_write_org(public.workspace_org(workspace_id)));
CREATE POLICY conv_delete ON public.conversations FOR DELETE
  USING (public.can_write_org(public.workspace_org(workspace_id)));

CREATE POLICY file_read ON public.workspace_files FOR SELECT
  USING (public.is_org_member(public.workspace_org(workspace_id)));
CREATE POLICY file_insert ON public.workspace_files FOR INSERT
  WITH CHECK (public.can_write_org(public.workspace_org(workspace_id)));
CREATE POLICY file_update ON public.workspace_files FOR UPDATE
  USING (public.can_write_org(public.workspace_org(workspace_id)))
  WITH CHECK (public.can_write_org(public.workspace_org(workspace_id)));
CREATE POLICY file_delete ON public.workspace_files FOR DELETE
  USING (public.can_write_org(public.workspace_org(workspace_id)));

-- Messages, through their conversation. A user posts only as themselves.
CREATE POLICY msg_read ON public.messages FOR SELECT
  USING (public.is_org_member(public.conversation_org(conversation_id)));
CREATE POLICY msg_insert ON public.messages FOR INSERT
  WITH CHECK (public.can_write_org(public.conversation_org(conversation_id))
              AND (sender_user_id IS NULL OR sender_user_id = auth.uid()));
CREATE POLICY msg_update ON public.messages FOR UPDATE
  USING (public.can_write_org(public.conversation_org(conversation_id)) AND sender_user_id = auth.uid())
  WITH CHECK (public.can_write_org(public.conversation_org(conversation_id)) AND sender_user_id = auth.uid());
CREATE POLICY msg_delete ON public.messages FOR DELETE
  USING (public.can_write_org(public.conversation_org(conversation_id)) AND sender_user_id = auth.uid());
