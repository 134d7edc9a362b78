// The outbox belongs to the users who queued it: after a logout, the next user's session on
// the same CloudSync and working directory sends none of the previous user's queued
// messages (the cloud would refuse them: RLS wants sender_user_id = auth.uid()) and drops
// none; they go when their user logs in again. And an entry the cloud refuses for the
// user's identity (403) is kept and reported, never dropped.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDevcloud, SEED, DEMO_PASSWORD } from './helpers/devcloud.mjs';
import { startProxy } from './helpers/proxy.mjs';
import { linkedAlice, loggedIn, newConversation, rowsOf, workdir, freePort, waitFor } from './helpers/sync.mjs';

let cloud;
const closers = [];
after(async () => {
  for (const close of closers.reverse()) await close();
  await cloud?.stop();
});

const queuedLines = (file) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : []);

async function drained(cs, timeoutMs = 30_000) {
  const until = Date.now() + timeoutMs;
  while (cs.getStatus().syncEngineStatus?.outboxPending > 0) {
    if (Date.now() > until) throw new Error(`outbox not drained: ${JSON.stringify(cs.getStatus().syncEngineStatus)}`);
    await sleep(100);
  }
}

test("a session flushes only its own user's outbox entries; the others wait for their user", async () => {
  const args = ['--port', String(await freePort()), '--data-dir', join(workdir('oboto-cloud-data-'), 'db')];
  cloud = await startDevcloud(args);
  const conv = await newConversation(cloud);
  const bobsConv = await newConversation(cloud);
  const { cs, bus, dir } = await linkedAlice(cloud, conv);
  closers.push(() => cs.destroy());
  const outbox = join(dir, '.cloud-outbox.jsonl');

  await cloud.stop();
  const h = [];
  for (let i = 0; i < 4; i++) {
    h.push({ role: i % 2 ? 'assistant' : 'user', content: `alice offline ${i}` });
    assert.equal((await cs.pushConversation(conv, h)).queued, 1);
  }
  assert.equal(queuedLines(outbox).length, 4);
  await cs.logout();

  cloud = await startDevcloud(args);
  const from = bus.events.length;
  await cs.login(SEED.users.bob.email, DEMO_PASSWORD);
  assert.equal(cs.getStatus().linkedWorkspace?.id, SEED.workspaces.websiteRevamp, "bob's session is linked too");
  // A push of bob's own flushes what is queued first; then a few engine cycles pass.
  assert.equal((await cs.pushConversation(bobsConv, [{ role: 'user', content: 'from bob' }])).pushed, 1);
  await sleep(2_000);
  assert.equal(cs.getStatus().syncEngineStatus.outboxPending, 0, 'nothing of bob is pending');
  assert.deepEqual(await rowsOf(cloud, conv), [], "nothing of alice's was sent in bob's session");
  assert.equal(queuedLines(outbox).length, 4, "nothing of alice's was dropped");
  const errors = bus.events.slice(from).filter((e) => e.name === 'cloud:sync:error');
  assert.deepEqual(errors, [], 'no refusal met');
  assert.deepEqual((await rowsOf(cloud, bobsConv)).map((r) => [r.content, r.sender_user_id]), [['from bob', SEED.users.bob.id]]);
  await cs.logout();

  await cs.login(SEED.users.alice.email, DEMO_PASSWORD);
  await drained(cs);
  const rows = await rowsOf(cloud, conv);
  assert.deepEqual(rows.map((r) => r.content), h.map((m) => m.content), 'all 4, once, in order');
  assert.equal(new Set(rows.map((r) => r.id)).size, 4);
  assert.deepEqual(
    rows.filter((r) => r.sender_user_id).map((r) => r.sender_user_id),
    [SEED.users.alice.id, SEED.users.alice.id],
  );
  assert.equal(existsSync(outbox), false, 'the drained outbox is removed');
  assert.equal((await cs.pushConversation(conv, h)).pushed, 0, 'and nothing is sent twice');
});

test('an outbox entry refused with 403 is kept and reported; its conversation waits, the others go', async () => {
  const args = ['--port', String(await freePort()), '--data-dir', join(workdir('oboto-cloud-data-'), 'db')];
  await cloud?.stop();
  cloud = await startDevcloud(args);
  const held = await newConversation(cloud);
  const other = await newConversation(cloud);
  // RLS's refusal, for any insert into `held`, while `refuse` is set (once the cloud is back).
  let refuse = false;
  const proxy = await startProxy(cloud.url, {
    interceptBody: (req, body) =>
      refuse && req.method === 'POST' && req.url.startsWith('/rest/v1/messages') && body.includes(held)
        ? {
            status: 403,
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ code: '42501', message: 'new row violates row-level security policy for table "messages"', details: null, hint: null }),
          }
        : null,
  });
  closers.push(() => proxy.close());
  const { cs, bus, dir } = await linkedAlice(cloud, null, { baseUrl: proxy.url });
  closers.push(() => cs.destroy());
  const outbox = join(dir, '.cloud-outbox.jsonl');

  await cloud.stop();
  const h = [{ role: 'user', content: 'held 0' }];
  assert.equal((await cs.pushConversation(held, h)).queued, 1);
  h.push({ role: 'assistant', content: 'held 1' });
  assert.equal((await cs.pushConversation(held, h)).queued, 1);
  assert.equal((await cs.pushConversation(other, [{ role: 'user', content: 'other 0' }])).queued, 1);
  const from = bus.events.length;
  refuse = true;
  cloud = await startDevcloud(args);

  const kept = await waitFor(bus, 'cloud:sync:error', (p) => p.kept === true, 20_000, from);
  assert.equal(kept.code, '42501');
  assert.equal(kept.conversationId, held);
  for (let i = 0; i < 100 && (await rowsOf(cloud, other)).length === 0; i++) await sleep(100);
  assert.deepEqual((await rowsOf(cloud, other)).map((r) => r.content), ['other 0'], 'the other conversation went');
  assert.deepEqual(await rowsOf(cloud, held), []);
  // The other conversation's entry leaves the file after its rows are in the cloud, and the
  // count follows the file (the engine writes one, then the other, on its own thread).
  const settled = () => queuedLines(outbox).length <= 2 && cs.getStatus().syncEngineStatus.outboxPending <= 2;
  for (let i = 0; i < 200 && !settled(); i++) await sleep(100);
  const lines = queuedLines(outbox).map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => [l.conversationId, l.rows.map((r) => r.content)]), [[held, ['held 0']], [held, ['held 1']]], 'kept, in order');
  assert.equal(cs.getStatus().syncEngineStatus.outboxPending, 2);

  refuse = false;
  await drained(cs);
  assert.deepEqual((await rowsOf(cloud, held)).map((r) => r.content), ['held 0', 'held 1']);
  assert.equal(existsSync(outbox), false);
});
