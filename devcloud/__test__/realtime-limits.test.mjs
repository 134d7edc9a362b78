// What a real Supabase Realtime refuses a client (realtime-protocol.md §3, §4, §6): a join on
// a socket token that has expired.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';

import { DEMO_PASSWORD, SEED, startDevcloud } from '../../__test__/helpers/devcloud.mjs';

import { Raw, WS, sleep, wsUrl } from './realtime-helpers.mjs';

const { users } = SEED;

/** The reply to `ref` (Realtime answers a refused join after a 5 s pause). */
const replyTo = (raw, ref) => raw.next((f) => f[1] === ref && f[3] === 'phx_reply', 8000);

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
