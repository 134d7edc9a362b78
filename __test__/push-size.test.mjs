// Conversation pushes against the cloud's request body limit (PostgREST's 413, PGRST413):
// a history whose rows would make one insert larger than the cloud accepts is stored in
// requests it does accept, online and through the outbox; a message too large to be sent
// even alone is reported with its code and holds back nothing else.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDevcloud } from './helpers/devcloud.mjs';
import { linkedAlice, loggedIn, newConversation, rowsOf, workdir, freePort, waitFor } from './helpers/sync.mjs';

const clouds = [];
const closers = [];
after(async () => {
  for (const close of closers.reverse()) await close();
  for (const c of clouds) await c.stop();
});

/** A cloud on a fixed port and data directory, so it can be stopped and started again
 * where its clients expect it. `restart()` replaces the running process. */
async function restartableCloud(extra = []) {
  const args = ['--port', String(await freePort()), '--data-dir', join(workdir('oboto-cloud-data-'), 'db'), ...extra];
  const holder = { cloud: await startDevcloud(args) };
  clouds.push({ stop: () => holder.cloud.stop() });
  holder.restart = async () => {
    holder.cloud = await startDevcloud(args);
  };
  return holder;
}

/** `n` turns of about `size` characters each: 500 rows of 2,000 characters make an insert
 * of more than 1 MiB, the local cloud's default body limit. */
function bigHistory(n, size = 2000, prefix = 'big') {
  return Array.from({ length: n }, (_, i) => ({
    role: i % 2 === 0 ? 'user' : 'assistant',
    content: `${prefix} ${i} ${'x'.repeat(size)}`,
  }));
}

/** Each message's first two words and its length: enough to tell them apart, short enough
 * for a readable failure. */
const contents = (rows) => rows.map((r) => `${r.content.split(' ').slice(0, 2).join(' ')} (${r.content.length})`);
const dupes = (rows) => rows.length - new Set(rows.map((r) => r.id)).size;

/** Waits until the CloudSync has nothing left in its outbox. */
async function drained(cs, bus, timeoutMs = 60_000) {
  const until = Date.now() + timeoutMs;
  while (cs.getStatus().syncEngineStatus?.outboxPending > 0) {
    if (Date.now() > until) {
      const seen = bus.events.map((e) => `${e.payload.timestamp} ${e.name} ${JSON.stringify(e.payload).slice(0, 160)}`);
      throw new Error(`outbox not drained: ${JSON.stringify(cs.getStatus().syncEngineStatus)}\n${seen.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

let big; // the default body limit (1 MiB)
let small; // a 200,000-byte body limit
before(async () => {
  big = await restartableCloud();
  small = await restartableCloud(['--max-body-bytes', '200000']);
});

test('an online push of a history too large for one request stores every row once', async () => {
  const { cs } = await loggedIn(big.cloud, 'alice', { syncInterval: 3_600_000 });
  closers.push(() => cs.destroy());
  const conv = await newConversation(big.cloud);
  const h = bigHistory(600);
  const r = await cs.pushConversation(conv, h);
  assert.equal(r.pushed, 600);
  assert.equal(r.refused, undefined);
  assert.equal((await cs.pushConversation(conv, h)).pushed, 0, 'a repeat sends nothing');
  const rows = await rowsOf(big.cloud, conv);
  assert.deepEqual(contents(rows), contents(h));
  assert.equal(dupes(rows), 0);
});

/** Alice, linked with `conv` mapped (see helpers/sync.mjs), destroyed after the suite. */
async function linkedAliceOn(holder, conv) {
  const alice = await linkedAlice(holder.cloud, conv);
  closers.push(() => alice.cs.destroy());
  return alice;
}

test('a history too large for one request, queued offline, arrives once when the cloud returns', async () => {
  const conv = await newConversation(big.cloud);
  const { cs, bus } = await linkedAliceOn(big, conv);
  await big.cloud.stop();
  const h = bigHistory(600, 2000, 'queued');
  const r = await cs.pushConversation(conv, h);
  assert.equal(r.pushed, 0);
  assert.equal(r.queued, 600);
  await big.restart();
  await drained(cs, bus);
  const rows = await rowsOf(big.cloud, conv);
  assert.deepEqual(contents(rows), contents(h));
  assert.equal(dupes(rows), 0);
});

test('an outbox entry written by the previous version (500 long rows in one entry) is split and stored once', async () => {
  const conv = await newConversation(big.cloud);
  const { cs, bus, dir } = await linkedAliceOn(big, conv);
  await big.cloud.stop();
  const h = bigHistory(500, 2000, 'legacy');
  assert.equal((await cs.pushConversation(conv, h)).queued, 500);
  // What the previous version queued for the same push: one entry of every row, and no
  // `userId` (the rows' `pushedBy` makes it alice's).
  const file = join(dir, '.cloud-outbox.jsonl');
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const rows = lines.flatMap((l) => l.rows);
  assert.equal(rows.length, 500);
  writeFileSync(file, JSON.stringify({ v: 1, kind: 'messages', conversationId: conv, rows }) + '\n');
  await big.restart();
  await drained(cs, bus);
  const stored = await rowsOf(big.cloud, conv);
  assert.deepEqual(contents(stored), contents(h));
  assert.equal(dupes(stored), 0);
});

test('a message the cloud refuses even alone is reported with PGRST413; the rest is stored and the conversation goes on', async () => {
  const { cs, bus } = await loggedIn(small.cloud, 'alice', { syncInterval: 3_600_000 });
  closers.push(() => cs.destroy());
  const conv = await newConversation(small.cloud);
  // 150 rows of 2,000 characters: more than 200,000 bytes in any request that holds them all.
  const h = bigHistory(150);
  h[70] = { role: 'assistant', content: `too large ${'y'.repeat(300_000)}` };
  const r = await cs.pushConversation(conv, h);
  assert.equal(r.pushed, 149);
  assert.equal(r.refused, 1);
  // Reported before the push returned; the event crosses to JS on a queue of its own.
  const ev = await waitFor(bus, 'cloud:sync:error', (p) => p.conversationId === conv, 10_000);
  assert.equal(ev.code, 'PGRST413');
  assert.equal(ev.refusedIds.length, 1);
  assert.match(ev.error, /too large|larger/i);
  const next = [...h, { role: 'user', content: 'after the big one' }];
  assert.equal((await cs.pushConversation(conv, next)).pushed, 1, 'the conversation is not stuck');
  const rows = await rowsOf(small.cloud, conv);
  assert.deepEqual(contents(rows), contents(next.filter((_, i) => i !== 70)));
  assert.equal(dupes(rows), 0);
});

test('a message too large to send, queued offline, is reported when flushed and holds back nothing', async () => {
  const conv = await newConversation(small.cloud);
  const { cs, bus } = await linkedAliceOn(small, conv);
  await small.cloud.stop();
  const h = bigHistory(150, 2000, 'offline');
  h[10] = { role: 'user', content: `too large ${'z'.repeat(300_000)}` };
  assert.equal((await cs.pushConversation(conv, h)).queued, 150);
  const from = bus.events.length;
  await small.restart();
  await drained(cs, bus);
  const ev = await waitFor(bus, 'cloud:sync:error', (p) => p.conversationId === conv, 10_000, from);
  assert.equal(ev.code, 'PGRST413');
  assert.equal(ev.refusedIds.length, 1);
  const rows = await rowsOf(small.cloud, conv);
  assert.deepEqual(contents(rows), contents(h.filter((_, i) => i !== 10)));
  assert.equal(dupes(rows), 0);
});
