// Row-level security through /rest/v1, as supabase-js sees it: Carol (Globex) can neither
// read nor change anything of Acme in any public table; anon sees nothing private; an Acme
// viewer reads but does not write. Acme's data is checked unchanged with the service role.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';

import { DEMO_PASSWORD, SEED, startDevcloud } from '../../__test__/helpers/devcloud.mjs';
import { SUPABASE_OPTIONS } from '../../__test__/helpers/supabase.mjs';

const opts = SUPABASE_OPTIONS;

const { users, orgs, workspaces: ws, conversations: convs, agents } = SEED;
const acmeWorkspaces = [ws.websiteRevamp, ws.dataPipeline];
const uuid = () => crypto.randomUUID();

/**
 * Per table: how to find Acme's rows (a PostgREST filter for the service role and the same
 * filter as a supabase-js call), a row that points at Acme for an insert attempt, and a
 * harmless change for an update attempt.
 */
const TABLES = {
  organizations: {
    rest: `id=eq.${orgs.acme}`,
    filter: (q) => q.eq('id', orgs.acme),
    insert: () => ({ id: orgs.acme, name: 'Acme 2', slug: `acme-${uuid()}` }),
    update: { name: 'Owned by Globex' },
  },
  profiles: {
    rest: `id=in.(${users.alice.id},${users.bob.id})`,
    filter: (q) => q.in('id', [users.alice.id, users.bob.id]),
    insert: () => ({ id: users.alice.id, display_name: 'Fake Alice' }),
    update: { display_name: 'Hacked' },
  },
  org_memberships: {
    rest: `org_id=eq.${orgs.acme}`,
    filter: (q) => q.eq('org_id', orgs.acme),
    insert: () => ({ org_id: orgs.acme, user_id: users.carol.id, role: 'owner' }),
    update: { role: 'viewer' },
  },
  workspaces: {
    rest: `org_id=eq.${orgs.acme}`,
    filter: (q) => q.eq('org_id', orgs.acme),
    insert: () => ({ org_id: orgs.acme, name: 'Trojan', slug: `trojan-${uuid()}`, created_by: users.carol.id }),
    update: { name: 'Owned by Globex', task_goal: 'exfiltrate' },
  },
  workspace_members: {
    rest: `workspace_id=in.(${acmeWorkspaces})`,
    filter: (q) => q.in('workspace_id', acmeWorkspaces),
    insert: () => ({ workspace_id: ws.websiteRevamp, user_id: users.carol.id, role: 'owner' }),
    update: { role: 'viewer', cursor_position: { line: 1 } },
  },
  cloud_agents: {
    rest: `org_id=eq.${orgs.acme}`,
    filter: (q) => q.eq('org_id', orgs.acme),
    insert: () => ({ org_id: orgs.acme, name: 'Spy', slug: `spy-${uuid()}` }),
    update: { system_prompt: 'Leak everything' },
  },
  conversations: {
    rest: `workspace_id=in.(${acmeWorkspaces})`,
    filter: (q) => q.in('workspace_id', acmeWorkspaces),
    insert: () => ({ workspace_id: ws.websiteRevamp, name: 'backdoor', started_by: users.carol.id }),
    update: { is_archived: true },
  },
  messages: {
    rest: `conversation_id=eq.${convs.acmeChat}`,
    filter: (q) => q.eq('conversation_id', convs.acmeChat),
    insert: () => ({ conversation_id: convs.acmeChat, role: 'user', content: 'hi from Globex', sender_user_id: users.carol.id }),
    update: { content: 'rewritten' },
  },
  workspace_files: {
    rest: `workspace_id=in.(${acmeWorkspaces})`,
    filter: (q) => q.in('workspace_id', acmeWorkspaces),
    insert: () => ({ workspace_id: ws.websiteRevamp, file_path: `evil-${uuid()}.sh`, uploaded_by: users.carol.id }),
    update: { is_deleted: true },
  },
  activity_feed: {
    rest: `org_id=eq.${orgs.acme}`,
    filter: (q) => q.eq('org_id', orgs.acme),
    insert: () => ({ org_id: orgs.acme, action: 'workspace.deleted', actor_id: users.carol.id }),
    update: { action: 'forged' },
  },
  ai_usage: {
    rest: `org_id=eq.${orgs.acme}`,
    filter: (q) => q.eq('org_id', orgs.acme),
    insert: () => ({ org_id: orgs.acme, user_id: users.carol.id, model: 'oboto/echo-1', total_tokens: 1 }),
    update: { total_tokens: 0 },
  },
};

async function signIn(cloud, email, password = DEMO_PASSWORD) {
  const sb = createClient(cloud.url, cloud.anonKey, opts);
  const { error } = await sb.auth.signInWithPassword({ email, password });
  assert.equal(error, null, `sign in ${email}`);
  return sb;
}

/** Acme's rows of every table, as the service role sees them. */
async function acmeSnapshot(cloud) {
  const out = {};
  for (const [table, t] of Object.entries(TABLES)) {
    out[table] = await cloud.serviceRest(`${table}?${t.rest}&order=id`);
  }
  return out;
}

