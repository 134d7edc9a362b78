// A cloud that returns fewer rows than a request asks for (PostgREST's `db-max-rows` set
// below the client's page size, as a Supabase project may): every pull still reads to the
// end.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDevcloud, SEED } from './helpers/devcloud.mjs';
import { loggedIn, newConversation, rowsOf, history } from './helpers/sync.mjs';

const MAX_ROWS = 10;
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

test('pullConversation reads past pages the cloud cut short', async () => {
  const conv = await newConversation(cloud);
  const n = 2 * MAX_ROWS + 50;
  await cloud.serviceRest('messages', {
    method: 'POST',
    body: Array.from({ length: n }, (_, i) => ({ conversation_id: conv, role: 'user', content: `m ${i}`, sender_user_id: SEED.users.bob.id })),
    headers: { Prefer: 'return=minimal' },
  });
  const pulled = await cs.pullConversation(conv);
  assert.equal(pulled.messages.length, n);
  assert.deepEqual(new Set(pulled.messages.map((m) => m.content)).size, n);
});

test('a pull that stops at its page bound leaves no part of a timestamp group behind', async () => {
  const conv = await newConversation(cloud);
  // 100 pages of 10 end five rows into the second group: those must come with the next pull.
  const t1 = '2026-01-01T00:00:01.000000+00:00';
  const t2 = '2026-01-01T00:00:02.000000+00:00';
  const rows = [...Array(995).fill(t1), ...Array(20).fill(t2)].map((created_at, i) => ({
    conversation_id: conv, role: 'user', content: `m ${i}`, sender_user_id: SEED.users.bob.id, created_at,
  }));
  await cloud.serviceRest('messages', { method: 'POST', body: rows, headers: { Prefer: 'return=minimal' } });
  const first = await cs.pullConversation(conv);
  const second = await cs.pullConversation(conv, first.lastCloudMessageAt);
  const got = [...first.messages, ...second.messages].map((m) => m.content);
  assert.equal(got.length, rows.length);
  assert.equal(new Set(got).size, rows.length);
});

test('a rewritten history is matched against all of its own rows, however many others follow', async () => {
  const conv = await newConversation(cloud);
  // More of alice's rows than a page the cloud returns, then more of bob's than the client's
  // page size: alice's rows are neither in the newest page nor in one short page.
  const local = history(2 * MAX_ROWS + 5, 'turn');
  assert.equal((await cs.pushConversation(conv, local)).pushed, local.length);
  const others = 1000 + 2 * MAX_ROWS;
  await cloud.serviceRest('messages', {
    method: 'POST',
    body: Array.from({ length: others }, (_, i) => ({ conversation_id: conv, role: 'user', content: `bob ${i}`, sender_user_id: SEED.users.bob.id })),
    headers: { Prefer: 'return=minimal' },
  });
  const compacted = [{ role: 'system', content: 'Summary of turns 0-3' }, ...local.slice(4), { role: 'user', content: 'after compaction' }];
  assert.equal((await cs.pushConversation(conv, compacted)).pushed, 1);
  const rows = await rowsOf(cloud, conv);
  assert.equal(rows.length, local.length + others + 1);
  const mine = rows.filter((r) => !r.content.startsWith('bob '));
  assert.equal(new Set(mine.map((r) => r.content)).size, mine.length, 'no message stored twice');
});
