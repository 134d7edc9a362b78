// Realtime (/realtime/v1) as the official supabase-js client sees it, plus raw sockets for the
// wire details of realtime-protocol.md: serializers 1.0.0 and 2.0.0, joins, heartbeats,
// postgres_changes under RLS, presence, broadcast (binary kind 3/4 and REST) and tokens.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@supabase/supabase-js';

import { DEMO_PASSWORD, SEED, startDevcloud } from '../../__test__/helpers/devcloud.mjs';

import {
  Raw, WS, client, insertMessage, signedIn, sleep, subscribed, suiteCloud, until, uuid, wsUrl,
} from './realtime-helpers.mjs';

const { users, conversations: convs, workspaces: ws } = SEED;

/** Status of a WebSocket upgrade request (101 when accepted). */
function upgradeStatus(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url.replace(/^ws/, 'http'), {
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': Buffer.from(uuid().slice(0, 16)).toString('base64'),
        ...headers,
      },
    });
    req.on('response', async (res) => {
      let body = '';
      for await (const c of res) body += c;
      resolve({ status: res.statusCode, body });
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('realtime', () => {
  const suite = suiteCloud();
  const clients = suite.clients;
  let cloud;
  before(() => {
    cloud = suite.cloud;
  });
  const track = (x) => {
    clients.push(x.sb ?? x);
    return x;
  };

  test('socket auth: no key 401, a bad key 403, x-api-key or apikey accepted', async () => {
    const base = `${cloud.url}/realtime/v1/websocket?vsn=2.0.0`;
    const missing = await upgradeStatus(base);
    assert.equal(missing.status, 401);
    assert.deepEqual(JSON.parse(missing.body), { error: 'API key is missing' });
    assert.equal((await upgradeStatus(`${base}&apikey=not-a-jwt`)).status, 403);
    assert.equal((await upgradeStatus(base, { 'x-api-key': cloud.anonKey })).status, 101);
    assert.equal((await upgradeStatus(`${base}&apikey=${cloud.anonKey}`)).status, 101);
  });

  test('vsn 1.0.0: JSON objects, heartbeat, join reply without join_ref', async () => {
    const raw = await Raw.open(wsUrl(cloud, cloud.anonKey, '1.0.0'));
    raw.send({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: '1' });
    const hb = await raw.next((f) => f.ref === '1');
    assert.deepEqual(hb, { topic: 'phoenix', event: 'phx_reply', payload: { status: 'ok', response: {} }, ref: '1' });
    raw.send({ topic: 'realtime:v1room', event: 'phx_join', payload: { config: {} }, ref: '2', join_ref: '2' });
    const join = await raw.next((f) => f.ref === '2');
    assert.equal(join.event, 'phx_reply');
    assert.deepEqual(join.payload, { status: 'ok', response: { postgres_changes: [] } });
    assert.ok(!('join_ref' in join));
    raw.send({ topic: 'realtime:v1room', event: 'phx_leave', payload: {}, ref: '3', join_ref: '2' });
    assert.equal((await raw.next((f) => f.ref === '3')).payload.status, 'ok');
    const close = await raw.next((f) => f.event === 'phx_close');
    assert.equal(close.ref, '2');
    raw.close();
  });

  test('vsn 2.0.0: arrays, unmatched topic, join echoes postgres_changes with ids, then system', async () => {
    const raw = await Raw.open(wsUrl(cloud, cloud.anonKey, '2.0.0'));
    raw.send([null, '1', 'phoenix', 'heartbeat', {}]);
    assert.deepEqual(await raw.next((f) => f[1] === '1'), [null, '1', 'phoenix', 'phx_reply', { status: 'ok', response: {} }]);
    raw.send(['5', '5', 'room-without-prefix', 'phx_join', {}]);
    assert.deepEqual((await raw.next((f) => f[1] === '5'))[4], { status: 'error', response: { reason: 'unmatched topic' } });
    raw.send([null, '6', 'realtime:nowhere', 'broadcast', { type: 'broadcast', event: 'x', payload: {} }]);
    assert.equal((await raw.next((f) => f[1] === '6'))[4].response.reason, 'unmatched topic');
    raw.send([null, '6b', 'phoenix', 'access_token', { access_token: cloud.anonKey }]);
    assert.equal((await raw.next((f) => f[1] === '6b'))[4].response.reason, 'unmatched topic');

    const pg = [
      { event: 'INSERT', schema: 'public', table: 'messages', filter: `conversation_id=eq.${convs.acmeChat}` },
      { event: '*', schema: 'public', table: 'workspaces' },
    ];
    raw.send(['7', '7', 'realtime:room1', 'phx_join', {
      config: { broadcast: { ack: false, self: false }, presence: { key: '', enabled: false }, postgres_changes: pg, private: false },
      access_token: cloud.anonKey,
    }]);
    const reply = await raw.next((f) => f[1] === '7');
    assert.equal(reply[0], '7');
    assert.equal(reply[3], 'phx_reply');
    assert.equal(reply[4].status, 'ok');
    const echoed = reply[4].response.postgres_changes;
    assert.equal(echoed.length, 2);
    echoed.forEach((e, i) => {
      const { id, ...rest } = e;
      assert.deepEqual(rest, pg[i]);
      assert.ok(Number.isInteger(id));
    });
    const sys = await raw.next((f) => f[3] === 'system');
    assert.deepEqual(sys, ['7', null, 'realtime:room1', 'system',
      { extension: 'postgres_changes', status: 'ok', message: 'Subscribed to PostgreSQL', channel: 'room1' }]);

    // A bad filter: the join is ok, and a system error says why.
    raw.send(['8', '8', 'realtime:room2', 'phx_join', { config: { postgres_changes: [{ event: '*', schema: 'public', table: 'messages', filter: 'id=like.x' }] } }]);
    assert.equal((await raw.next((f) => f[1] === '8'))[4].status, 'ok');
    const err = await raw.next((f) => f[3] === 'system' && f[2] === 'realtime:room2');
    assert.equal(err[4].status, 'error');
    assert.match(err[4].message, /Error parsing `filter` params/);
    // A table without capture.
    raw.send(['9', '9', 'realtime:room3', 'phx_join', { config: { postgres_changes: [{ event: '*', schema: 'public', table: 'ai_usage' }] } }]);
    await raw.next((f) => f[1] === '9');
    assert.match((await raw.next((f) => f[3] === 'system' && f[2] === 'realtime:room3'))[4].message, /Unable to subscribe/);
    // A second join of the same topic closes the first (Phoenix), and a stale join_ref is ignored.
    raw.send(['10', '10', 'realtime:room1', 'phx_join', { config: {} }]);
    assert.deepEqual(await raw.next((f) => f[3] === 'phx_close'), ['7', '7', 'realtime:room1', 'phx_close', {}]);
    assert.equal((await raw.next((f) => f[1] === '10'))[4].status, 'ok');
    raw.send(['7', '11', 'realtime:room1', 'phx_leave', {}]);
    await sleep(200);
    assert.ok(!raw.frames.some((f) => f[1] === '11'));
    raw.close();
  });

  test('a committed INSERT on messages reaches alice (Acme) but not carol (Globex)', async () => {
    const alice = track(await signedIn(cloud, users.alice.email));
    const carol = track(await signedIn(cloud, users.carol.email));
    const got = { alice: [], carol: [] };
    const sub = (who, sb) =>
      subscribed(sb.channel(`msgs-${who}`).on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages' },
        (p) => got[who].push(p)));
    await sub('alice', alice.sb);
    await sub('carol', carol.sb);

    const acme = await insertMessage(cloud, convs.acmeChat, 'hello acme');
    const globex = await insertMessage(cloud, convs.globexChat, 'hello globex');
    await until(() => got.alice.length >= 1 && got.carol.length >= 1, 5000, 'both deliveries');
    await sleep(300);
    assert.deepEqual(got.alice.map((p) => p.new.id), [acme.id]);
    assert.deepEqual(got.carol.map((p) => p.new.id), [globex.id]);
    const p = got.alice[0];
    assert.equal(p.eventType, 'INSERT');
    assert.equal(p.schema, 'public');
    assert.equal(p.table, 'messages');
    assert.equal(p.new.content, 'hello acme');
    assert.deepEqual(p.old, {});
    assert.match(p.commit_timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(p.errors, null);
  });

  // Supabase's `apply_rls` checks no policy on a DELETE (the row is gone) and sends only the
  // primary key of a row of an RLS table; filters see the replica identity, the primary key
  // here. So a cascaded delete reaches every subscriber of the table with no filter or a
  // primary-key filter, other organizations' included, and a filter on another column never
  // passes.
  test('a DELETE is not checked against policies: cascades reach every unfiltered subscriber, as primary keys', async () => {
    const conv = (await cloud.serviceRest('conversations', {
      method: 'POST', body: { workspace_id: ws.websiteRevamp, name: `cascade-${uuid()}` },
    }))[0];
    const [first, second, marker] = [uuid(), uuid(), uuid()];
    const alice = track(await signedIn(cloud, users.alice.email));
    const carol = track(await signedIn(cloud, users.carol.email));
    const got = { alice: [], carol: [], byPk: [], byConversation: [] };
    const del = { event: 'DELETE', schema: 'public', table: 'messages' };
    await subscribed(alice.sb.channel('del-alice')
      .on('postgres_changes', del, (p) => got.alice.push(p.old))
      .on('postgres_changes', { ...del, filter: `id=eq.${first}` }, (p) => got.byPk.push(p.old.id))
      .on('postgres_changes', { ...del, filter: `conversation_id=eq.${conv.id}` }, (p) => got.byConversation.push(p.old.id)));
    await subscribed(carol.sb.channel('del-carol').on('postgres_changes', del, (p) => got.carol.push(p.old.id)));

    await insertMessage(cloud, conv.id, 'first', first);
    await insertMessage(cloud, conv.id, 'second', second);
    await cloud.serviceRest(`conversations?id=eq.${conv.id}`, { method: 'DELETE' });
    // A later delete: changes reach a channel in commit order, so once it is here, every frame
    // of the cascade that was going to come has come.
    await insertMessage(cloud, convs.globexChat, 'marker', marker);
    await cloud.serviceRest(`messages?id=eq.${marker}`, { method: 'DELETE' });
    await until(() => got.alice.some((o) => o.id === marker) && got.carol.includes(marker), 5000, 'the marker delete');

    const ids = [first, second, marker].sort();
    assert.deepEqual(got.alice.map((o) => Object.keys(o)), [['id'], ['id'], ['id']]);
    assert.deepEqual(got.alice.map((o) => o.id).sort(), ids);
    assert.deepEqual(got.carol.sort(), ids);
    assert.deepEqual(got.byPk, [first]);
    assert.deepEqual(got.byConversation, []);
  });

  test('an anonymous subscriber receives nothing of the RLS tables', async () => {
    const anon = track(client(cloud));
    const got = [];
    await subscribed(anon.channel('anon-msgs').on('postgres_changes', { event: '*', schema: 'public', table: 'messages' }, (p) => got.push(p)));
    const service = track(client(cloud));
    service.realtime.setAuth(cloud.serviceRoleKey);
    const seen = [];
    await subscribed(service.channel('service-msgs').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages' }, (p) => seen.push(p)));
    const row = await insertMessage(cloud, convs.acmeChat, 'for members only');
    await until(() => seen.some((p) => p.new.id === row.id), 5000, 'the service-role delivery');
    await sleep(300);
    assert.deepEqual(got, []);
  });

  test('filters: eq, neq, in, gt on the record', async () => {
    const { sb } = track(await signedIn(cloud, users.alice.email));
    const other = (await cloud.serviceRest('conversations', {
      method: 'POST', body: { workspace_id: ws.dataPipeline, name: `other-${uuid()}` },
    }))[0];
    const got = {};
    let ch = sb.channel('filters');
    const filters = {
      eq: `conversation_id=eq.${convs.acmeChat}`,
      neq: `conversation_id=neq.${convs.acmeChat}`,
      in: `conversation_id=in.(${other.id},${uuid()})`,
      content: 'content=gt.m',
    };
    for (const [name, filter] of Object.entries(filters)) {
      got[name] = [];
      ch = ch.on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages', filter }, (p) => got[name].push(p.new.content));
    }
    await subscribed(ch);
    await insertMessage(cloud, convs.acmeChat, 'a-in-chat');
    await insertMessage(cloud, other.id, 'z-in-other');
    await until(() => got.eq.length && got.neq.length && got.in.length && got.content.length, 5000, 'filtered deliveries');
    await sleep(300);
    assert.deepEqual(got.eq, ['a-in-chat']);
    assert.deepEqual(got.neq, ['z-in-other']);
    assert.deepEqual(got.in, ['z-in-other']);
    assert.deepEqual(got.content, ['z-in-other']);
  });

  test('UPDATE and DELETE carry old_record (the primary key on an RLS table)', async () => {
    const { sb } = track(await signedIn(cloud, users.alice.email));
    const got = [];
    await subscribed(sb.channel('upd').on('postgres_changes', { event: '*', schema: 'public', table: 'workspace_files' }, (p) => got.push(p)));
    const file = (await cloud.serviceRest('workspace_files', {
      method: 'POST', body: { workspace_id: ws.websiteRevamp, file_path: `rt-${uuid()}.md`, file_size: 1 },
    }))[0];
    await cloud.serviceRest(`workspace_files?id=eq.${file.id}`, { method: 'PATCH', body: { file_size: 2 } });
    await cloud.serviceRest(`workspace_files?id=eq.${file.id}`, { method: 'DELETE' });
    await until(() => got.length >= 3, 5000, 'three changes');
    assert.deepEqual(got.map((p) => p.eventType), ['INSERT', 'UPDATE', 'DELETE']);
    assert.equal(got[1].new.file_size, 2);
    assert.deepEqual(got[1].old, { id: file.id });
    assert.deepEqual(got[2].old, { id: file.id });
    assert.deepEqual(got[2].new, {});
  });

  test('changes arrive in commit order, a bulk insert in statement order', async () => {
    const { sb } = track(await signedIn(cloud, users.alice.email));
    const got = [];
    await subscribed(sb.channel('order').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages', filter: `conversation_id=eq.${convs.acmeChat}` }, (p) => got.push(p.new.content)));
    const want = [];
    for (let i = 0; i < 10; i++) {
      want.push(`seq-${i}`);
      await insertMessage(cloud, convs.acmeChat, `seq-${i}`);
    }
    const bulk = Array.from({ length: 50 }, (_, i) => ({ conversation_id: convs.acmeChat, role: 'user', content: `bulk-${i}` }));
    await cloud.serviceRest('messages', { method: 'POST', body: bulk, headers: { Prefer: 'return=minimal' } });
    want.push(...bulk.map((m) => m.content));
    await until(() => got.length >= want.length, 10000, 'all rows');
    assert.deepEqual(got, want);
  });

  test('raw v2 frame: ids, data.type, columns, record', async () => {
    const raw = await Raw.open(wsUrl(cloud, cloud.serviceRoleKey, '2.0.0'));
    raw.send(['1', '1', 'realtime:rawpg', 'phx_join', { config: { postgres_changes: [{ event: 'INSERT', schema: 'public', table: 'messages' }] } }]);
    const id = (await raw.next((f) => f[1] === '1'))[4].response.postgres_changes[0].id;
    await raw.next((f) => f[3] === 'system');
    const row = await insertMessage(cloud, convs.acmeChat, 'raw');
    const f = await raw.next((x) => x[3] === 'postgres_changes');
    assert.equal(f[0], null);
    assert.equal(f[1], null);
    assert.equal(f[2], 'realtime:rawpg');
    assert.deepEqual(f[4].ids, [id]);
    const d = f[4].data;
    assert.equal(d.type, 'INSERT');
    assert.equal(d.record.id, row.id);
    assert.deepEqual(d.columns.find((c) => c.name === 'id'), { name: 'id', type: 'uuid' });
    assert.deepEqual(d.columns.find((c) => c.name === 'metadata'), { name: 'metadata', type: 'jsonb' });
    assert.ok(!('old_record' in d));
    raw.close();
  });

  test('presence: state after join, diffs, a leave when a socket drops', async () => {
    const alice = track(await signedIn(cloud, users.alice.email));
    const chA = alice.sb.channel('presence-room', { config: { presence: { key: users.alice.id } } });
    let syncs = 0;
    chA.on('presence', { event: 'sync' }, () => syncs++);
    await subscribed(chA);
    await chA.track({ display_name: 'Alice' });

    // Bob joins from a raw v2 socket.
    const bob = await Raw.open(wsUrl(cloud, cloud.anonKey, '2.0.0'));
    bob.send(['1', '1', 'realtime:presence-room', 'phx_join', { config: { presence: { key: users.bob.id, enabled: true } } }]);
    await bob.next((f) => f[1] === '1');
    const state = await bob.next((f) => f[3] === 'presence_state');
    assert.equal(state[0], '1');
    assert.equal(state[4][users.alice.id].metas[0].display_name, 'Alice');
    assert.ok(state[4][users.alice.id].metas[0].phx_ref);
    bob.send(['1', '2', 'realtime:presence-room', 'presence', { type: 'presence', event: 'track', payload: { display_name: 'Bob' } }]);
    assert.equal((await bob.next((f) => f[1] === '2'))[4].status, 'ok');
    const diff = await bob.next((f) => f[3] === 'presence_diff');
    assert.equal(diff[4].joins[users.bob.id].metas[0].display_name, 'Bob');
    await until(() => chA.presenceState()[users.bob.id], 5000, 'bob in alice\'s state');
    bob.send(['1', '3', 'realtime:presence-room', 'presence', { type: 'presence', event: 'track', payload: 'not a map' }]);
    assert.deepEqual((await bob.next((f) => f[1] === '3'))[4], { status: 'error', response: { reason: 'Presence track payload must be a map' } });

    // phx_leave is a leave; so is a dropped socket.
    bob.send(['1', '4', 'realtime:presence-room', 'phx_leave', {}]);
    await until(() => !chA.presenceState()[users.bob.id], 5000, 'bob leaving the channel');
    bob.send(['5', '5', 'realtime:presence-room', 'phx_join', { config: { presence: { key: users.bob.id, enabled: true } } }]);
    await bob.next((f) => f[1] === '5');
    bob.send(['5', '6', 'realtime:presence-room', 'presence', { type: 'presence', event: 'track', payload: { display_name: 'Bob' } }]);
    await until(() => chA.presenceState()[users.bob.id], 5000, 'bob back');
    bob.close();
    await until(() => !chA.presenceState()[users.bob.id], 5000, 'bob leaving');
    assert.ok(chA.presenceState()[users.alice.id]);
    assert.ok(syncs >= 2);
  });

  test('broadcast: binary v2 to others and self, ack, JSON to v1, REST', async () => {
    const a = track(client(cloud));
    const b = track(client(cloud));
    const gotA = [];
    const gotB = [];
    const chA = a.channel('bc', { config: { broadcast: { self: true, ack: true } } }).on('broadcast', { event: 'cursor' }, (m) => gotA.push(m.payload));
    const chB = b.channel('bc').on('broadcast', { event: 'cursor' }, (m) => gotB.push(m.payload));
    await subscribed(chA);
    await subscribed(chB);
    const v1 = await Raw.open(wsUrl(cloud, cloud.anonKey, '1.0.0'));
    v1.send({ topic: 'realtime:bc', event: 'phx_join', payload: { config: {} }, ref: '1', join_ref: '1' });
    await v1.next((f) => f.ref === '1');

    assert.equal(await chA.send({ type: 'broadcast', event: 'cursor', payload: { x: 1 } }), 'ok');
    await until(() => gotA.length && gotB.length, 5000, 'broadcast delivery');
    assert.deepEqual(gotA, [{ x: 1 }]);
    assert.deepEqual(gotB, [{ x: 1 }]);
    const j = await v1.next((f) => f.event === 'broadcast');
    assert.deepEqual(j.payload, { type: 'broadcast', event: 'cursor', payload: { x: 1 } });

    // Without self, the sender does not hear itself.
    await chB.send({ type: 'broadcast', event: 'cursor', payload: { x: 2 } });
    await until(() => gotA.length === 2, 5000, 'b to a');
    await sleep(200);
    assert.deepEqual(gotB, [{ x: 1 }]);

    const r = await fetch(`${cloud.url}/realtime/v1/api/broadcast`, {
      method: 'POST',
      headers: { apikey: cloud.anonKey, 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ topic: 'bc', event: 'cursor', payload: { x: 3 }, private: false }] }),
    });
    assert.equal(r.status, 202);
    assert.equal(await r.text(), '');
    await until(() => gotB.length === 2, 5000, 'REST broadcast');
    assert.deepEqual(gotB[1], { x: 3 });
    assert.equal((await chB.httpSend('cursor', { x: 4 })).success, true);
    await until(() => gotA.some((p) => p.x === 4), 5000, 'httpSend');
    const noAuth = await fetch(`${cloud.url}/realtime/v1/api/broadcast`, { method: 'POST', body: '{}' });
    assert.equal(noAuth.status, 401);
    v1.close();
  });

  test('binary kind 3 in, kind 4 out on a raw v2 socket', async () => {
    const r1 = await Raw.open(wsUrl(cloud, cloud.anonKey, '2.0.0'));
    const r2 = await Raw.open(wsUrl(cloud, cloud.anonKey, '2.0.0'));
    for (const r of [r1, r2]) {
      r.send(['1', '1', 'realtime:bin', 'phx_join', { config: { broadcast: { ack: true } } }]);
      await r.next((f) => f[1] === '1');
    }
    const body = new TextEncoder().encode('{"x":2}');
    const head = [3, 1, 1, 12, 6, 0, 1];
    const frame = new Uint8Array([...head, ...new TextEncoder().encode('12realtime:bincursor'), ...body]);
    r1.send(frame);
    assert.deepEqual((await r1.next((f) => f[1] === '2'))[4], { status: 'ok', response: {} });
    const out = await r2.next((f) => f instanceof Uint8Array);
    const want = new Uint8Array([4, 12, 6, 0, 1, ...new TextEncoder().encode('realtime:bincursor'), ...body]);
    assert.deepEqual(Array.from(out), Array.from(want));
    r1.close();
    r2.close();
  });

  test('a join with a bad token gets the error reply (after Realtime\'s pause)', async () => {
    const raw = await Raw.open(wsUrl(cloud, cloud.anonKey, '2.0.0'));
    raw.send(['1', '1', 'realtime:bad', 'phx_join', { config: {}, access_token: 'not.a.jwt' }]);
    const reply = await raw.next((f) => f[1] === '1', 8000);
    assert.equal(reply[4].status, 'error');
    assert.match(reply[4].response.reason, /^MalformedJWT: /);
    raw.close();
  });

  test('private channels: anon is refused (after the pause), a signed-in token joins; replication_ready', async () => {
    const { token } = await signedIn(cloud, users.alice.email);
    const raw = await Raw.open(wsUrl(cloud, cloud.anonKey, '2.0.0'));
    raw.send(['1', '1', 'realtime:secret', 'phx_join', { config: { private: true } }]);
    raw.send(['2', '2', 'realtime:secret2', 'phx_join', { config: { private: true, broadcast: { replication_ready: true } }, access_token: token }]);
    assert.equal((await raw.next((f) => f[1] === '2'))[4].status, 'ok');
    assert.deepEqual((await raw.next((f) => f[3] === 'system' && f[2] === 'realtime:secret2'))[4],
      { extension: 'system', status: 'ok', message: 'Replication connection established', channel: 'secret2' });
    const refused = await raw.next((f) => f[1] === '1', 8000);
    assert.equal(refused[4].status, 'error');
    assert.equal(refused[4].response.reason, 'Unauthorized: You do not have permissions to read from this Channel topic: secret');
    raw.close();
  });

  test('stats count sockets, channels and frames', async () => {
    const s = await cloud.stats();
    for (const k of ['connections', 'sockets', 'channels', 'framesIn', 'framesOut', 'lastChangeLatencyMs']) {
      assert.equal(typeof s.realtime[k], 'number', k);
    }
    assert.ok(s.realtime.framesIn > 0 && s.realtime.framesOut > 0);
  });
});

describe('realtime tokens', () => {
  let cloud;
  before(async () => {
    cloud = await startDevcloud(['--jwt-exp', '3']);
  });
  after(async () => {
    await cloud?.stop();
  });

  test('an expired token closes the channel with a system error; access_token renews it', async () => {
    const sb = createClient(cloud.url, cloud.anonKey, { auth: { persistSession: false, autoRefreshToken: false } , realtime: { transport: WS } });
    const { data } = await sb.auth.signInWithPassword({ email: users.alice.email, password: DEMO_PASSWORD });
    const token = data.session.access_token;

    const raw = await Raw.open(wsUrl(cloud, cloud.anonKey, '2.0.0'));
    raw.send(['1', '1', 'realtime:exp', 'phx_join', { config: { postgres_changes: [{ event: '*', schema: 'public', table: 'messages' }] }, access_token: token }]);
    assert.equal((await raw.next((f) => f[1] === '1'))[4].status, 'ok');
    await raw.next((f) => f[3] === 'system');
    // A second channel renews its token before expiry: it keeps going.
    raw.send(['2', '2', 'realtime:renewed', 'phx_join', { config: {}, access_token: token }]);
    await raw.next((f) => f[1] === '2');
    const { data: fresh } = await sb.auth.refreshSession({ refresh_token: data.session.refresh_token });
    await sleep(1100); // a new `exp` second
    const { data: fresher } = await sb.auth.refreshSession({ refresh_token: fresh.session.refresh_token });
    raw.send(['2', '3', 'realtime:renewed', 'access_token', { access_token: fresher.session.access_token }]);

    const sys = await raw.next((f) => f[3] === 'system' && f[2] === 'realtime:exp', 6000);
    assert.deepEqual(sys, ['1', null, 'realtime:exp', 'system', { extension: 'system', status: 'error', message: 'Token has expired 0 seconds ago', channel: 'exp' }]);
    assert.deepEqual(await raw.next((f) => f[3] === 'phx_close' && f[2] === 'realtime:exp'), ['1', '1', 'realtime:exp', 'phx_close', {}]);
    // No reply to access_token, and the renewed channel is still joined.
    await sleep(300);
    assert.ok(!raw.frames.some((f) => f[1] === '3'));
    assert.ok(!raw.frames.some((f) => f[2] === 'realtime:renewed' && f[3] === 'phx_close'));
    // An expired token at join: InvalidJWTToken (a token is still good in its `exp` second).
    await sleep(1100);
    raw.send(['4', '4', 'realtime:late', 'phx_join', { config: {}, access_token: token }]);
    const late = await raw.next((f) => f[1] === '4', 8000);
    assert.match(late[4].response.reason, /^InvalidJWTToken: Token has expired \d+ seconds ago$/);
    raw.close();
  });
});

describe('realtime RLS identities', () => {
  const suite = suiteCloud();

  // The policies read only `role`, `sub` and `email` (through auth.uid(), auth.role() and
  // auth.email()), so sessions of one user differ only in claims no policy can see.
  test('sessions of one user share one RLS check per batch; other users keep their own', async () => {
    const sessions = { alice: 3, bob: 2, carol: 1 };
    const got = {};
    for (const [who, n] of Object.entries(sessions)) {
      for (let i = 0; i < n; i++) {
        const { sb } = await signedIn(suite.cloud, users[who].email);
        suite.clients.push(sb);
        const seen = (got[`${who}${i}`] = []);
        await subscribed(sb.channel(`ids-${who}-${i}`).on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages' },
          (p) => seen.push(p.new.id)));
      }
    }
    const before = (await suite.cloud.stats()).realtime.rlsChecks;
    const row = await insertMessage(suite.cloud, convs.acmeChat, 'one batch');
    await until(() => Object.entries(got).filter(([k, v]) => !k.startsWith('carol') && v.length).length === 5, 5000, 'five deliveries');
    await sleep(300);
    for (const [k, v] of Object.entries(got)) assert.deepEqual(v, k.startsWith('carol') ? [] : [row.id], k);
    assert.equal((await suite.cloud.stats()).realtime.rlsChecks - before, 3);
  });
});

