// What a read costs in requests when all its rows fit in the first page: one. The cloud's
// count (`Prefer: count=exact`, answered in `Content-Range`) shows that the page holds every
// row, so the empty page that otherwise ends a read is not asked for. (Reads from a cloud
// that cuts pages short: listings-pages, integrity-pages and files-integrity.)
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { SEED, startDevcloud } from './helpers/devcloud.mjs';
import { history, loggedIn, newConversation, requests, workdir } from './helpers/sync.mjs';
import { put } from './helpers/files.mjs';

let cloud;
let cs;
before(async () => {
  cloud = await startDevcloud();
  // No realtime socket and no timed sync: the only requests counted are the test's own.
  ({ cs } = await loggedIn(cloud, 'alice', { dir: workdir(), syncInterval: 3_600_000, realtime: false }));
});
after(async () => {
  await cs?.destroy();
  await cloud?.stop();
});

/** The requests of `key` that `fn` makes, and what it returned. */
async function counted(key, fn) {
  await cloud.resetStats();
  const out = await fn();
  return { out, n: await requests(cloud, key) };
}

test('a small listing of workspaces, agents or conversations is one request', async () => {
  const ws = await counted('GET /rest/v1/workspaces', () => cs.listCloudWorkspaces());
  assert.ok(ws.out.length > 0);
  assert.equal(ws.n, 1);

  cs.clearAgentCache();
  const agents = await counted('GET /rest/v1/cloud_agents', () => cs.listAgents());
  assert.ok(agents.out.length > 0);
  assert.equal(agents.n, 1);

  await cs.linkWorkspace(SEED.workspaces.websiteRevamp);
  await newConversation(cloud);
  const convs = await counted('GET /rest/v1/conversations', () => cs.listCloudConversations());
  assert.ok(convs.out.length > 0);
  assert.equal(convs.n, 1);
});

test('an empty listing is one request too', async () => {
  const [row] = await cloud.serviceRest('workspaces', {
    method: 'POST',
    body: { name: 'empty', slug: `empty-${Date.now()}`, org_id: SEED.orgs.acme, status: 'active' },
  });
  const files = await counted('GET /rest/v1/workspace_files', () => cs.fileSync.listFiles(row.id));
  assert.deepEqual(files.out, []);
  assert.equal(files.n, 1);
});

test('a pull, first or incremental, is one request when its rows fit in a page', async () => {
  const conv = await newConversation(cloud);
  const post = (body) => cloud.serviceRest('messages', { method: 'POST', body, headers: { Prefer: 'return=minimal' } });
  const bob = (i) => ({ conversation_id: conv, role: 'user', content: `bob ${i}`, sender_user_id: SEED.users.bob.id });
  await post([0, 1, 2].map(bob));
  const first = await counted('GET /rest/v1/messages', () => cs.pullConversation(conv));
  assert.equal(first.out.messages.length, 3);
  assert.equal(first.n, 1);

  await post([3, 4].map(bob));
  const next = await counted('GET /rest/v1/messages', () => cs.pullConversation(conv, first.out.lastCloudMessageAt));
  assert.deepEqual(next.out.messages.map((m) => m.content), ['bob 3', 'bob 4']);
  assert.equal(next.n, 1);

  const none = await counted('GET /rest/v1/messages', () => cs.pullConversation(conv, next.out.lastCloudMessageAt));
  assert.deepEqual(none.out.messages, []);
  assert.equal(none.n, 1);
});

test('matching a rewritten history reads its own rows in one request', async () => {
  const conv = await newConversation(cloud);
  const local = history(6, 'turn');
  assert.equal((await cs.pushConversation(conv, local)).pushed, local.length);
  const compacted = [{ role: 'system', content: 'Summary of turns 0-1' }, ...local.slice(2), { role: 'user', content: 'after compaction' }];
  const push = await counted('GET /rest/v1/messages', () => cs.pushConversation(conv, compacted));
  assert.equal(push.out.pushed, 1, 'only the new message was sent');
  assert.equal(push.n, 1);
});

test('a small file listing is one request', async () => {
  const [row] = await cloud.serviceRest('workspaces', {
    method: 'POST',
    body: { name: 'files', slug: `files-${Date.now()}`, org_id: SEED.orgs.acme, status: 'active' },
  });
  const dir = workdir();
  for (const rel of ['a.txt', 'b/c.md']) {
    put(dir, rel, rel);
    await cs.fileSync.uploadFile(row.id, dir, rel);
  }
  const files = await counted('GET /rest/v1/workspace_files', () => cs.fileSync.listFiles(row.id));
  assert.deepEqual(files.out.map((f) => f.file_path).sort(), ['a.txt', 'b/c.md']);
  assert.equal(files.n, 1);
});
