// Workspace, agent and file listings against a cloud that returns fewer rows than a request
// asks for (PostgREST's `db-max-rows`, which Supabase projects often set at 1,000 or lower):
// every listing still reads to the end, in its documented order.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDevcloud, SEED } from './helpers/devcloud.mjs';
import { loggedIn, requests, workdir } from './helpers/sync.mjs';

const MAX_ROWS = 3;
let cloud;
let cs;
before(async () => {
  cloud = await startDevcloud(['--db-max-rows', String(MAX_ROWS)]);
  ({ cs } = await loggedIn(cloud, 'alice', { syncInterval: 3_600_000 }));
});
after(async () => {
  await cs?.destroy();
  await cloud?.stop();
});

/** Every row of `table` the service role sees for `filter`, however short the pages. */
async function all(table, filter, order = 'id.asc') {
  const rows = [];
  for (;;) {
    const page = await cloud.serviceRest(`${table}?${filter}&select=id&order=${order}&offset=${rows.length}`);
    if (page.length === 0) return rows;
    rows.push(...page);
  }
}

test('listCloudWorkspaces reads past pages the cloud cut short, most recently active first', async () => {
  const tag = randomUUID().slice(0, 8);
  // Ties and missing activity times included: the order is by last_active_at, nulls last.
  const times = ['2026-02-01T00:00:00Z', null, '2026-03-01T00:00:00Z', '2026-02-01T00:00:00Z', null, '2026-01-01T00:00:00Z', '2026-03-02T00:00:00.5Z'];
  await cloud.serviceRest('workspaces', {
    method: 'POST',
    body: times.map((t, i) => ({ org_id: SEED.orgs.acme, name: `ws ${tag} ${i}`, slug: `ws-${tag}-${i}`, last_active_at: t })),
    headers: { Prefer: 'return=minimal' },
  });
  const want = await all('workspaces', `org_id=eq.${SEED.orgs.acme}`);
  assert.ok(want.length > 2 * MAX_ROWS);
  const got = await cs.listCloudWorkspaces();
  assert.equal(got.length, want.length);
  assert.deepEqual(new Set(got.map((w) => w.id)), new Set(want.map((w) => w.id)));
  const at = (w) => (w.last_active_at === null ? -Infinity : Date.parse(w.last_active_at));
  for (let i = 1; i < got.length; i++) {
    assert.ok(at(got[i - 1]) >= at(got[i]), `${got[i - 1].last_active_at} before ${got[i].last_active_at}`);
  }
  assert.deepEqual(Object.keys(got[0]).sort(), ['current_step', 'description', 'id', 'last_active_at', 'name', 'slug', 'status', 'task_goal']);
});

test('listAgents reads past pages the cloud cut short, ordered by name', async () => {
  // Names a PostgREST filter must quote (commas, parentheses, quotes, backslashes, dots).
  const names = ['Zed', 'a, b (c)', 'Quote "q"', 'back\\slash', 'dot.ted', 'Same', 'Same', 'émile'];
  await cloud.serviceRest('cloud_agents', {
    method: 'POST',
    body: names.map((name, i) => ({ org_id: SEED.orgs.acme, name, slug: `agent-${randomUUID().slice(0, 8)}-${i}` })),
    headers: { Prefer: 'return=minimal' },
  });
  cs.clearAgentCache();
  await cloud.resetStats();
  const got = await cs.listAgents();
  const pages = await requests(cloud, 'GET /rest/v1/cloud_agents');
  const want = await all('cloud_agents', `org_id=eq.${SEED.orgs.acme}`, 'name.asc,id.asc');
  assert.ok(want.length > 2 * MAX_ROWS);
  // The cloud's own order (its collation), ties by id.
  assert.deepEqual(got.map((a) => a.id), want.map((a) => a.id));
  // The counts the first and the last page ask for end the listing without an empty page.
  assert.equal(pages, Math.ceil(want.length / MAX_ROWS));
});

test('listCloudConversations reads past pages the cloud cut short, oldest first', async () => {
  const { cs: linked } = await loggedIn(cloud, 'alice', { dir: workdir(), syncInterval: 3_600_000, realtime: false });
  try {
    await linked.linkWorkspace(SEED.workspaces.websiteRevamp);
    const tag = randomUUID().slice(0, 8);
    // Rows sharing a created_at across a page boundary are ordered, and kept, by id.
    const at = '2026-04-01T00:00:00.000000+00:00';
    await cloud.serviceRest('conversations', {
      method: 'POST',
      body: Array.from({ length: 2 * MAX_ROWS + 1 }, (_, i) => ({
        workspace_id: SEED.workspaces.websiteRevamp, name: `c ${tag} ${i}`, conversation_type: 'chat', created_at: i % 2 ? at : new Date(Date.UTC(2026, 3, 2, 0, 0, i)).toISOString(),
      })),
      headers: { Prefer: 'return=minimal' },
    });
    const want = await all('conversations', `workspace_id=eq.${SEED.workspaces.websiteRevamp}`, 'created_at.asc,id.asc');
    assert.ok(want.length > 2 * MAX_ROWS);
    const got = await linked.listCloudConversations();
    assert.deepEqual(got.map((c) => c.id), want.map((c) => c.id));
  } finally {
    await linked.destroy();
  }
});

test('a file sync finds every tombstone of its files however short the pages: each deleted file goes', async () => {
  const [row] = await cloud.serviceRest('workspaces', {
    method: 'POST',
    body: { org_id: SEED.orgs.acme, name: `files ${randomUUID().slice(0, 8)}`, slug: `files-${randomUUID()}` },
  });
  const dir = workdir();
  const names = Array.from({ length: 3 * MAX_ROWS + 1 }, (_, i) => `d/f${i}.txt`);
  mkdirSync(join(dir, 'd'));
  for (const n of names) writeFileSync(join(dir, n), n);
  assert.equal((await cs.fileSync.syncFiles(row.id, dir)).uploaded.length, names.length);
  // Deleted on another machine: only tombstones say so, more of them than a page holds.
  for (const n of names) await cs.fileSync.deleteFile(row.id, n);
  const res = await cs.fileSync.syncFiles(row.id, dir);
  assert.deepEqual(res.keptLocal, []);
  assert.deepEqual(res.deletedLocal.sort(), [...names].sort());
  for (const n of names) assert.equal(existsSync(join(dir, n)), false, n);
});