describe('realtime after DDL', () => {
  // A kept data dir, so that psql can reach the cloud's private cluster (its socket is in `run/`).
  const dataDir = mkdtempSync(join(tmpdir(), 'oboto-ddl-'));
  const suite = suiteCloud(['--data-dir', dataDir]);
  after(() => rmSync(dataDir, { recursive: true, force: true }));
  const psql = spawnSync('psql', ['--version']).status === 0;
  const sql = (query) =>
    execFileSync('psql', ['-h', join(dataDir, 'run'), '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c', query], { stdio: 'pipe' });

  test('a policy created or dropped on the running cloud applies from the next change', { skip: !psql && 'psql is not installed' }, async () => {
    const { sb } = await signedIn(suite.cloud, users.alice.email);
    suite.clients.push(sb);
    const seen = [];
    await subscribed(sb.channel('ddl').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages', filter: `conversation_id=eq.${convs.acmeChat}` },
      (p) => seen.push(p.new.content)));
    await insertMessage(suite.cloud, convs.acmeChat, 'before');
    await until(() => seen.includes('before'), 5000, 'the first row');
    sql('CREATE POLICY ddl_deny ON public.messages AS RESTRICTIVE FOR SELECT USING (false)');
    await insertMessage(suite.cloud, convs.acmeChat, 'denied');
    sql('DROP POLICY ddl_deny ON public.messages');
    await insertMessage(suite.cloud, convs.acmeChat, 'after');
    // Changes go out in commit order: once the last row is here, the denied one never comes.
    await until(() => seen.includes('after'), 5000, 'the row after the policy was dropped');
    assert.deepEqual(seen, ['before', 'after']);
  });

  test('a policy on a column named like the check\'s own names still lets rows through', { skip: !psql && 'psql is not installed' }, async () => {
    const { sb } = await signedIn(suite.cloud, users.alice.email);
    suite.clients.push(sb);
    const seen = [];
    await subscribed(sb.channel('ddl-names').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages', filter: `conversation_id=eq.${convs.acmeChat}` },
      (p) => seen.push(p.new.content)));
    sql('ALTER TABLE public.messages ADD COLUMN n int, ADD COLUMN j int');
    sql('CREATE POLICY ddl_names ON public.messages AS RESTRICTIVE FOR SELECT USING (n IS NULL AND j IS NULL)');
    try {
      await insertMessage(suite.cloud, convs.acmeChat, 'through');
      await until(() => seen.includes('through'), 5000, 'the row under a policy on n and j');
    } finally {
      sql('DROP POLICY ddl_names ON public.messages');
      sql('ALTER TABLE public.messages DROP COLUMN n, DROP COLUMN j');
    }
  });
});

