// PostgREST conformance of devcloud (`/rest/v1`): what @supabase/supabase-js returns for
// selects, embedding, ordering, ranges, counts, writes and errors, plus the raw wire
// (Content-Range, Preference-Applied) where supabase-js hides it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';

import { DEMO_PASSWORD, SEED, startDevcloud } from '../../__test__/helpers/devcloud.mjs';
import { NoRealtime } from '../../__test__/helpers/supabase.mjs';


/** A client that remembers the last response, so tests can look at its headers. */
function makeClient(cloud) {
  const seen = { last: null };
  const sb = createClient(cloud.url, cloud.anonKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: NoRealtime },
    global: {
      fetch: async (url, init) => {
        const r = await fetch(url, init);
        seen.last = r;
        return r;
      },
    },
  });
  sb.lastHeader = (name) => seen.last?.headers.get(name) ?? null;
  return sb;
}

async function signIn(cloud, email, password = DEMO_PASSWORD) {
  const sb = makeClient(cloud);
  const { error } = await sb.auth.signInWithPassword({ email, password });
  assert.equal(error, null, `sign in ${email}`);
  return sb;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const { users, orgs, workspaces: ws, conversations: convs } = SEED;

describe('devcloud rest', () => {
  let cloud;
  let alice;

  before(async () => {
    cloud = await startDevcloud();
    alice = await signIn(cloud, users.alice.email);
  });
  after(async () => {
    await cloud?.stop();
  });

  test('filters: eq, in, is, ilike, or', async () => {
    let r = await alice.from('workspaces').select('id,name').eq('slug', 'website-revamp');
    assert.equal(r.error, null);
    assert.deepEqual(r.data, [{ id: ws.websiteRevamp, name: 'Website Revamp' }]);

    r = await alice.from('workspaces').select('slug').in('id', [ws.websiteRevamp, ws.dataPipeline, ws.secretPlans]).order('slug');
    assert.deepEqual(r.data.map((w) => w.slug), ['data-pipeline', 'website-revamp']);

    r = await alice.from('workspaces').select('slug').is('task_goal', null);
    assert.deepEqual(r.data, [{ slug: 'data-pipeline' }]);
    r = await alice.from('workspaces').select('slug').not('task_goal', 'is', null);
    assert.deepEqual(r.data, [{ slug: 'website-revamp' }]);

    r = await alice.from('workspaces').select('slug').ilike('name', '%REVAMP%');
    assert.deepEqual(r.data, [{ slug: 'website-revamp' }]);

    r = await alice.from('workspaces').select('slug').or('slug.eq.data-pipeline,name.ilike.*revamp*').order('slug');
    assert.deepEqual(r.data.map((w) => w.slug), ['data-pipeline', 'website-revamp']);
    r = await alice
      .from('workspaces')
      .select('slug')
      .or('and(slug.eq.data-pipeline,task_goal.is.null),slug.eq.nope');
    assert.deepEqual(r.data, [{ slug: 'data-pipeline' }]);

    // Values with the PostgREST reserved characters are quoted by supabase-js and come back intact.
    r = await alice.from('messages').select('content').in('content', ['On it.', 'a,b', '(x)']);
    assert.deepEqual(r.data, [{ content: 'On it.' }]);
  });

  test('embedding a to-one resource gives an object', async () => {
    const r = await alice
      .from('org_memberships')
      .select('org_id,role,organizations(*)')
      .eq('user_id', users.alice.id)
      .order('joined_at', { ascending: true })
      .limit(1);
    assert.equal(r.error, null);
    assert.equal(r.data.length, 1);
    const [m] = r.data;
    assert.equal(m.org_id, orgs.acme);
    assert.equal(m.role, 'owner');
    assert.equal(m.organizations.id, orgs.acme);
    assert.equal(m.organizations.slug, 'acme');
    assert.equal(m.organizations.subscription_tier, 'pro');
    assert.equal(m.organizations.max_workspaces, 50);
    for (const k of ['name', 'subscription_status', 'max_members', 'created_at']) assert.ok(k in m.organizations, k);
  });

  test('embedding profiles on workspace members gives one object per row', async () => {
    const r = await alice
      .from('workspace_members')
      .select('user_id,role,last_seen_at,profiles(display_name,avatar_url)')
      .eq('workspace_id', ws.websiteRevamp)
      .order('user_id');
    assert.equal(r.error, null);
    assert.deepEqual(r.data, [
      { user_id: users.alice.id, role: 'owner', last_seen_at: null, profiles: { display_name: 'Alice Anders', avatar_url: null } },
      { user_id: users.bob.id, role: 'member', last_seen_at: null, profiles: { display_name: 'Bob Brown', avatar_url: null } },
    ]);
  });

  test('embedding a to-many resource gives an array, with aliases and nested options', async () => {
    let r = await alice.from('organizations').select('name,workspaces(slug)').order('slug', { referencedTable: 'workspaces' });
    assert.equal(r.error, null);
    assert.deepEqual(r.data, [{ name: 'Acme', workspaces: [{ slug: 'data-pipeline' }, { slug: 'website-revamp' }] }]);

    r = await alice
      .from('conversations')
      .select('name,msgs:messages(content),ws:workspaces(slug)')
      .eq('id', convs.acmeChat)
      .order('created_at', { referencedTable: 'msgs', ascending: false })
      .limit(2, { referencedTable: 'msgs' })
      .single();
    assert.equal(r.error, null);
    assert.deepEqual(r.data, {
      name: 'chat',
      msgs: [{ content: 'On it.' }, { content: 'Bob, can you review the copy?' }],
      ws: { slug: 'website-revamp' },
    });

    // !inner drops parents without a matching child.
    r = await alice.from('workspaces').select('slug,conversations!inner(name)');
    assert.deepEqual(r.data, [{ slug: 'website-revamp', conversations: [{ name: 'chat' }] }]);
  });

  test('ordering with nullslast and nullsfirst', async () => {
    const created = await alice
      .from('workspaces')
      .insert({ name: 'Never Active', slug: 'never-active', org_id: orgs.acme, created_by: users.alice.id })
      .select('id')
      .single();
    assert.equal(created.error, null);
    try {
      let r = await alice
        .from('workspaces')
        .select('slug')
        .eq('org_id', orgs.acme)
        .order('last_active_at', { ascending: false, nullsFirst: false });
      assert.deepEqual(r.data.map((w) => w.slug), ['website-revamp', 'data-pipeline', 'never-active']);
      r = await alice
        .from('workspaces')
        .select('slug')
        .eq('org_id', orgs.acme)
        .order('last_active_at', { ascending: false, nullsFirst: true });
      assert.deepEqual(r.data.map((w) => w.slug), ['never-active', 'website-revamp', 'data-pipeline']);
    } finally {
      await alice.from('workspaces').delete().eq('id', created.data.id);
    }
  });

  test('.range() pages through rows and count: exact gives the total', async () => {
    const all = await alice.from('messages').select('content').eq('conversation_id', convs.acmeChat).order('created_at');
    assert.equal(all.data.length, 4);
    assert.equal(alice.lastHeader('content-range'), '0-3/*');

    const page = await alice
      .from('messages')
      .select('content', { count: 'exact' })
      .eq('conversation_id', convs.acmeChat)
      .order('created_at')
      .range(1, 2);
    assert.equal(page.error, null);
    assert.deepEqual(page.data, all.data.slice(1, 3));
    assert.equal(page.count, 4);
    assert.equal(page.status, 206);
    assert.equal(alice.lastHeader('content-range'), '1-2/4');
    assert.equal(alice.lastHeader('preference-applied'), 'count=exact');

    const head = await alice.from('messages').select('*', { count: 'exact', head: true }).eq('conversation_id', convs.acmeChat);
    assert.equal(head.count, 4);
    assert.equal(head.data, null);

    const none = await alice.from('messages').select('id', { count: 'exact' }).eq('content', 'no such message');
    assert.deepEqual(none.data, []);
    assert.equal(none.count, 0);
    assert.equal(alice.lastHeader('content-range'), '*/0');

    // The Range header works too.
    const raw = await fetch(`${cloud.url}/rest/v1/messages?select=id&conversation_id=eq.${convs.acmeChat}`, {
      headers: { apikey: cloud.serviceRoleKey, Authorization: `Bearer ${cloud.serviceRoleKey}`, Range: '0-1' },
    });
    assert.equal(raw.headers.get('content-range'), '0-1/*');
    assert.equal((await raw.json()).length, 2);
  });

  test('.single() and .maybeSingle()', async () => {
    let r = await alice.from('workspaces').select('slug').eq('id', ws.websiteRevamp).single();
    assert.equal(r.error, null);
    assert.deepEqual(r.data, { slug: 'website-revamp' });

    r = await alice.from('workspaces').select('slug').eq('id', ws.secretPlans).single();
    assert.equal(r.data, null);
    assert.equal(r.status, 406);
    assert.equal(r.error.code, 'PGRST116');
    assert.equal(r.error.details, 'The result contains 0 rows');

    r = await alice.from('workspaces').select('slug').single();
    assert.equal(r.status, 406);
    assert.equal(r.error.code, 'PGRST116');
    assert.equal(r.error.details, 'The result contains 2 rows');

    r = await alice.from('workspaces').select('slug').eq('id', ws.secretPlans).maybeSingle();
    assert.equal(r.error, null);
    assert.equal(r.data, null);
  });

  test('insert, update, delete with representation', async () => {
    const ins = await alice
      .from('conversations')
      .insert({ workspace_id: ws.dataPipeline, name: 'ops', conversation_type: 'chat', started_by: users.alice.id })
      .select('id,name,is_archived,workspaces(slug)')
      .single();
    assert.equal(ins.error, null);
    assert.equal(ins.status, 201);
    assert.equal(ins.data.name, 'ops');
    assert.equal(ins.data.is_archived, false);
    assert.deepEqual(ins.data.workspaces, { slug: 'data-pipeline' });

    const minimal = await alice.from('conversations').insert({ workspace_id: ws.dataPipeline, name: 'quiet' });
    assert.equal(minimal.error, null);
    assert.equal(minimal.status, 201);
    assert.equal(minimal.data, null);

    const upd = await alice.from('conversations').update({ is_archived: true }).eq('workspace_id', ws.dataPipeline).select('name,is_archived').order('name');
    assert.equal(upd.error, null);
    assert.equal(upd.status, 200);
    assert.deepEqual(upd.data, [{ name: 'ops', is_archived: true }, { name: 'quiet', is_archived: true }]);

    const updMinimal = await alice.from('conversations').update({ name: 'ops2' }).eq('id', ins.data.id);
    assert.equal(updMinimal.status, 204);
    assert.equal(updMinimal.data, null);

    const del = await alice.from('conversations').delete().eq('workspace_id', ws.dataPipeline).select('name').order('name');
    assert.equal(del.error, null);
    assert.deepEqual(del.data, [{ name: 'ops2' }, { name: 'quiet' }]);
    const gone = await alice.from('conversations').select('id').eq('workspace_id', ws.dataPipeline);
    assert.deepEqual(gone.data, []);

    const delNone = await alice.from('conversations').delete().eq('id', ins.data.id);
    assert.equal(delNone.status, 204);

    // .single() on a write touching two rows is a 406 and nothing is changed.
    const two = await alice.from('workspaces').update({ status: 'paused' }).eq('org_id', orgs.acme).select('id').single();
    assert.equal(two.status, 406);
    assert.equal(two.error.code, 'PGRST116');
    const statuses = await alice.from('workspaces').select('status').eq('org_id', orgs.acme);
    assert.deepEqual(statuses.data, [{ status: 'active' }, { status: 'active' }]);
  });

  test('upsert with onConflict merges; ignoreDuplicates keeps the old row', async () => {
    const row = { workspace_id: ws.websiteRevamp, file_path: 'docs/upsert.md', file_size: 1, version: 1 };
    let r = await alice.from('workspace_files').upsert(row, { onConflict: 'workspace_id,file_path' }).select('file_path,version');
    assert.equal(r.error, null);
    assert.equal(r.status, 201);
    assert.deepEqual(r.data, [{ file_path: 'docs/upsert.md', version: 1 }]);
    assert.equal(alice.lastHeader('preference-applied'), 'resolution=merge-duplicates, return=representation');

    r = await alice.from('workspace_files').upsert({ ...row, version: 2 }, { onConflict: 'workspace_id,file_path' }).select('file_path,version');
    assert.equal(r.error, null);
    assert.equal(r.status, 200); // nothing inserted, one row merged
    assert.deepEqual(r.data, [{ file_path: 'docs/upsert.md', version: 2 }]);

    r = await alice
      .from('workspace_files')
      .upsert({ ...row, version: 9 }, { onConflict: 'workspace_id,file_path', ignoreDuplicates: true })
      .select('version');
    assert.equal(r.error, null);
    assert.deepEqual(r.data, []);
    const now = await alice.from('workspace_files').select('version').eq('file_path', 'docs/upsert.md').single();
    assert.equal(now.data.version, 2);

    // Without onConflict the primary key decides.
    const { data: existing } = await alice.from('workspace_files').select('*').eq('file_path', 'docs/upsert.md').single();
    r = await alice.from('workspace_files').upsert({ ...existing, mime_type: 'text/markdown' }).select('id,mime_type');
    assert.equal(r.error, null);
    assert.deepEqual(r.data, [{ id: existing.id, mime_type: 'text/markdown' }]);
    await alice.from('workspace_files').delete().eq('id', existing.id);
  });

  test('an array of 1000 messages is inserted by one request', async () => {
    const since = new Date().toISOString();
    const rows = Array.from({ length: 1000 }, (_, i) => ({
      conversation_id: convs.acmeChat,
      content: `bulk ${i}`,
      role: 'user',
      sender_user_id: users.alice.id,
    }));
    await cloud.resetStats();
    const r = await alice.from('messages').insert(rows);
    assert.equal(r.error, null);
    assert.equal(r.status, 201);
    const stats = await cloud.stats();
    assert.equal(stats.requests['POST /rest/v1/messages'], 1);

    const { count } = await alice
      .from('messages')
      .select('id', { count: 'exact', head: true })
      .eq('conversation_id', convs.acmeChat)
      .like('content', 'bulk %');
    assert.equal(count, 1000);
    // Inserted in order with distinct times, so `created_at=gt.{since}` pages are stable.
    const first = await alice
      .from('messages')
      .select('content')
      .eq('conversation_id', convs.acmeChat)
      .gt('created_at', since)
      .order('created_at')
      .limit(3);
    assert.deepEqual(first.data.map((m) => m.content), ['bulk 0', 'bulk 1', 'bulk 2']);
    // At most 1000 rows per response.
    const capped = await alice.from('messages').select('id').eq('conversation_id', convs.acmeChat);
    assert.equal(capped.data.length, 1000);
    await alice.from('messages').delete().like('content', 'bulk %');
  });

  test('errors: unknown table, unknown column, bad uuid, unique violation', async () => {
    let r = await alice.from('nope').select('*');
    assert.equal(r.status, 404);
    assert.equal(r.error.code, 'PGRST205');
    assert.equal(r.error.message, "Could not find the table 'public.nope' in the schema cache");

    r = await alice.from('workspace').select('*');
    assert.equal(r.error.hint, "Perhaps you meant the table 'public.workspaces'");

    r = await alice.from('workspaces').insert({ name: 'x', slug: 'x', org_id: orgs.acme, bogus: 1 });
    assert.equal(r.status, 400);
    assert.equal(r.error.code, 'PGRST204');
    assert.equal(r.error.message, "Could not find the 'bogus' column of 'workspaces' in the schema cache");

    r = await alice.from('workspaces').select('bogus');
    assert.equal(r.status, 400);
    assert.equal(r.error.code, '42703');

    r = await alice.from('workspaces').select('id').eq('id', 'not-a-uuid');
    assert.equal(r.status, 400);
    assert.equal(r.error.code, '22P02');
    assert.match(r.error.message, /invalid input syntax for type uuid/);

    r = await alice.from('workspaces').insert({ name: 'Dup', slug: 'website-revamp', org_id: orgs.acme });
    assert.equal(r.status, 409);
    assert.equal(r.error.code, '23505');

    r = await alice.from('workspaces').insert({ name: 'Orphan', slug: 'orphan', org_id: orgs.acme, created_by: '99999999-9999-4999-8999-999999999999' });
    assert.equal(r.status, 409);
    assert.equal(r.error.code, '23503');

    r = await alice.from('messages').insert({ conversation_id: convs.acmeChat, role: 'robot', content: 'x' });
    assert.equal(r.status, 400);
    assert.equal(r.error.code, '23514');

    r = await alice.from('workspaces').select('id').filter('name', 'nope', 'x');
    assert.equal(r.status, 400);
    assert.equal(r.error.code, 'PGRST100');

    const { data: session } = await alice.auth.getSession();
    const headers = {
      apikey: cloud.anonKey,
      Authorization: `Bearer ${session.session.access_token}`,
      'Content-Type': 'application/json',
    };
    let raw = await fetch(`${cloud.url}/rest/v1/messages`, { method: 'POST', headers, body: '{"content": ' });
    assert.equal(raw.status, 400);
    assert.deepEqual(await raw.json(), { code: 'PGRST102', details: null, hint: null, message: 'Empty or invalid json' });

    const huge = JSON.stringify({ conversation_id: convs.acmeChat, role: 'user', content: 'x'.repeat(2 * 1024 * 1024) });
    raw = await fetch(`${cloud.url}/rest/v1/messages`, { method: 'POST', headers, body: huge });
    assert.equal(raw.status, 413);
    assert.equal((await raw.json()).code, 'PGRST413');
  });

  test('hostile values are bound as plain values', async () => {
    const tricks = ["x'); drop table workspaces;--", 'x&org_id=neq.0', 'x)', '"quoted"', '\\', '%', '*,(select 1)'];
    for (const t of tricks) {
      const r = await alice.from('workspaces').select('id').eq('name', t);
      assert.equal(r.error, null, t);
      assert.deepEqual(r.data, [], t);
    }
    const r = await alice.from('workspaces').select('id').eq('org_id', 'x&org_id=neq.0');
    assert.equal(r.error.code, '22P02');
    // Identifier tricks never reach SQL.
    for (const sel of ['*,(select 1)', 'id;drop table workspaces', 'id)--']) {
      const s = await alice.from('workspaces').select(sel);
      assert.equal(s.status, 400, sel);
      assert.equal(s.error.code, 'PGRST100', sel);
    }
    const quoted = await alice.from('workspaces').select('"id\\"; drop table workspaces; --"');
    assert.equal(quoted.error.code, '42703');
    const still = await alice.from('workspaces').select('id');
    assert.equal(still.data.length, 2);
  });

  test('no apikey is 401 from the gateway; a garbage token is PGRST301', async () => {
    let raw = await fetch(`${cloud.url}/rest/v1/workspaces`);
    assert.equal(raw.status, 401);
    assert.deepEqual(await raw.json(), { message: 'No API key found in request' });

    raw = await fetch(`${cloud.url}/rest/v1/workspaces`, { headers: { apikey: cloud.anonKey, Authorization: 'Bearer abc.def.ghi' } });
    assert.equal(raw.status, 401);
    assert.equal((await raw.json()).code, 'PGRST301');
    assert.match(raw.headers.get('www-authenticate'), /^Bearer error="invalid_token"/);
  });

  test('anon sees nothing private and cannot write', async () => {
    const anon = makeClient(cloud);
    for (const t of ['organizations', 'profiles', 'workspaces', 'messages']) {
      const r = await anon.from(t).select('*');
      assert.equal(r.error, null, t);
      assert.deepEqual(r.data, [], t);
    }
    const r = await anon.from('workspaces').insert({ name: 'x', slug: 'anon', org_id: orgs.acme });
    assert.equal(r.status, 401);
    assert.equal(r.error.code, '42501');
  });
});

describe('devcloud rest (--jwt-exp 2)', () => {
  let cloud;
  before(async () => {
    cloud = await startDevcloud(['--jwt-exp', '2']);
  });
  after(async () => {
    await cloud?.stop();
  });

  test('an expired access token is PGRST303 with WWW-Authenticate', async () => {
    const sb = await signIn(cloud, users.alice.email);
    const { data } = await sb.auth.getSession();
    const ok = await sb.from('workspaces').select('id');
    assert.equal(ok.error, null);
    await sleep(3000);
    // supabase-js would refresh an expired session before using it, so send the old token as
    // a client holding a stale token (another tab, a paused laptop) would.
    let lastResponse;
    const stale = createClient(cloud.url, cloud.anonKey, {
      auth: { persistSession: false, autoRefreshToken: false },
      realtime: { transport: NoRealtime },
      global: {
        headers: { Authorization: `Bearer ${data.session.access_token}` },
        fetch: async (url, init) => (lastResponse = await fetch(url, init)),
      },
    });
    const r = await stale.from('workspaces').select('id');
    assert.equal(r.status, 401);
    assert.equal(r.error.code, 'PGRST303');
    assert.equal(r.error.message, 'JWT expired');
    assert.equal(lastResponse.headers.get('www-authenticate'), 'Bearer error="invalid_token", error_description="JWT expired"');
  });
});
