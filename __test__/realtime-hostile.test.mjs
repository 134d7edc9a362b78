// Malformed frames from a hostile realtime server never crash the addon. The addon's
// baseUrl is a test server that passes HTTP (auth, REST) through to the real local cloud and
// answers /realtime/v1/websocket itself: it joins the channel properly, then sends garbage of
// every kind, and between the garbage valid frames that must still be delivered. The client
// runs in a process of its own, so that a crash, a hang or a lingering handle shows.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { WebSocketServer } from 'ws';
import { startDevcloud, SEED } from './helpers/devcloud.mjs';
import { spawnClient } from './helpers/child.mjs';

const WS = SEED.workspaces.websiteRevamp;
const CONV = SEED.conversations.acmeChat;
const TOPIC = `realtime:workspace:${WS}`;
// The addon's bound on one message from the server (src/realtime/mod.rs).
const MAX_MESSAGE_BYTES = 4 << 20;

let cloud;
before(async () => {
  cloud = await startDevcloud();
});
after(async () => {
  await cloud?.stop();
});

/** HTTP through to `target`; the realtime socket served here, joins answered as Realtime does. */
async function hostileServer(target) {
  const upstream = new URL(target);
  const server = createServer((req, res) => {
    // The first page of a conversation list (later pages go on from an id).
    if (req.method === 'GET' && req.url.startsWith('/rest/v1/conversations?') && !req.url.includes('id=gt.')) state.lists++;
    if (req.method === 'GET' && req.url.startsWith('/rest/v1/messages?')) {
      // Reads by id (`id=…`), and catch-ups (`conversation_id=…`): how many, how many at once.
      const q = new URL(req.url, 'http://x').searchParams;
      const kind = q.has('id') ? state.byId : state.pulls;
      kind.count++;
      kind.now++;
      kind.max = Math.max(kind.max, kind.now);
      if (q.has('id')) kind.ids.push(...(q.get('id').match(/[0-9a-f-]{36}/g) ?? []));
      res.on('close', () => kind.now--);
      if (q.has('id') && state.holdReads) return state.held.push(() => pass(req, res));
    }
    pass(req, res);
  });
  const pass = (req, res) => {
    const out = request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode, up.headers);
        up.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  };
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 << 20 });
  const reads = () => ({ count: 0, now: 0, max: 0, ids: [] });
  const state = { lists: 0, byId: reads(), pulls: reads(), holdReads: false, held: [], joins: 0, closes: [], sockets: 0, socket: null, join: null, frames: [], joinWaiters: [] };
  server.on('upgrade', (req, sock, head) => {
    if (!req.url.startsWith('/realtime/v1/websocket')) return sock.destroy();
    wss.handleUpgrade(req, sock, head, (ws) => {
      state.sockets++;
      state.socket = ws;
      ws.on("error", () => {});
      ws.on("close", (code, reason) => state.closes.push(`${code} ${reason}`));
      ws.on('message', (data, binary) => {
        if (binary) return;
        const f = JSON.parse(String(data));
        state.frames.push(f);
        const reply = (payload) =>
          ws.send(JSON.stringify({ topic: f.topic, event: 'phx_reply', payload, ref: f.ref }));
        if (f.event === 'heartbeat') reply({ status: 'ok', response: {} });
        else if (f.event === 'phx_leave') reply({ status: 'ok', response: {} });
        else if (f.event === 'phx_join') {
          state.joins++;
          const changes = f.payload.config.postgres_changes.map((c, i) => ({ ...c, id: 1000 + i }));
          state.join = { ref: f.ref, changes };
          reply({ status: 'ok', response: { postgres_changes: changes } });
          ws.send(JSON.stringify({ topic: f.topic, event: 'presence_state', payload: {}, ref: null }));
          for (const w of state.joinWaiters.splice(0)) w(state.join);
        }
      });
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    state,
    /** Resolves at the next join. */
    joined: () => new Promise((r) => state.joinWaiters.push(r)),
    /** Answers the reads by id held so far, and those to come. */
    release: () => {
      state.holdReads = false;
      for (const go of state.held.splice(0)) go();
    },
    send: (data) => new Promise((resolve, reject) => state.socket.send(data, (e) => (e ? reject(e) : resolve()))),
    close: async () => {
      for (const c of wss.clients) c.terminate();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

const frame = (event, payload, ref = null) => JSON.stringify({ topic: TOPIC, event, payload, ref });
const broadcast = (event, payload) => frame('broadcast', { type: 'broadcast', event, payload });
/** A postgres_changes frame for the binding of `table` in the current join. */
const change = (join, table, data) => {
  const id = join.changes.find((c) => c.table === table)?.id;
  return frame('postgres_changes', {
    ids: [id],
    data: { schema: 'public', table, commit_timestamp: new Date().toISOString(), columns: [], errors: null, ...data },
  });
};
const messageRow = (fields) => ({
  id: randomUUID(),
  conversation_id: CONV,
  role: 'user',
  content: 'x',
  sender_user_id: SEED.users.bob.id,
  metadata: {},
  created_at: new Date().toISOString(),
  ...fields,
});

/** Alice's client connected through a hostile stand-in for the cloud, and its first join;
 *  both are closed when test `t` ends. */
async function connectedThroughHostile(t) {
  const hostile = await hostileServer(cloud.url);
  t.after(() => hostile.close());
  const firstJoin = hostile.joined();
  const c = spawnClient({ url: hostile.url, anonKey: cloud.anonKey }, 'alice', WS);
  t.after(() => c.kill('SIGKILL'));
  const join = await firstJoin;
  await c.until((l) => l.event === 'cloud:realtime:connected', 20_000, 0, 'cloud:realtime:connected');
  return { hostile, c, join };
}

test('garbage from the realtime server is dropped; valid frames between it still arrive; destroy exits', async (t) => {
  const { hostile, c, join } = await connectedThroughHostile(t);
  assert.ok(join.changes.some((ch) => ch.table === 'messages'), 'the seed conversation is watched');

  const garbage = [
    // Not JSON, or JSON that is no Phoenix frame.
    '',
    'not json',
    '{',
    'null',
    '42',
    '"a string"',
    '[]',
    '[null,null]',
    JSON.stringify([null, null, TOPIC, 'broadcast', { type: 'broadcast', event: 'v2-array', payload: {} }]),
    JSON.stringify({ event: 'broadcast', payload: { type: 'broadcast', event: 'no-topic', payload: {} } }),
    JSON.stringify({ topic: TOPIC, payload: { type: 'broadcast', event: 'no-event', payload: {} } }),
    JSON.stringify({ topic: 7, event: 'broadcast', payload: { type: 'broadcast', event: 'topic-number', payload: {} } }),
    JSON.stringify({ topic: TOPIC, event: ['broadcast'], payload: {} }),
    JSON.stringify({ topic: TOPIC, event: 'broadcast', payload: {}, ref: { nested: true } }),
    // Unknown events, and known ones with payloads of the wrong shape.
    frame('whatever', { type: 'broadcast', event: 'unknown-event', payload: {} }),
    frame('phx_banana', null),
    frame('broadcast', 'a string'),
    frame('broadcast', { type: 'broadcast', payload: { missing: 'event' } }),
    frame('broadcast', { type: 'broadcast', event: 17, payload: {} }),
    broadcast('x'.repeat(1_000), { too: 'long a name' }),
    broadcast('', { empty: 'name' }),
    frame('system', [1, 2, 3]),
    // Replies nobody asked for (an unknown ref, none, a ref of the wrong type, a bad body).
    frame('phx_reply', { status: 'ok', response: {} }, '999999'),
    frame('phx_reply', { status: 'error', response: { reason: 'no' } }, '888888'),
    frame('phx_reply', { status: 'ok', response: {} }),
    frame('phx_reply', 'ok', '1'),
    frame('phx_reply', { response: {} }, join.ref),
    JSON.stringify({ topic: 'phoenix', event: 'phx_reply', payload: { status: 'ok', response: {} }, ref: '424242' }),
    JSON.stringify({ topic: 'realtime:someone-else', event: 'broadcast', payload: { type: 'broadcast', event: 'other-topic', payload: {} } }),
    // presence_diff and presence_state with malformed metas.
    frame('presence_diff', [1]),
    frame('presence_diff', { joins: [], leaves: 'none' }),
    frame('presence_diff', { joins: { evil: { metas: 'not a list' } }, leaves: {} }),
    frame('presence_diff', { joins: { evil: { metas: [{ user_id: 'no phx_ref' }] } }, leaves: {} }),
    frame('presence_diff', { joins: { evil: { metas: [{ phx_ref: 12, user_id: 'evil' }] } }, leaves: {} }),
    frame('presence_diff', { joins: { evil: { metas: [null] } }, leaves: {} }),
    frame('presence_diff', { joins: { evil: {} }, leaves: {} }),
    frame('presence_state', { evil: { metas: [{ phx_ref: null }] } }),
    frame('presence_state', 'everyone'),
    // postgres_changes of the wrong shape, or with rows of the wrong types.
    frame('postgres_changes', { ids: 'all', data: {} }),
    frame('postgres_changes', { ids: [join.changes[0].id] }),
    change(join, 'messages', { type: 'TRUNCATE', record: messageRow({ content: 'truncate' }) }),
    change(join, 'messages', { type: 'INSERT', record: [messageRow({ content: 'record as array' })] }),
    change(join, 'messages', { type: 'INSERT', record: 'a row' }),
    change(join, 'messages', { type: 'INSERT', record: messageRow({ id: undefined, content: 'no id' }) }),
    change(join, 'messages', { type: 'INSERT', record: messageRow({ id: 12345, content: 'numeric id' }) }),
    change(join, 'messages', { type: 'INSERT', record: messageRow({ id: 'not-a-uuid', content: 'bad id' }) }),
    change(join, 'messages', { type: 'INSERT', record: messageRow({ content: 12345 }) }),
    change(join, 'messages', { type: 'INSERT', record: messageRow({ content: { nested: 'object' } }) }),
    change(join, 'messages', { type: 'INSERT', record: messageRow({ role: undefined, content: 'no role' }) }),
    change(join, 'messages', { type: 'INSERT', record: messageRow({ role: 7, content: 'numeric role' }) }),
    change(join, 'messages', { type: 'INSERT', record: messageRow({ conversation_id: undefined, content: 'no conversation' }) }),
    change(join, 'messages', { type: 'INSERT', record: messageRow({ conversation_id: 'x', content: 'bad conversation' }) }),
    change(join, 'messages', { type: 'INSERT', record: messageRow({ conversation_id: randomUUID(), content: 'foreign conversation' }) }),
    change(join, 'workspaces', { type: 'UPDATE', record: 'not a row' }),
    change(join, 'conversations', { type: 'INSERT', record: { id: 42 } }),
    frame('postgres_changes', { ids: [123456789], data: { schema: 'public', table: 'messages', type: 'INSERT', record: messageRow({ content: 'unknown binding id' }) } }),
  ];
  const from = c.lines.length;
  for (const [i, g] of garbage.entries()) {
    await hostile.send(g).catch((e) => {
      throw new Error(`garbage #${i} (${g.slice(0, 80)}): ${e.message}; closes ${hostile.state.closes}; stderr:\n${c.stderr().slice(-3000)}`);
    });
  }
  // Binary garbage (vsn 1.0.0 has no binary frames), random and shaped like a v2 broadcast.
  await hostile.send(randomBytes(4096));
  await hostile.send(Buffer.concat([Buffer.from([4, TOPIC.length, 5, 0]), Buffer.from(`${TOPIC}hello{}`)]));

  // Valid frames after all that still arrive, in order, once.
  const valid = messageRow({ content: 'the valid row' });
  await hostile.send(change(join, 'messages', { type: 'INSERT', record: valid }));
  await hostile.send(
    frame('presence_diff', {
      joins: { [SEED.users.bob.id]: { metas: [{ phx_ref: 'bob-1', user_id: SEED.users.bob.id, status: 'active', display_name: 'Bob' }] } },
      leaves: {},
    }),
  );
  await hostile.send(broadcast('valid-1', { n: 1 }));
  await c.until((l) => l.event === 'cloud:broadcast:valid-1', 10_000, from, 'cloud:broadcast:valid-1');

  const after = c.lines.slice(from).filter((l) => l.event);
  const messages = after.filter((l) => l.event === 'cloud:message:received').map((l) => l.payload);
  assert.deepEqual(messages.map((m) => m.content), ['the valid row'], 'no message from a malformed row');
  assert.equal(messages[0].id, valid.id);
  const presence = after.filter((l) => l.event === 'cloud:presence:updated').map((l) => l.payload);
  assert.deepEqual(presence.map((p) => p.members.map((m) => m.userId)), [[SEED.users.bob.id]], 'no member from a malformed diff');
  const broadcasts = after.filter((l) => l.event.startsWith('cloud:broadcast:')).map((l) => l.event);
  assert.deepEqual(broadcasts, ['cloud:broadcast:valid-1'], 'no broadcast from a malformed frame');
  assert.ok(!after.some((l) => l.event === 'cloud:realtime:disconnected'), 'garbage alone does not drop the socket');
  assert.equal(hostile.state.sockets, 1);
  assert.equal(typeof (await c.ask('status', 'status')), 'object');

  // A message beyond the client's bound: the socket is given up (the frame cannot be read
  // past), the client reconnects and rejoins, and works as before.
  const rejoined = hostile.joined();
  const mark = c.lines.length;
  // The client may hang up before the whole message is written.
  await hostile.send(broadcast('huge', { blob: 'x'.repeat(MAX_MESSAGE_BYTES + 1024) })).catch(() => {});
  await c.until((l) => l.event === 'cloud:realtime:disconnected', 10_000, mark, 'cloud:realtime:disconnected');
  await rejoined;
  await c.until((l) => l.event === 'cloud:realtime:connected', 20_000, mark, 'cloud:realtime:connected again');
  await hostile.send(broadcast('after-huge', { n: 2 }));
  const got = await c.until((l) => l.event === 'cloud:broadcast:after-huge', 10_000, mark, 'cloud:broadcast:after-huge');
  assert.deepEqual(got.payload.n, 2);
  assert.ok(!c.lines.some((l) => l.event === 'cloud:broadcast:huge'));
  assert.equal(hostile.state.sockets, 2);

  // Still healthy: destroy() lets the process exit by itself, at once.
  const asked = Date.now();
  c.send('destroy');
  const exit = await Promise.race([c.exited, new Promise((r) => setTimeout(() => r(null), 10_000))]);
  assert.ok(exit, `still running 10 s after destroy(); stderr:\n${c.stderr().slice(-2000)}`);
  assert.equal(exit.code, 0, c.stderr());
  assert.ok(c.lines.some((l) => 'destroyed' in l));
  t.diagnostic(`exited ${exit.at - asked} ms after destroy was asked`);
});

test('a flood of conversation changes the client cannot place costs a list a second at most', async (t) => {
  const { hostile, c, join } = await connectedThroughHostile(t);

  // A conversation change whose record names no workspace: the client lists the
  // conversations to learn where it is. A server sends one after another.
  const unplaceable = change(join, 'conversations', { type: 'UPDATE', record: { id: CONV, title: 'x' }, old_record: {} });
  const lists = hostile.state.lists;
  const start = Date.now();
  for (let i = 0; i < 150; i++) {
    await hostile.send(unplaceable);
    await new Promise((r) => setTimeout(r, 20));
  }
  // Lists that began by now: one at once, then one a second at most (src/realtime/lists.rs).
  const made = hostile.state.lists - lists;
  const elapsed = Date.now() - start;
  t.diagnostic(`${made} lists in ${elapsed} ms for 150 changes`);
  assert.ok(made >= 1, 'the changes are listed');
  assert.ok(made <= Math.floor(elapsed / 1000) + 1, `${made} lists in ${elapsed} ms`);
  assert.equal(hostile.state.sockets, 1);
  assert.ok(!c.lines.some((l) => l.event === 'cloud:conversation:deleted'), 'nothing is deleted');
});

/** The changes of a message INSERT sent without its row (Realtime's `Error 413`). */
const tooLarge = (join, row) =>
  change(join, 'messages', {
    type: 'INSERT',
    record: { id: row.id, conversation_id: row.conversation_id, created_at: row.created_at },
    errors: ['Error 413: Payload Too Large'],
  });

test('a flood of messages sent without their rows costs a bounded number of reads, each row once', async (t) => {
  const { hostile, c, join } = await connectedThroughHostile(t);

  // Three real rows, written by bob; their changes come without them, among a flood of
  // changes of rows that do not exist. Reads by id are held until the flood is sent, so
  // every read the flood could start is under way at once.
  const real = [1, 2, 3].map((i) => messageRow({ content: `real ${i}` }));
  await cloud.serviceRest('messages', { method: 'POST', body: real });
  hostile.state.holdReads = true;
  const from = c.lines.length;
  const FLOOD = 2000;
  const frames = [];
  for (let i = 0; i < FLOOD; i++) frames.push(tooLarge(join, messageRow({ content: undefined })));
  // One at the start (read at once), one in the middle (waits), one at the end (beyond
  // what may wait: caught up instead), each sent twice; the first also whole, live.
  frames.splice(0, 0, tooLarge(join, real[0]), tooLarge(join, real[0]));
  frames.splice(FLOOD / 2, 0, tooLarge(join, real[1]), tooLarge(join, real[1]));
  frames.push(tooLarge(join, real[2]), tooLarge(join, real[2]));
  frames.push(change(join, 'messages', { type: 'INSERT', record: real[0] }));
  for (const f of frames) await hostile.send(f);
  // Every frame read: a broadcast after them arrives after they were handled.
  await hostile.send(broadcast('flood-sent', {}));
  await c.until((l) => l.event === 'cloud:broadcast:flood-sent', 20_000, from, 'cloud:broadcast:flood-sent');
  const heldAtOnce = hostile.state.byId.max;
  hostile.release();

  for (const r of real) {
    await c.until((l) => l.event === 'cloud:message:received' && l.payload.id === r.id, 20_000, from, `message ${r.content}`);
  }
  // A status round trip: whatever the handling of those reads delivered is printed by now.
  await c.ask('status', 'status');
  const received = c.lines.slice(from).filter((l) => l.event === 'cloud:message:received').map((l) => l.payload.id);
  for (const r of real) assert.equal(received.filter((id) => id === r.id).length, 1, `${r.content} once`);
  assert.equal(received.length, real.length, 'no row that does not exist');

  const { byId, pulls } = hostile.state;
  t.diagnostic(`${byId.count} reads by id (${byId.ids.length} ids, ${heldAtOnce} held at once), ${pulls.count} catch-up pages (${pulls.max} at once) for ${frames.length} changes`);
  assert.ok(heldAtOnce <= 2, `${heldAtOnce} reads by id under way at once`);
  assert.ok(byId.max <= 2, `${byId.max} reads by id at once`);
  // Merged: every id asked for at most once, in reads of up to 50.
  assert.equal(new Set(byId.ids).size, byId.ids.length, 'no id read twice');
  assert.ok(byId.count <= Math.ceil(byId.ids.length / 50) + 2, `${byId.count} reads for ${byId.ids.length} ids`);
  // The queue is bounded: the rest of the flood is caught up, not read by id.
  assert.ok(byId.ids.length <= 500 + 2, `${byId.ids.length} ids read by id`);
  assert.equal(hostile.state.sockets, 1);
});

test('a flood of new conversations costs a rejoin a spacing at most', async (t) => {
  const connected = await connectedThroughHostile(t);
  const { hostile, c } = connected;
  let { join } = connected;

  // The server announces one new conversation of the workspace after another.
  const joins = hostile.state.joins;
  const start = Date.now();
  const FLOOD = 300;
  for (let i = 0; i < FLOOD; i++) {
    // Each change is sent for the bindings of the join in place when it is sent.
    join = hostile.state.join;
    await hostile.send(change(join, 'conversations', { type: 'INSERT', record: { id: randomUUID(), workspace_id: WS, title: `c${i}` } }));
    await new Promise((r) => setTimeout(r, 10));
  }
  const made = hostile.state.joins - joins;
  const elapsed = Date.now() - start;
  t.diagnostic(`${made} rejoins in ${elapsed} ms for ${FLOOD} new conversations; ${hostile.state.pulls.count} catch-up pages, ${hostile.state.pulls.max} at once`);
  assert.ok(made >= 1, 'the new conversations are joined');
  // One at once, then one a second at most (src/realtime/rejoins.rs).
  assert.ok(made <= Math.floor(elapsed / 1000) + 1, `${made} rejoins in ${elapsed} ms`);
  // Catch-ups after each rejoin (one per watched conversation) run a few at a time.
  assert.ok(hostile.state.pulls.max <= 4, `${hostile.state.pulls.max} catch-up pages at once`);

  // Still working: a message of the seed conversation arrives, once. A change that comes
  // while a rejoin owed since the flood is under way is not the new join's: sent again.
  const mark = c.lines.length;
  const row = messageRow({ content: 'after the flood' });
  const got = (l) => l.event === 'cloud:message:received' && l.payload.id === row.id;
  for (let i = 0; i < 5 && !c.lines.slice(mark).some(got); i++) {
    await hostile.send(change(hostile.state.join, 'messages', { type: 'INSERT', record: row }));
    await c.until(got, 3_000, mark, 'the message after the flood').catch(() => {});
  }
  await c.ask('status', 'status');
  assert.equal(c.lines.slice(mark).filter(got).length, 1, 'the message after the flood, once');
  assert.equal(hostile.state.sockets, 1);
});
