-- The policies' SECURITY DEFINER helpers, same rules, in PL/pgSQL. PostgreSQL (before 18)
-- parses and plans a SQL function that it cannot inline (SECURITY DEFINER never is) once
-- per statement that calls it; PL/pgSQL keeps its plans for the connection's life. A storage
-- upload's policies called four of them, nested: half of the database's CPU per uploaded file
-- went to parsing and planning their bodies.

CREATE OR REPLACE FUNCTION public.org_role(p_org uuid) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
  RETURN (SELECT role FROM public.org_memberships WHERE org_id = p_org AND user_id = auth.uid());
END
$$;
CREATE OR REPLACE FUNCTION public.is_org_member(p_org uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
  RETURN EXISTS (SELECT 1 FROM public.org_memberships
                 WHERE org_id = p_org AND user_id = auth.uid());
END
$$;
CREATE OR REPLACE FUNCTION public.can_write_org(p_org uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
  RETURN EXISTS (SELECT 1 FROM public.org_memberships
                 WHERE org_id = p_org AND user_id = auth.uid()
                   AND role IN ('owner', 'admin', 'member'));
END
$$;
CREATE OR REPLACE FUNCTION public.is_org_admin(p_org uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
  RETURN EXISTS (SELECT 1 FROM public.org_memberships
                 WHERE org_id = p_org AND user_id = auth.uid() AND role IN ('owner', 'admin'));
END
$$;
CREATE OR REPLACE FUNCTION public.workspace_org(p_ws uuid) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
  RETURN (SELECT org_id FROM public.workspaces WHERE id = p_ws);
END
$$;
CREATE OR REPLACE FUNCTION public.conversation_org(p_conv uuid) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
  RETURN (SELECT w.org_id FROM public.conversations c
          JOIN public.workspaces w ON w.id = c.workspace_id WHERE c.id = p_conv);
END
$$;
CREATE OR REPLACE FUNCTION public.shares_org_with(p_user uuid) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
  RETURN EXISTS (
    SELECT 1 FROM public.org_memberships mine
    JOIN public.org_memberships theirs ON theirs.org_id = mine.org_id
    WHERE mine.user_id = auth.uid() AND theirs.user_id = p_user);
END
$$;

CREATE OR REPLACE FUNCTION public.readable_conversations() RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
  RETURN QUERY SELECT c.id FROM public.conversations c
    JOIN public.workspaces w ON w.id = c.workspace_id
    JOIN public.org_memberships m ON m.org_id = w.org_id
    WHERE m.user_id = auth.uid();
END
$$;
CREATE OR REPLACE FUNCTION public.writable_conversations() RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
  RETURN QUERY SELECT c.id FROM public.conversations c
    JOIN public.workspaces w ON w.id = c.workspace_id
    JOIN public.org_memberships m ON m.org_id = w.org_id
    WHERE m.user_id = auth.uid() AND m.role IN ('owner', 'admin', 'member');
END
$$;
CREATE OR REPLACE FUNCTION public.member_workspaces() RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
  RETURN QUERY SELECT w.id FROM public.workspaces w
    JOIN public.org_memberships m ON m.org_id = w.org_id
    WHERE m.user_id = auth.uid();
END
$$;
CREATE OR REPLACE FUNCTION public.writable_workspaces() RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
  RETURN QUERY SELECT w.id FROM public.workspaces w
    JOIN public.org_memberships m ON m.org_id = w.org_id
    WHERE m.user_id = auth.uid() AND m.role IN ('owner', 'admin', 'member');
END
$$;
