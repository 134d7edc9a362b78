// Exactly-once conversation push under what breaks it without any fault (prefixes, pushes
// racing each other) and under replies that are not what was asked for, against the local
// cloud (with a proxy in front of it for the replies a real server rarely sends).
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDevcloud } from './helpers/devcloud.mjs';
import { startProxy } from './helpers/proxy.mjs';
import { loggedIn, newConversation, rowsOf, history, waitFor } from './helpers/sync.mjs';

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

/** A CloudSync for alice whose requests go through a proxy that answers with `canned()`
 * (when it returns a reply) instead of the cloud. */
async function behindProxy(canned) {
  const proxy = await startProxy(cloud.url, { intercept: (req) => canned(req) });
  const { cs } = await loggedIn(cloud, 'alice', { baseUrl: proxy.url, syncInterval: 3_600_000 });
  closers.push(() => proxy.close(), () => cs.destroy());
  return cs;
}

const WRONG_REPLIES = [
  { status: 200, headers: { 'content-type': 'text/html' }, body: '<html><body>Welcome</body></html>' },
  { status: 200, headers: { 'content-type': 'application/json' }, body: '' },
  { status: 200, headers: { 'content-type': 'application/json' }, body: 'null' },
  { status: 200, headers: { 'content-type': 'application/json' }, body: '{}' },
  { status: 200, headers: { 'content-type': 'application/json' }, body: '{"data":[]}' },
  { status: 201, headers: { 'content-type': 'application/json' }, body: '[{"id":"not-a-row-we-sent"}]' },
  { status: 201, headers: { 'content-type': 'application/json' }, body: '[{"id":"00000000-0000-4000-8000-000000000000"}]' },
];

test('a 2xx on the messages POST without the rows asked for is INVALID_RESPONSE, and the next push sends them', async () => {
  let reply = null;
  const isInsert = (req) => req.method === 'POST' && req.url.startsWith('/rest/v1/messages');
  const cs = await behindProxy((req) => (isInsert(req) ? reply : null));
  const conv = await newConversation(cloud);
  const h = history(3);
  for (const wrong of WRONG_REPLIES) {
    reply = wrong;
    await assert.rejects(cs.pushConversation(conv, h), (e) => {
      assert.equal(e.code, 'INVALID_RESPONSE', `${wrong.body}: ${e.message}`);
      return true;
    });
  }
  reply = null;
  assert.equal((await cs.pushConversation(conv, h)).pushed, 3, 'nothing was marked pushed');
  assert.deepEqual((await rowsOf(cloud, conv)).map((r) => r.content), h.map((m) => m.content));
});

test('a non-array answer to the recent-rows lookup is INVALID_RESPONSE, never "no rows"', async () => {
  let reply = null;
  const isLookup = (req) => req.method === 'GET' && req.url.startsWith('/rest/v1/messages') && req.url.includes('order=created_at.desc');
  const cs = await behindProxy((req) => (isLookup(req) ? reply : null));
  const conv = await newConversation(cloud);
  const h = history(4);
  assert.equal((await cs.pushConversation(conv, h)).pushed, 4);
  const compacted = [{ role: 'system', content: 'summary of m 0 and m 1' }, ...h.slice(2)];
  for (const wrong of WRONG_REPLIES.slice(0, 5)) {
    reply = wrong;
    await assert.rejects(cs.pushConversation(conv, compacted), (e) => {
      assert.equal(e.code, 'INVALID_RESPONSE', `${wrong.body}: ${e.message}`);
      return true;
    });
  }
  reply = null;
  assert.equal((await cs.pushConversation(conv, compacted)).pushed, 0);
  assert.equal((await cs.pushConversation(conv, [...compacted, { role: 'user', content: 'new' }])).pushed, 1);
  assert.deepEqual((await rowsOf(cloud, conv)).map((r) => r.content), [...h.map((m) => m.content), 'new']);
});

test('a NUL in a message is stored as U+FFFD and holds back nothing', async () => {
  const conv = await newConversation(cloud);
  const h = [
    { role: 'user', content: 'before' },
    { role: 'assistant', content: 'a\u0000b\u0000' },
    { role: 'user', content: [{ type: 'text', text: 'parts\u0000' }] },
    { role: 'user', content: 'after' },
  ];
  assert.equal((await alice.pushConversation(conv, h)).pushed, 4);
  assert.equal((await alice.pushConversation(conv, h)).pushed, 0, 'the replaced text has a stable id');
  assert.equal((await alice.pushConversation(conv, [...h, { role: 'assistant', content: 'later' }])).pushed, 1);
  const rows = await rowsOf(cloud, conv);
  assert.deepEqual(rows.map((r) => r.content), ['before', 'a\uFFFDb\uFFFD', '[{"text":"parts\\u0000","type":"text"}]', 'after', 'later']);
});

test('a row the cloud refuses for its data is reported and skipped; the rest of its batch arrives', async () => {
  // A PostgreSQL data exception (class 22) on any insert that holds the marked message.
  const proxy = await startProxy(cloud.url, {
    interceptBody: (req, body) =>
      req.method === 'POST' && req.url.startsWith('/rest/v1/messages') && body.includes('REFUSE-ME')
        ? {
            status: 400,
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ code: '22001', message: 'value too long for type character varying(10)', details: null, hint: null }),
          }
        : null,
  });
  const { cs, bus } = await loggedIn(cloud, 'alice', { baseUrl: proxy.url, syncInterval: 3_600_000 });
  closers.push(() => proxy.close(), () => cs.destroy());
  const conv = await newConversation(cloud);
  const h = history(7);
  h[3] = { role: 'assistant', content: 'REFUSE-ME' };
  const r = await cs.pushConversation(conv, h);
  assert.equal(r.pushed, 6);
  assert.equal(r.refused, 1);
  // Reported before the push returned; the event crosses to JS on a queue of its own.
  const ev = await waitFor(bus, 'cloud:sync:error', (p) => p.conversationId === conv, 10_000);
  assert.equal(ev.code, '22001');
  assert.equal(ev.refusedIds.length, 1);
  assert.equal((await cs.pushConversation(conv, [...h, { role: 'user', content: 'next' }])).pushed, 1, 'not blocked');
  const rows = await rowsOf(cloud, conv);
  assert.deepEqual(rows.map((x) => x.content), [...h.filter((m) => m.content !== 'REFUSE-ME').map((m) => m.content), 'next']);
});