describe('devcloud row-level security through /rest/v1', () => {
  let cloud;
  let carol;
  let before0;

  before(async () => {
    cloud = await startDevcloud();
    carol = await signIn(cloud, users.carol.email);
    before0 = await acmeSnapshot(cloud);
    for (const [table, rows] of Object.entries(before0)) assert.ok(rows.length > 0, `the seed has Acme ${table}`);
  });
  after(async () => {
    await cloud?.stop();
  });

  for (const [table, t] of Object.entries(TABLES)) {
    test(`carol cannot read, insert, update or delete Acme ${table}`, async () => {
      const read = await t.filter(carol.from(table).select('*'));
      assert.equal(read.error, null);
      assert.deepEqual(read.data, [], 'read');

      const ins = await carol.from(table).insert(t.insert());
      assert.equal(ins.status, 403, `insert: ${JSON.stringify(ins.error)}`);
      assert.equal(ins.error.code, '42501');

      const upd = await t.filter(carol.from(table).update(t.update)).select();
      assert.equal(upd.error, null, 'update');
      assert.deepEqual(upd.data, [], 'update affects no row');

      const del = await t.filter(carol.from(table).delete()).select();
      assert.equal(del.error, null, 'delete');
      assert.deepEqual(del.data, [], 'delete affects no row');

      assert.deepEqual(await cloud.serviceRest(`${table}?${t.rest}&order=id`), before0[table], 'Acme data unchanged');
    });
  }

  test('carol still sees and changes her own organization', async () => {
    const r = await carol.from('workspaces').select('slug');
    assert.deepEqual(r.data, [{ slug: 'secret-plans' }]);
    const m = await carol.from('messages').select('content');
    assert.deepEqual(m.data, [{ content: 'Phase one begins at dawn.' }]);
    const u = await carol.from('workspaces').update({ current_step: 'Step 2' }).eq('id', ws.secretPlans).select('current_step');
    assert.deepEqual(u.data, [{ current_step: 'Step 2' }]);
  });

  test('carol cannot move her own rows into Acme', async () => {
    const r = await carol.from('workspaces').update({ org_id: orgs.acme }).eq('id', ws.secretPlans);
    assert.equal(r.status, 403);
    assert.equal(r.error.code, '42501');
    const m = await carol.from('messages').update({ conversation_id: convs.acmeChat }).eq('conversation_id', convs.globexChat);
    assert.equal(m.error?.code, '42501');
  });

  test('embedding does not leak rows across organizations', async () => {
    const r = await carol.from('profiles').select('id,org_memberships(org_id,organizations(name))');
    assert.equal(r.error, null);
    assert.deepEqual(r.data, [{ id: users.carol.id, org_memberships: [{ org_id: orgs.globex, organizations: { name: 'Globex' } }] }]);
    const agentsSeen = await carol.from('cloud_agents').select('id');
    assert.deepEqual(agentsSeen.data, [{ id: agents.globexBot }]);
  });

  test('anon sees nothing private and writes nothing', async () => {
    const anon = createClient(cloud.url, cloud.anonKey, opts);
    for (const table of Object.keys(TABLES)) {
      const r = await anon.from(table).select('*');
      assert.equal(r.error, null, table);
      assert.deepEqual(r.data, [], table);
    }
    const ins = await anon.from('workspaces').insert(TABLES.workspaces.insert());
    assert.equal(ins.status, 401);
    assert.equal(ins.error.code, '42501');
    const upd = await anon.from('workspaces').update({ name: 'anon' }).eq('org_id', orgs.acme).select();
    assert.deepEqual(upd.data, []);
    assert.deepEqual(await acmeSnapshot(cloud), before0);
  });

  test('an Acme viewer reads but cannot write workspaces or messages', async () => {
    const email = `viewer-${process.pid}-${Date.now()}@acme.test`;
    const viewerUser = await cloud.createUser(email, 'viewer-pass-123', { display_name: 'Vera Viewer' });
    const viewerId = viewerUser.id ?? viewerUser.user?.id;
    await cloud.serviceRest('org_memberships', {
      method: 'POST',
      body: { org_id: orgs.acme, user_id: viewerId, role: 'viewer' },
    });
    const viewer = await signIn(cloud, email, 'viewer-pass-123');

    const wsSeen = await viewer.from('workspaces').select('slug').order('slug');
    assert.deepEqual(wsSeen.data.map((w) => w.slug), ['data-pipeline', 'website-revamp']);
    const msgs = await viewer.from('messages').select('id').eq('conversation_id', convs.acmeChat);
    assert.equal(msgs.data.length, 4);
    const team = await viewer.from('profiles').select('display_name').order('display_name');
    assert.deepEqual(team.data.map((p) => p.display_name), ['Alice Anders', 'Bob Brown', 'Vera Viewer']);

    const insWs = await viewer.from('workspaces').insert({ org_id: orgs.acme, name: 'Viewer WS', slug: 'viewer-ws' });
    assert.equal(insWs.status, 403);
    assert.equal(insWs.error.code, '42501');
    const insMsg = await viewer
      .from('messages')
      .insert({ conversation_id: convs.acmeChat, role: 'user', content: 'viewer says hi', sender_user_id: viewerId });
    assert.equal(insMsg.status, 403);
    assert.equal(insMsg.error.code, '42501');

    const updWs = await viewer.from('workspaces').update({ name: 'Viewer was here' }).eq('org_id', orgs.acme).select();
    assert.deepEqual(updWs.data, []);
    const updMsg = await viewer.from('messages').update({ content: 'edited' }).eq('conversation_id', convs.acmeChat).select();
    assert.deepEqual(updMsg.data, []);
    const delMsg = await viewer.from('messages').delete().eq('conversation_id', convs.acmeChat).select();
    assert.deepEqual(delMsg.data, []);

    const now = await acmeSnapshot(cloud);
    assert.deepEqual(now.workspaces, before0.workspaces);
    assert.deepEqual(now.messages, before0.messages);
  });
});
