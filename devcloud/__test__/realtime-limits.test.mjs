// What a real Supabase Realtime refuses a client that asks for too much (realtime-protocol.md
// §3, §4, §6): too many channels or postgres_changes entries on a socket, presence calls too
// often or too large, refused joins piling up, and a join on a socket token that has expired.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';

import { DEMO_PASSWORD, SEED, startDevcloud } from '../../__test__/helpers/devcloud.mjs';

import { Raw, WS, sleep, suiteCloud, wsUrl } from './realtime-helpers.mjs';

const { users } = SEED;

/** The reply to `ref` (Realtime answers a refused join after a 5 s pause). */
const replyTo = (raw, ref) => raw.next((f) => f[1] === ref && f[3] === 'phx_reply', 8000);

describe('realtime limits per socket', () => {
  const suite = suiteCloud(['--realtime-max-channels', '2', '--realtime-max-postgres-changes', '3']);
  const open = () => Raw.open(wsUrl(suite.cloud, suite.cloud.anonKey, '2.0.0'));

  test('a socket joins at most --realtime-max-channels channels; a leave makes room', async () => {
    const raw = await open();
    raw.send(['1', '1', 'realtime:a', 'phx_join', { config: {} }]);
    raw.send(['2', '2', 'realtime:b', 'phx_join', { config: {} }]);
    raw.send(['3', '3', 'realtime:c', 'phx_join', { config: {} }]);
    assert.equal((await replyTo(raw, '1'))[4].status, 'ok');
    assert.equal((await replyTo(raw, '2'))[4].status, 'ok');
    assert.deepEqual((await replyTo(raw, '3'))[4], { status: 'error', response: { reason: 'ChannelRateLimitReached: Too many channels' } });
    // A rejoin of a joined topic replaces it: not one more channel.
    raw.send(['4', '4', 'realtime:a', 'phx_join', { config: {} }]);
    assert.equal((await replyTo(raw, '4'))[4].status, 'ok');
    raw.send(['2', '5', 'realtime:b', 'phx_leave', {}]);
    await replyTo(raw, '5');
    raw.send(['6', '6', 'realtime:c', 'phx_join', { config: {} }]);
    assert.equal((await replyTo(raw, '6'))[4].status, 'ok');
    raw.close();
  });

  test('refused joins wait in a queue no longer than the channel limit; beyond it they get no reply', async () => {
    const raw = await open();
    for (const n of ['1', '2', '3', '4']) {
      raw.send([n, n, `realtime:bad${n}`, 'phx_join', { config: {}, access_token: 'not.a.jwt' }]);
    }
    assert.equal((await replyTo(raw, '1'))[4].status, 'error');
    assert.equal((await replyTo(raw, '2'))[4].status, 'error');
    // Replies leave the queue in the order they entered it: once a later one is here, the
    // dropped ones would have been too.
    raw.send(['5', '5', 'realtime:bad5', 'phx_join', { config: {}, access_token: 'not.a.jwt' }]);
    assert.equal((await replyTo(raw, '5'))[4].status, 'error');
    assert.deepEqual(raw.frames.filter((f) => f[1] === '3' || f[1] === '4'), []);
    // The socket still works.
    raw.send([null, '6', 'phoenix', 'heartbeat', {}]);
    assert.equal((await replyTo(raw, '6'))[4].status, 'ok');
    raw.close();
  });

  test('postgres_changes entries are bounded per socket: over the budget a join subscribes none', async () => {
    const raw = await open();
    const entry = (table) => ({ event: '*', schema: 'public', table });
    raw.send(['1', '1', 'realtime:pg1', 'phx_join', { config: { postgres_changes: [entry('messages'), entry('conversations')] } }]);
    assert.equal((await replyTo(raw, '1'))[4].status, 'ok');
    assert.equal((await raw.next((f) => f[3] === 'system' && f[2] === 'realtime:pg1'))[4].status, 'ok');
    raw.send(['2', '2', 'realtime:pg2', 'phx_join', { config: { postgres_changes: [entry('workspaces'), entry('workspace_files')] } }]);
    assert.equal((await replyTo(raw, '2'))[4].status, 'ok');
    assert.deepEqual((await raw.next((f) => f[3] === 'system' && f[2] === 'realtime:pg2'))[4], {
      extension: 'postgres_changes',
      status: 'error',
      message: 'Too many postgres_changes subscriptions on this socket (at most 3)',
      channel: 'pg2',
    });
    // The refused entries took nothing from the budget.
    raw.send(['2', '3', 'realtime:pg2', 'phx_leave', {}]);
    await replyTo(raw, '3');
    raw.send(['4', '4', 'realtime:pg3', 'phx_join', { config: { postgres_changes: [entry('workspaces')] } }]);
    assert.equal((await replyTo(raw, '4'))[4].status, 'ok');
    assert.equal((await raw.next((f) => f[3] === 'system' && f[2] === 'realtime:pg3'))[4].status, 'ok');
    raw.close();
  });
});

