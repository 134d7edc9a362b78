// Realtime in the addon, against the local cloud's /realtime/v1/websocket: live messages,
// presence and broadcasts between addon instances and the official supabase-js client, no
// polling while the socket is live, and nothing left running after destroy().
import { before, after, afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { startDevcloud, SEED, ROOT, DEMO_PASSWORD } from './helpers/devcloud.mjs';
import { loggedIn, workdir, newConversation, waitFor } from './helpers/sync.mjs';

const WS = SEED.workspaces.websiteRevamp;
let cloud;
const instances = [];
before(async () => {
  cloud = await startDevcloud();
});
// Every test starts with nobody online.
afterEach(async () => {
  for (const c of instances.splice(0)) await c.destroy();
});
after(async () => {
  await cloud?.stop();
});

/** A seed user's CloudSync linked to Website Revamp, once its socket is live. */
async function linked(who, opts = {}) {
  const dir = workdir(`oboto-rt-${who}-`);
  const r = await loggedIn(cloud, who, { dir, syncDebounceMs: 0, ...opts });
  instances.push(r.cs);
  await r.cs.linkWorkspace(WS);
  await waitFor(r.bus, 'cloud:realtime:connected');
  return r;
}

/** supabase-js on Node 20 (the `ws` transport), signed in as a seed user. */
async function supabaseAs(who) {
  const sb = createClient(cloud.url, cloud.anonKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: WebSocket },
  });
  const { error } = await sb.auth.signInWithPassword({ email: SEED.users[who].email, password: DEMO_PASSWORD });
  assert.equal(error, null);
  sb.realtime.setAuth((await sb.auth.getSession()).data.session.access_token);
  instances.push({ destroy: () => sb.removeAllChannels() });
  return sb;
}

const subscribed = (channel) =>
  new Promise((resolve, reject) => {
    channel.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') resolve(channel);
      else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') reject(err ?? new Error(status));
    });
  });

const memberIds = (members) => members.map((m) => m.userId).sort();

test('a message another user inserts arrives live, once; the own pushes never come back', async () => {
  const conv = await newConversation(cloud);
  const alice = await linked('alice');
  const bob = await linked('bob');
  // The channel follows the workspace's conversations (a new one re-joins it).
  await sleep(500);

  const sb = await supabaseAs('bob');
  const { error } = await sb
    .from('messages')
    .insert({ conversation_id: conv, role: 'user', content: 'hello from supabase-js', sender_user_id: SEED.users.bob.id });
  assert.equal(error, null);
  const row = await waitFor(alice.bus, 'cloud:message:received', (m) => m.content === 'hello from supabase-js');
  assert.equal(row.conversation_id, conv);
  assert.equal(row.role, 'user');
  assert.ok(row.id);

  await alice.cs.pushConversation(conv, [{ role: 'user', content: 'pushed by alice' }]);
  const atBob = await waitFor(bob.bus, 'cloud:message:received', (m) => m.content === 'pushed by alice');
  assert.equal(atBob.sender_user_id, SEED.users.alice.id);
  await sleep(500);
  const received = (bus, content) =>
    bus.events.filter((e) => e.name === 'cloud:message:received' && e.payload.content === content).length;
  assert.equal(received(alice.bus, 'pushed by alice'), 0, 'never the own push');
  assert.equal(received(alice.bus, 'hello from supabase-js'), 1, 'exactly once');
});

test('supabase-js subscribed to messages receives the rows the addon pushes', async () => {
  const conv = await newConversation(cloud);
  const alice = await linked('alice');
  const sb = await supabaseAs('bob');
  const rows = [];
  await subscribed(
    sb
      .channel(`watch-${conv}`)
      .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages', filter: `conversation_id=eq.${conv}` }, (p) =>
        rows.push(p.new),
      ),
  );
  await alice.cs.pushConversation(conv, [
    { role: 'user', content: 'one' },
    { role: 'assistant', content: 'two' },
  ]);
  for (let i = 0; i < 100 && rows.length < 2; i++) await sleep(50);
  assert.deepEqual(rows.map((r) => r.content), ['one', 'two']);
});

