-- The Oboto Cloud tables (public schema), as the client in cloud-api.md queries them.

CREATE FUNCTION public.set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

CREATE TABLE public.organizations (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name                text NOT NULL,
  slug                text NOT NULL UNIQUE,
  subscription_tier   text NOT NULL DEFAULT 'free'
                      CHECK (subscription_tier IN ('free', 'pro', 'team', 'enterprise')),
  subscription_status text NOT NULL DEFAULT 'active',
  max_members         integer NOT NULL DEFAULT 5,
  max_workspaces      integer NOT NULL DEFAULT 3,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.profiles (
  id                   uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
  display_name         text,
  avatar_url           text,
  bio                  text,
  preferences          jsonb NOT NULL DEFAULT '{}',
  onboarding_completed boolean NOT NULL DEFAULT false,
  last_active_at       timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.org_memberships (
  id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id    uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
  user_id   uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
  role      text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
  joined_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (org_id, user_id)
);

CREATE TABLE public.workspaces (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id         uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
  name           text NOT NULL,
  slug           text NOT NULL,
  description    text,
  status         text NOT NULL DEFAULT 'active',
  task_goal      text,
  current_step   text,
  progress_data  jsonb NOT NULL DEFAULT '{}',
  next_steps     jsonb NOT NULL DEFAULT '[]',
  shared_memory  jsonb NOT NULL DEFAULT '{}',
  last_active_at timestamptz,
  created_by     uuid REFERENCES public.profiles (id) ON DELETE SET NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (org_id, slug)
);

CREATE TABLE public.workspace_members (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id    uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  user_id         uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
  role            text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
  last_seen_at    timestamptz,
  cursor_position jsonb,
  joined_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, user_id)
);

CREATE TABLE public.cloud_agents (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id       uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
  name         text NOT NULL,
  slug         text NOT NULL,
  agent_type   text NOT NULL DEFAULT 'assistant',
  description  text,
  system_prompt text,
  model_config jsonb NOT NULL DEFAULT '{}',
  status       text NOT NULL DEFAULT 'active',
  avatar_url   text,
  created_by   uuid REFERENCES public.profiles (id) ON DELETE SET NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (org_id, slug)
);

CREATE TABLE public.conversations (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id      uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  name              text NOT NULL,
  conversation_type text NOT NULL DEFAULT 'chat',
  is_archived       boolean NOT NULL DEFAULT false,
  started_by        uuid REFERENCES public.profiles (id) ON DELETE SET NULL,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.messages (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  conversation_id uuid NOT NULL REFERENCES public.conversations (id) ON DELETE CASCADE,
  role            text NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
  content         text NOT NULL DEFAULT '',
  sender_user_id  uuid REFERENCES public.profiles (id) ON DELETE SET NULL,
  sender_agent_id uuid REFERENCES public.cloud_agents (id) ON DELETE SET NULL,
  model_used      text,
  metadata        jsonb NOT NULL DEFAULT '{}',
  -- clock_timestamp, not now(): rows inserted by one statement still get distinct, ordered
  -- times, so `created_at=gt.{since}` pagination never skips a sibling.
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX messages_conversation_created_idx ON public.messages (conversation_id, created_at);

CREATE TABLE public.workspace_files (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  file_path    text NOT NULL,
  file_size    bigint NOT NULL DEFAULT 0,
  checksum     text,
  mime_type    text,
  file_type    text,
  storage_path text,
  version      integer NOT NULL DEFAULT 1,
  is_deleted   boolean NOT NULL DEFAULT false,
  uploaded_by  uuid REFERENCES public.profiles (id) ON DELETE SET NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, file_path)
);

CREATE TABLE public.activity_feed (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id       uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
  workspace_id uuid REFERENCES public.workspaces (id) ON DELETE CASCADE,
  actor_id     uuid REFERENCES public.profiles (id) ON DELETE SET NULL,
  action       text NOT NULL,
  target_type  text,
  target_id    uuid,
  metadata     jsonb NOT NULL DEFAULT '{}',
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.ai_usage (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id            uuid NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
  user_id           uuid REFERENCES public.profiles (id) ON DELETE SET NULL,
  workspace_id      uuid REFERENCES public.workspaces (id) ON DELETE SET NULL,
  provider          text NOT NULL DEFAULT 'cloud',
  model             text NOT NULL,
  prompt_tokens     integer NOT NULL DEFAULT 0,
  completion_tokens integer NOT NULL DEFAULT 0,
  total_tokens      integer NOT NULL DEFAULT 0,
  created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ai_usage_org_day_idx ON public.ai_usage (org_id, created_at);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['organizations', 'profiles', 'workspaces', 'cloud_agents',
                           'conversations', 'workspace_files'] LOOP
    EXECUTE format('CREATE TRIGGER set_updated_at BEFORE UPDATE ON public.%I
                    FOR EACH ROW EXECUTE FUNCTION public.set_updated_at()', t);
  END LOOP;
END
$$;

-- Every new auth user gets a profile, as Supabase projects usually arrange with this trigger.
CREATE FUNCTION public.handle_new_user() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
  INSERT INTO public.profiles (id, display_name, avatar_url)
  VALUES (NEW.id,
          coalesce(NEW.raw_user_meta_data ->> 'display_name', split_part(NEW.email, '@', 1)),
          NEW.raw_user_meta_data ->> 'avatar_url');
  RETURN NEW;
END
$$;
CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users
  FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();
