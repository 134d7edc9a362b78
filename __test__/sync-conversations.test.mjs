// Conversation push (exactly once, batched) and pull (keyset pagination), against the local
// cloud, with row counts taken with the service key.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDevcloud, SEED } from './helpers/devcloud.mjs';
import { loggedIn, workdir, newConversation, rowsOf, history, requests } from './helpers/sync.mjs';

const WS = SEED.workspaces.websiteRevamp;
const ALICE = SEED.users.alice.id;
let cloud;
let alice;
let bob;
const instances = [];
before(async () => {
  cloud = await startDevcloud();
  alice = (await loggedIn(cloud, 'alice', { syncInterval: 3_600_000 })).cs;
  bob = (await loggedIn(cloud, 'bob', { syncInterval: 3_600_000 })).cs;
  instances.push(alice, bob);
});
after(async () => {
  for (const cs of instances) await cs.destroy();
  await cloud?.stop();
});

const dupes = (rows) => rows.length - new Set(rows.map((r) => r.id)).size;

test('push, then bob pulls exactly those messages', async () => {
  const conv = await newConversation(cloud);
  const local = [
    { role: 'system', content: 'You are helpful' },
    { role: 'user', content: 'What is 2+2?' },
    { role: 'tool', content: '{"result":4}', tool_call_id: 't1' },
    { role: 'assistant', content: 'It is 4.' },
    { role: 'user', content: 'Thanks' },
  ];
  const r = await alice.pushConversation(conv, local);
  assert.equal(r.pushed, 3);
  assert.ok(Date.parse(r.lastSyncAt));
  const pulled = await bob.pullConversation(conv);
  assert.deepEqual(
    pulled.messages.map((m) => [m.role, m.content]),
    [['user', 'What is 2+2?'], ['assistant', 'It is 4.'], ['user', 'Thanks']],
  );
  for (const m of pulled.messages) {
    assert.deepEqual(Object.keys(m).sort(), ['_cloudCreatedAt', '_cloudId', '_cloudSenderAgent', 'content', 'role']);
    assert.equal(m._cloudSenderAgent, null);
  }
  assert.equal(pulled.lastCloudMessageAt, pulled.messages[2]._cloudCreatedAt);
  const rows = await rowsOf(cloud, conv);
  assert.deepEqual(rows.map((x) => x.sender_user_id), [ALICE, null, ALICE], 'user messages carry the sender');
  // Alice's own messages are left out of her pull, and `since` pulls only what is newer.
  assert.deepEqual((await alice.pullConversation(conv)).messages, []);
  assert.deepEqual((await bob.pullConversation(conv, pulled.lastCloudMessageAt)).messages, []);
  assert.equal((await bob.pullConversation(conv, pulled.messages[0]._cloudCreatedAt)).messages.length, 2);
});

test('system and tool messages are never pushed', async () => {
  const conv = await newConversation(cloud);
  const r = await alice.pushConversation(conv, [
    { role: 'system', content: 's' },
    { role: 'tool', content: 't' },
    { role: 'function', content: 'f' },
    { role: 'user', content: 'u' },
  ]);
  assert.equal(r.pushed, 1);
  assert.deepEqual((await rowsOf(cloud, conv)).map((x) => x.role), ['user']);
});

test('1,000 messages: batched, then pushed again and from a second client, with zero duplicates', async () => {
  const conv = await newConversation(cloud);
  const local = history(1000);
  await cloud.resetStats();
  const first = await alice.pushConversation(conv, local);
  assert.equal(first.pushed, 1000);
  assert.equal(await requests(cloud, 'POST /rest/v1/messages'), 2, 'one request per 500 messages');

  const again = await alice.pushConversation(conv, local);
  assert.equal(again.pushed, 0);
  const { cs: second } = await loggedIn(cloud, 'alice', { syncInterval: 3_600_000 });
  instances.push(second);
  const fromSecond = await second.pushConversation(conv, local);
  assert.equal(fromSecond.pushed, 0, 'the second machine computes the same ids');
  const more = await second.pushConversation(conv, [...local, { role: 'user', content: 'one more' }]);
  assert.equal(more.pushed, 1);

  const rows = await rowsOf(cloud, conv);
  assert.equal(rows.length, 1001);
  assert.equal(dupes(rows), 0);
  assert.deepEqual(rows.slice(0, 1000).map((x) => x.content), local.map((m) => m.content), 'in order');
});

test('a retried push after losing its reply inserts nothing twice', async () => {
  // A second instance without any push state stands for a process that crashed after the
  // request reached the server but before it recorded the push.
  const conv = await newConversation(cloud);
  const local = history(30);
  await alice.pushConversation(conv, local.slice(0, 20));
  const { cs: crashed } = await loggedIn(cloud, 'alice');
  instances.push(crashed);
  const r = await crashed.pushConversation(conv, local);
  assert.equal(r.pushed, 10);
  assert.equal((await rowsOf(cloud, conv)).length, 30);
});