test('presence: one entry per user, seen by the addon and by supabase-js; a leave is seen', async () => {
  const alice = await linked('alice');
  const bob = await linked('bob');
  const both = [SEED.users.alice.id, SEED.users.bob.id].sort();
  await waitFor(alice.bus, 'cloud:presence:updated', (p) => p.workspaceId === WS && memberIds(p.members).join() === both.join());
  assert.deepEqual(memberIds(alice.cs.getPresence()), both);
  const me = alice.cs.getPresence().find((m) => m.userId === SEED.users.alice.id);
  assert.equal(me.status, 'active');
  assert.equal(typeof me.displayName, 'string');

  // A second machine of the same user is still one entry.
  const bob2 = await linked('bob');
  await sleep(300);
  assert.deepEqual(memberIds(alice.cs.getPresence()), both);

  const sb = await supabaseAs('bob');
  const channel = sb.channel(`workspace:${WS}`, { config: { presence: { key: SEED.users.bob.id } } });
  // realtime-js asks for presence only when a presence listener is bound at subscribe.
  channel.on('presence', { event: 'sync' }, () => {});
  await subscribed(channel);
  for (let i = 0; i < 100 && !channel.presenceState()[SEED.users.alice.id]; i++) await sleep(50);
  const metas = channel.presenceState()[SEED.users.alice.id];
  assert.ok(metas?.length, 'the addon is present for supabase-js');
  assert.equal(metas[0].user_id, SEED.users.alice.id);
  assert.equal(metas[0].connected_from, 'desktop');

  const from = alice.bus.events.length;
  await bob.cs.destroy();
  await bob2.cs.destroy();
  const alone = (p) => memberIds(p.members).join() === SEED.users.alice.id;
  await waitFor(alice.bus, 'cloud:presence:updated', alone, 20_000, from);
  assert.deepEqual(memberIds(alice.cs.getPresence()), [SEED.users.alice.id]);
});

test('unlink and logout withdraw the members shown: a last, empty presence and getPresence() []', async () => {
  const alice = await linked('alice');
  await linked('bob');
  const both = [SEED.users.alice.id, SEED.users.bob.id].sort().join();
  const shown = (p) => p.workspaceId === WS && memberIds(p.members).join() === both;
  const withdrawn = (p) => p.workspaceId === WS && p.members.length === 0;
  await waitFor(alice.bus, 'cloud:presence:updated', shown);

  let from = alice.bus.events.length;
  await alice.cs.unlinkWorkspace();
  await waitFor(alice.bus, 'cloud:presence:updated', withdrawn, 10_000, from);
  assert.deepEqual(alice.cs.getPresence(), []);

  from = alice.bus.events.length;
  await alice.cs.linkWorkspace(WS);
  await waitFor(alice.bus, 'cloud:presence:updated', shown, 20_000, from);
  from = alice.bus.events.length;
  await alice.cs.logout();
  await waitFor(alice.bus, 'cloud:presence:updated', withdrawn, 10_000, from);
  assert.deepEqual(alice.cs.getPresence(), []);
});

test('linking the same workspace again or logging in again withdraws nothing: no empty presence', async () => {
  const alice = await linked('alice');
  const me = (p) => p.workspaceId === WS && memberIds(p.members).join() === SEED.users.alice.id;
  const withdrawn = (p) => p.workspaceId === WS && p.members.length === 0;
  await waitFor(alice.bus, 'cloud:presence:updated', me);

  const from = alice.bus.events.length;
  let at = from;
  await alice.cs.linkWorkspace(WS);
  await waitFor(alice.bus, 'cloud:presence:updated', me, 20_000, at);
  at = alice.bus.events.length;
  await alice.cs.login(SEED.users.alice.email, DEMO_PASSWORD);
  await waitFor(alice.bus, 'cloud:presence:updated', me, 20_000, at);
  // The unlink's withdrawal is emitted before it returns, after any the old sockets sent.
  await alice.cs.unlinkWorkspace();
  await waitFor(alice.bus, 'cloud:presence:updated', withdrawn, 10_000, from);
  const lists = alice.bus.events
    .slice(from)
    .filter((e) => e.name === 'cloud:presence:updated')
    .map((e) => memberIds(e.payload.members).join());
  assert.deepEqual(lists.slice(0, -1).filter((l) => l === ''), [], `no withdrawal before the unlink's: ${JSON.stringify(lists)}`);
  assert.equal(lists.at(-1), '');
});

