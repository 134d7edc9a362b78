// Exactly-once conversation push under what breaks it without any fault (prefixes, pushes
// racing each other) and under replies that are not what was asked for, against the local
// cloud (with a proxy in front of it for the replies a real server rarely sends).
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDevcloud } from './helpers/devcloud.mjs';
import { startProxy } from './helpers/proxy.mjs';
import { loggedIn, newConversation, rowsOf, history } from './helpers/sync.mjs';

let cloud;
let alice;
const closers = [];
before(async () => {
  cloud = await startDevcloud();
  alice = (await loggedIn(cloud, 'alice', { syncInterval: 3_600_000 })).cs;
  closers.push(() => alice.destroy());
});
after(async () => {
  for (const close of closers.reverse()) await close();
  await cloud?.stop();
});

const dupes = (rows) => rows.length - new Set(rows.map((r) => r.id)).size;

test('a push of a prefix of what was pushed sends nothing and forgets nothing', async () => {
  const conv = await newConversation(cloud);
  const h = history(6);
  assert.equal((await alice.pushConversation(conv, h.slice(0, 4))).pushed, 4);
  assert.equal((await alice.pushConversation(conv, h.slice(0, 2))).pushed, 0);
  assert.equal((await alice.pushConversation(conv, h)).pushed, 2);
  const rows = await rowsOf(cloud, conv);
  assert.deepEqual(rows.map((r) => r.content), h.map((m) => m.content));
  assert.equal(dupes(rows), 0);
});

test('30 concurrent pushes of growing snapshots of one history store it once', async () => {
  const conv = await newConversation(cloud);
  const h = history(60);
  const results = await Promise.all(
    Array.from({ length: 30 }, (_, i) => alice.pushConversation(conv, h.slice(0, 2 * (i + 1)))),
  );
  assert.equal(results.reduce((n, r) => n + r.pushed, 0), 60, 'each message counted once');
  const rows = await rowsOf(cloud, conv);
  assert.equal(rows.length, 60);
  assert.equal(dupes(rows), 0);
  assert.deepEqual(rows.map((r) => r.content).sort(), h.map((m) => m.content).sort());
});

test('concurrent snapshots from before and after a compaction store each message once', async () => {
  const conv = await newConversation(cloud);
  const h = history(40, 'turn');
  // Snapshots of 2..20 messages, then compacted ones (the first 10 summarized) up to 40.
  const snaps = Array.from({ length: 20 }, (_, i) => {
    const k = 2 * (i + 1);
    return k <= 20 ? h.slice(0, k) : [{ role: 'system', content: 'summary' }, ...h.slice(10, k)];
  });
  await Promise.all(snaps.map((s) => alice.pushConversation(conv, s)));
  const rows = await rowsOf(cloud, conv);
  assert.equal(dupes(rows), 0);
  assert.deepEqual(rows.map((r) => r.content).sort(), h.map((m) => m.content).sort());
});