describe('realtime presence limits', () => {
  const suite = suiteCloud();
  const open = () => Raw.open(wsUrl(suite.cloud, suite.cloud.anonKey, '2.0.0'));
  const presence = (event, payload) => ({ type: 'presence', event, ...(payload ? { payload } : {}) });

  test('the sixth presence call in 30 s closes the channel: "Client presence rate limit exceeded"', async () => {
    const raw = await open();
    raw.send(['1', '1', 'realtime:busy', 'phx_join', { config: { presence: { key: 'k', enabled: true } } }]);
    await replyTo(raw, '1');
    for (const [i, event] of ['track', 'untrack', 'track', 'untrack', 'track'].entries()) {
      const ref = String(10 + i);
      raw.send(['1', ref, 'realtime:busy', 'presence', presence(event, event === 'track' ? { n: i } : null)]);
      assert.equal((await replyTo(raw, ref))[4].status, 'ok', `call ${i + 1}`);
    }
    raw.send(['1', '20', 'realtime:busy', 'presence', presence('untrack')]);
    assert.deepEqual(await raw.next((f) => f[3] === 'system'),
      ['1', null, 'realtime:busy', 'system', { extension: 'system', status: 'error', message: 'Client presence rate limit exceeded', channel: 'busy' }]);
    assert.deepEqual(await raw.next((f) => f[3] === 'phx_close'), ['1', '1', 'realtime:busy', 'phx_close', {}]);
    assert.deepEqual(raw.frames.filter((f) => f[1] === '20'), []);
    raw.close();
  });

  test('a track payload over 3000 KB closes the channel: "Track message size exceeded"', async () => {
    const watcher = await open();
    watcher.send(['1', '1', 'realtime:big', 'phx_join', { config: { presence: { key: 'w', enabled: true } } }]);
    await replyTo(watcher, '1');
    await watcher.next((f) => f[3] === 'presence_state');
    const raw = await open();
    raw.send(['1', '1', 'realtime:big', 'phx_join', { config: { presence: { key: 'big', enabled: true } } }]);
    await replyTo(raw, '1');
    raw.send(['1', '2', 'realtime:big', 'presence', presence('track', { blob: 'x'.repeat(3000 * 1024) })]);
    assert.deepEqual((await raw.next((f) => f[3] === 'system', 8000))[4],
      { extension: 'system', status: 'error', message: 'Track message size exceeded', channel: 'big' });
    await raw.next((f) => f[3] === 'phx_close');
    // One that fits is tracked.
    raw.send(['3', '3', 'realtime:big', 'phx_join', { config: { presence: { key: 'big', enabled: true } } }]);
    await replyTo(raw, '3');
    raw.send(['3', '4', 'realtime:big', 'presence', presence('track', { blob: 'x'.repeat(1024) })]);
    assert.equal((await replyTo(raw, '4'))[4].status, 'ok');
    const diff = await watcher.next((f) => f[3] === 'presence_diff');
    assert.deepEqual(Object.keys(diff[4].joins), ['big']);
    raw.close();
    watcher.close();
  });
});

describe('realtime socket token expiry', () => {
  let cloud;
  before(async () => {
    cloud = await startDevcloud(['--jwt-exp', '2']);
  });
  after(async () => {
    await cloud?.stop();
  });

  test('a join on a socket whose token has expired gets InvalidJWTToken, not ok', async () => {
    const sb = createClient(cloud.url, cloud.anonKey, { auth: { persistSession: false, autoRefreshToken: false }, realtime: { transport: WS } });
    const { data, error } = await sb.auth.signInWithPassword({ email: users.alice.email, password: DEMO_PASSWORD });
    if (error) throw error;
    const token = data.session.access_token;
    const exp = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')).exp;
    // The user's token is the socket's: a join without its own token acts with it.
    const raw = await Raw.open(wsUrl(cloud, token, '2.0.0'));
    raw.send(['1', '1', 'realtime:fresh', 'phx_join', { config: {} }]);
    assert.equal((await replyTo(raw, '1'))[4].status, 'ok');
    while (Math.floor(Date.now() / 1000) <= exp) await sleep(100);
    raw.send(['2', '2', 'realtime:stale', 'phx_join', { config: {} }]);
    raw.send(['3', '3', 'realtime:stale-too', 'phx_join', { config: {}, access_token: token }]);
    for (const ref of ['2', '3']) {
      const reply = await replyTo(raw, ref);
      assert.equal(reply[4].status, 'error');
      assert.match(reply[4].response.reason, /^InvalidJWTToken: Token has expired \d+ seconds ago$/);
    }
    assert.deepEqual(raw.frames.filter((f) => f[2].startsWith('realtime:stale') && f[3] !== 'phx_reply'), []);
    raw.close();
  });
});