describe('realtime and a client that stops reading', () => {
  const suite = suiteCloud(['--realtime-timeout-ms', '3000']);

  test('its socket is dropped and its presence leaves, however full its buffers', async () => {
    const { cloud } = suite;
    const { sb } = await signedIn(cloud, users.alice.email);
    suite.clients.push(sb);
    const ch = sb.channel('frozen-room', { config: { presence: { key: users.alice.id } } });
    ch.on('presence', { event: 'sync' }, () => {});
    await subscribed(ch);
    const bob = await Raw.open(wsUrl(cloud, cloud.anonKey, '2.0.0'));
    bob.send(['1', '1', 'realtime:frozen-room', 'phx_join', { config: { presence: { key: users.bob.id, enabled: true } } }]);
    await bob.next((f) => f[1] === '1');
    bob.send(['1', '2', 'realtime:frozen-room', 'presence', { type: 'presence', event: 'track', payload: { display_name: 'Bob' } }]);
    await until(() => ch.presenceState()[users.bob.id], 5000, 'bob tracked');

    // Bob's process freezes: nothing more is read from its socket, while broadcasts to the
    // room fill every buffer on the way (the kernel's alone hold tens of MB here).
    bob.sock._socket.pause();
    const body = 'x'.repeat(900 * 1024);
    for (let i = 0; i < 100; i++) {
      const r = await fetch(`${cloud.url}/realtime/v1/api/broadcast`, {
        method: 'POST',
        headers: { apikey: cloud.serviceRoleKey, Authorization: `Bearer ${cloud.serviceRoleKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ messages: [{ topic: 'frozen-room', event: 'fill', payload: { body } }] }),
      });
      assert.equal(r.status, 202);
    }
    await until(() => !ch.presenceState()[users.bob.id], 20_000, 'bob leaving after the idle timeout');
    bob.sock.terminate();
  });
});