test('repeated identical messages are all kept', async () => {
  const conv = await newConversation(cloud);
  const oks = [
    { role: 'user', content: 'ok' },
    { role: 'assistant', content: 'ok' },
    { role: 'user', content: 'ok' },
    { role: 'user', content: 'ok' },
  ];
  assert.equal((await alice.pushConversation(conv, oks)).pushed, 4);
  assert.equal((await alice.pushConversation(conv, [...oks, { role: 'user', content: 'ok' }])).pushed, 1);
  const rows = await rowsOf(cloud, conv);
  assert.deepEqual(rows.map((x) => `${x.role}:${x.content}`), ['user:ok', 'assistant:ok', 'user:ok', 'user:ok', 'user:ok']);
});

test('messages that came from the cloud are never pushed back', async () => {
  const conv = await newConversation(cloud);
  await bob.pushConversation(conv, [{ role: 'user', content: 'from bob' }]);
  const { messages } = await alice.pullConversation(conv);
  assert.equal(messages.length, 1);
  const r = await alice.pushConversation(conv, [...messages, { role: 'user', content: 'from alice' }]);
  assert.equal(r.pushed, 1);
  assert.deepEqual((await rowsOf(cloud, conv)).map((x) => x.content), ['from bob', 'from alice']);
});

test('a compacted local history is matched against the cloud, not renumbered', async () => {
  const conv = await newConversation(cloud);
  const local = history(12, 'turn');
  await alice.pushConversation(conv, local);
  // Compaction: the first eight turns become a system summary; then the user goes on.
  const compacted = [{ role: 'system', content: 'Summary of turns 0-7' }, ...local.slice(8), { role: 'user', content: 'after compaction' }];
  const r = await alice.pushConversation(conv, compacted);
  assert.equal(r.pushed, 1);
  const next = await alice.pushConversation(conv, [...compacted, { role: 'assistant', content: 'reply' }]);
  assert.equal(next.pushed, 1);
  const rows = await rowsOf(cloud, conv);
  assert.equal(rows.length, 14);
  assert.equal(dupes(rows), 0);
  assert.deepEqual(rows.slice(12).map((x) => x.content), ['after compaction', 'reply']);
});

test('rows sharing a created_at across a page boundary are not skipped', async () => {
  const conv = await newConversation(cloud);
  const at = '2026-03-01T12:00:00.000000+00:00';
  const rows = Array.from({ length: 1010 }, (_, i) => ({ conversation_id: conv, role: 'assistant', content: `tie ${i}`, created_at: at }));
  await cloud.serviceRest('messages', { method: 'POST', body: rows, headers: { Prefer: 'return=minimal' } });
  await cloud.serviceRest('messages', {
    method: 'POST',
    body: [{ conversation_id: conv, role: 'assistant', content: 'later', created_at: '2026-03-01T12:00:01+00:00' }],
    headers: { Prefer: 'return=minimal' },
  });
  await cloud.resetStats();
  const pulled = await bob.pullConversation(conv);
  assert.equal(pulled.messages.length, 1011);
  assert.equal(new Set(pulled.messages.map((m) => m._cloudId)).size, 1011);
  assert.equal(pulled.messages.at(-1).content, 'later');
  assert.ok((await requests(cloud, 'GET /rest/v1/messages')) >= 2, 'it took more than one page');
  assert.deepEqual((await bob.pullConversation(conv, at)).messages.map((m) => m.content), ['later']);
});

test('listCloudConversations and createConversation in the linked workspace', async () => {
  const dir = workdir();
  const { cs } = await loggedIn(cloud, 'alice', { dir, syncInterval: 3_600_000 });
  instances.push(cs);
  assert.deepEqual(await cs.listCloudConversations(), [], 'not linked');
  await cs.linkWorkspace(WS);
  const created = await cs.workspaceSync.createConversation('design-review');
  assert.equal(created.name, 'design-review');
  assert.equal(cs.workspaceSync.getLinkData().conversations['design-review'].cloudConvId, created.id);
  const list = await cs.listCloudConversations();
  assert.ok(list.some((c) => c.id === SEED.conversations.acmeChat));
  assert.ok(list.some((c) => c.id === created.id));
  for (const c of list) assert.deepEqual(Object.keys(c).sort(), ['conversation_type', 'created_at', 'id', 'is_archived', 'name']);
  const times = list.map((c) => Date.parse(c.created_at));
  assert.deepEqual(times, [...times].sort((a, b) => a - b));
  cs.workspaceSync.linkConversation('chat', SEED.conversations.acmeChat);
  assert.equal(cs.workspaceSync.getLinkData().conversations.chat.cloudConvId, SEED.conversations.acmeChat);
});

test('logged out: the documented defaults', async () => {
  const { cs } = await loggedIn(cloud, 'alice');
  await cs.logout();
  assert.deepEqual(await cs.pushConversation(SEED.conversations.acmeChat, history(2)), { pushed: 0 });
  assert.deepEqual(await cs.pullConversation(SEED.conversations.acmeChat), { messages: [] });
  assert.deepEqual(await cs.listCloudConversations(), []);
  assert.equal(await cs.pullWorkspaceState(), null);
  cs.destroy();
});
