-- The demo seed of devcloud.md. `{{PASSWORD_HASH}}` is replaced by a bcrypt hash of
-- `oboto-demo-pass` before this runs. Ids are fixed so that logs and examples are stable.

INSERT INTO auth.users (id, email, encrypted_password, email_confirmed_at, raw_user_meta_data) VALUES
  ('11111111-1111-4111-8111-111111111111', 'alice@acme.test',   '{{PASSWORD_HASH}}', now(), '{"display_name":"Alice Anders"}'),
  ('22222222-2222-4222-8222-222222222222', 'bob@acme.test',     '{{PASSWORD_HASH}}', now(), '{"display_name":"Bob Brown"}'),
  ('33333333-3333-4333-8333-333333333333', 'carol@globex.test', '{{PASSWORD_HASH}}', now(), '{"display_name":"Carol Chen"}');

INSERT INTO public.organizations (id, name, slug, subscription_tier, max_members, max_workspaces) VALUES
  ('aaaaaaaa-0000-4000-8000-000000000001', 'Acme',   'acme',   'pro',  25, 50),
  ('aaaaaaaa-0000-4000-8000-000000000002', 'Globex', 'globex', 'free', 5,  3);

INSERT INTO public.org_memberships (org_id, user_id, role, joined_at) VALUES
  ('aaaaaaaa-0000-4000-8000-000000000001', '11111111-1111-4111-8111-111111111111', 'owner',  now() - interval '30 days'),
  ('aaaaaaaa-0000-4000-8000-000000000001', '22222222-2222-4222-8222-222222222222', 'member', now() - interval '20 days'),
  ('aaaaaaaa-0000-4000-8000-000000000002', '33333333-3333-4333-8333-333333333333', 'owner',  now() - interval '10 days');

INSERT INTO public.workspaces (id, org_id, name, slug, description, status, task_goal, current_step, last_active_at, created_by) VALUES
  ('bbbbbbbb-0000-4000-8000-000000000001', 'aaaaaaaa-0000-4000-8000-000000000001', 'Website Revamp', 'website-revamp',
   'Redesign of the public website', 'active', 'Ship the new landing page', 'Review the hero section',
   now() - interval '1 hour', '11111111-1111-4111-8111-111111111111'),
  ('bbbbbbbb-0000-4000-8000-000000000002', 'aaaaaaaa-0000-4000-8000-000000000001', 'Data Pipeline', 'data-pipeline',
   'Nightly ETL into the warehouse', 'active', NULL, NULL,
   now() - interval '2 days', '22222222-2222-4222-8222-222222222222'),
  ('bbbbbbbb-0000-4000-8000-000000000003', 'aaaaaaaa-0000-4000-8000-000000000002', 'Secret Plans', 'secret-plans',
   'Not for Acme eyes', 'active', 'World domination', 'Step 1',
   now() - interval '3 hours', '33333333-3333-4333-8333-333333333333');

INSERT INTO public.workspace_members (workspace_id, user_id, role) VALUES
  ('bbbbbbbb-0000-4000-8000-000000000001', '11111111-1111-4111-8111-111111111111', 'owner'),
  ('bbbbbbbb-0000-4000-8000-000000000001', '22222222-2222-4222-8222-222222222222', 'member'),
  ('bbbbbbbb-0000-4000-8000-000000000002', '11111111-1111-4111-8111-111111111111', 'member'),
  ('bbbbbbbb-0000-4000-8000-000000000002', '22222222-2222-4222-8222-222222222222', 'owner'),
  ('bbbbbbbb-0000-4000-8000-000000000003', '33333333-3333-4333-8333-333333333333', 'owner');