test('broadcasts reach the other members (not the sender), both ways with supabase-js', async () => {
  const alice = await linked('alice');
  const bob = await linked('bob');
  await alice.cs.broadcast('typing', { conversation: 'x', on: true });
  const got = await waitFor(bob.bus, 'cloud:broadcast:typing');
  assert.equal(got.conversation, 'x');
  assert.equal(got.on, true);
  await sleep(200);
  assert.ok(!alice.bus.names().includes('cloud:broadcast:typing'), 'not back to the sender');

  // supabase-js sends broadcasts as binary v2 frames by default.
  const sb = await supabaseAs('bob');
  const channel = sb.channel(`workspace:${WS}`);
  const heard = [];
  channel.on('broadcast', { event: 'cursor' }, (m) => heard.push(m.payload));
  await subscribed(channel);
  await channel.send({ type: 'broadcast', event: 'cursor', payload: { line: 7 } });
  assert.equal((await waitFor(alice.bus, 'cloud:broadcast:cursor')).line, 7);
  await alice.cs.broadcast('cursor', { line: 9 });
  for (let i = 0; i < 100 && !heard.length; i++) await sleep(50);
  assert.deepEqual(heard, [{ line: 9 }]);
});

test('while the socket is live, an idle linked workspace sends no REST request', async () => {
  const { cs } = await linked('alice', { syncInterval: 300 });
  // Let the first cycle finish, then count.
  await sleep(1_000);
  await cloud.resetStats();
  await sleep(2_000);
  const { requests } = await cloud.stats();
  const rest = Object.keys(requests).filter((k) => / \/(rest|functions)\/v1\//.test(k));
  assert.deepEqual(rest, [], 'no polling while live');
  assert.equal(cs.getStatus().syncEngineStatus.running, true);
});

test('a remote workspace change reaches the engine at once, without polling', async () => {
  const { bus } = await linked('alice', { syncInterval: 3_600_000 });
  await sleep(300);
  const from = bus.events.length;
  await cloud.serviceRest(`workspaces?id=eq.${WS}`, {
    method: 'PATCH',
    body: { task_goal: `remote ${Date.now()}` },
  });
  const row = await waitFor(bus, 'cloud:workspace:remote-update', () => true, 10_000, from);
  assert.match(JSON.stringify(row), /remote \d+/);
});

test('after destroy() with a live socket the process exits by itself', async () => {
  const dir = workdir('oboto-rt-exit-');
  const script = `
    import { CloudSync } from ${JSON.stringify(`${ROOT}/cloud-sync.mjs`)};
    const bus = { emitTyped: (n) => { if (n === 'cloud:realtime:connected') connected(); } };
    let connected; const live = new Promise((r) => (connected = r));
    // The addon holds nothing that keeps Node alive (that is the point of this test), so
    // until the socket is up a timer does, as the Oboto server's own sockets would.
    const keepAlive = setInterval(() => {}, 1_000);
    const cs = new CloudSync(bus, null);
    await cs.initialize({ baseUrl: process.env.URL, anonKey: process.env.KEY, tokenStore: 'memory' });
    cs.setWorkingDir(process.env.DIR);
    await cs.login('alice@acme.test', process.env.PASSWORD);
    await cs.linkWorkspace(process.env.WS);
    await live;
    clearInterval(keepAlive);
    await cs.destroy();
    console.log('destroyed');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, URL: cloud.url, KEY: cloud.anonKey, PASSWORD: DEMO_PASSWORD, DIR: dir, WS },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const code = await new Promise((resolve) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('still running 15 s after start');
    }, 15_000);
    child.on('exit', (c) => {
      clearTimeout(t);
      resolve(c);
    });
  });
  assert.equal(code, 0, out);
  assert.match(out, /destroyed/);
});