INSERT INTO public.cloud_agents (id, org_id, name, slug, agent_type, description, system_prompt, avatar_url) VALUES
  ('dddddddd-0000-4000-8000-000000000001', 'aaaaaaaa-0000-4000-8000-000000000001', 'Code Reviewer', 'code-reviewer',
   'reviewer', 'Reviews code changes and points out risks', 'You review code carefully.', NULL),
  ('dddddddd-0000-4000-8000-000000000002', 'aaaaaaaa-0000-4000-8000-000000000001', 'Summarizer', 'summarizer',
   'assistant', 'Summarizes long discussions', 'You summarize concisely.', NULL),
  ('dddddddd-0000-4000-8000-000000000003', 'aaaaaaaa-0000-4000-8000-000000000002', 'Globex Bot', 'globex-bot',
   'assistant', 'Globex internal helper', 'You help Globex.', NULL);

INSERT INTO public.conversations (id, workspace_id, name, conversation_type, started_by, created_at) VALUES
  ('cccccccc-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001', 'chat', 'chat',
   '11111111-1111-4111-8111-111111111111', now() - interval '1 day'),
  ('cccccccc-0000-4000-8000-000000000002', 'bbbbbbbb-0000-4000-8000-000000000003', 'chat', 'chat',
   '33333333-3333-4333-8333-333333333333', now() - interval '1 day');

INSERT INTO public.messages (conversation_id, role, content, sender_user_id, sender_agent_id, created_at) VALUES
  ('cccccccc-0000-4000-8000-000000000001', 'user', 'Can we make the hero section lighter?',
   '11111111-1111-4111-8111-111111111111', NULL, now() - interval '50 minutes'),
  ('cccccccc-0000-4000-8000-000000000001', 'assistant', 'Yes: a white background and a single call to action.',
   NULL, NULL, now() - interval '49 minutes'),
  ('cccccccc-0000-4000-8000-000000000001', 'user', 'Bob, can you review the copy?',
   '11111111-1111-4111-8111-111111111111', NULL, now() - interval '40 minutes'),
  ('cccccccc-0000-4000-8000-000000000001', 'user', 'On it.',
   '22222222-2222-4222-8222-222222222222', NULL, now() - interval '30 minutes'),
  ('cccccccc-0000-4000-8000-000000000002', 'user', 'Phase one begins at dawn.',
   '33333333-3333-4333-8333-333333333333', NULL, now() - interval '2 hours');

INSERT INTO public.workspace_files (workspace_id, file_path, file_size, checksum, mime_type, file_type, storage_path, uploaded_by) VALUES
  ('bbbbbbbb-0000-4000-8000-000000000001', 'README.md', 0, NULL, 'text/markdown', 'text',
   'bbbbbbbb-0000-4000-8000-000000000001/README.md', '11111111-1111-4111-8111-111111111111'),
  ('bbbbbbbb-0000-4000-8000-000000000003', 'plans.txt', 0, NULL, 'text/plain', 'text',
   'bbbbbbbb-0000-4000-8000-000000000003/plans.txt', '33333333-3333-4333-8333-333333333333');

INSERT INTO public.activity_feed (org_id, workspace_id, actor_id, action, target_type, target_id) VALUES
  ('aaaaaaaa-0000-4000-8000-000000000001', 'bbbbbbbb-0000-4000-8000-000000000001',
   '11111111-1111-4111-8111-111111111111', 'workspace.created', 'workspace', 'bbbbbbbb-0000-4000-8000-000000000001'),
  ('aaaaaaaa-0000-4000-8000-000000000002', 'bbbbbbbb-0000-4000-8000-000000000003',
   '33333333-3333-4333-8333-333333333333', 'workspace.created', 'workspace', 'bbbbbbbb-0000-4000-8000-000000000003');

INSERT INTO public.ai_usage (org_id, user_id, model, prompt_tokens, completion_tokens, total_tokens, created_at) VALUES
  ('aaaaaaaa-0000-4000-8000-000000000001', '11111111-1111-4111-8111-111111111111', 'oboto/echo-1', 10, 20, 30, now() - interval '2 days'),
  ('aaaaaaaa-0000-4000-8000-000000000002', '33333333-3333-4333-8333-333333333333', 'oboto/echo-1', 5, 5, 10, now() - interval '2 days');
