// GoTrue conformance of devcloud (`/auth/v1`): what @supabase/supabase-js sees, and the raw
// wire where supabase-js hides it (error dialects, refresh-token reuse, concurrency).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';

import { DEMO_PASSWORD, SEED, startDevcloud } from '../../__test__/helpers/devcloud.mjs';
import { SUPABASE_OPTIONS } from '../../__test__/helpers/supabase.mjs';

const opts = SUPABASE_OPTIONS;
const claimsOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let unique = 0;
const freshEmail = (tag) => `${tag}-${process.pid}-${Date.now()}-${unique++}@auth.test`;

/** A raw GoTrue call; `apikey: null` leaves the key out. */
function rawAuth(cloud, path, { method = 'POST', body, headers = {}, apikey = cloud.anonKey } = {}) {
  return fetch(`${cloud.url}/auth/v1${path}`, {
    method,
    headers: { ...(apikey ? { apikey } : {}), 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function passwordGrant(cloud, email, password = DEMO_PASSWORD) {
  const r = await rawAuth(cloud, '/token?grant_type=password', { body: { email, password } });
  assert.equal(r.status, 200, `sign in ${email}`);
  return r.json();
}

const refreshRaw = (cloud, refresh_token) =>
  rawAuth(cloud, '/token?grant_type=refresh_token', {
    body: { refresh_token },
    headers: { 'X-Supabase-Api-Version': '2024-01-01' },
  });

describe('devcloud auth (default settings)', () => {
  let cloud;
  let anon;
  const client = () => createClient(cloud.url, cloud.anonKey, opts);

  before(async () => {
    cloud = await startDevcloud();
    anon = client();
  });
  after(async () => {
    await cloud?.stop();
  });

  test('the API key is required on every auth route', async () => {
    for (const [method, path] of [
      ['POST', '/token?grant_type=password'],
      ['GET', '/user'],
      ['GET', '/settings'],
      ['GET', '/health'],
      ['GET', '/admin/users'],
    ]) {
      const r = await rawAuth(cloud, path, { method, apikey: null, body: method === 'POST' ? {} : undefined });
      assert.equal(r.status, 401, `${method} ${path}`);
      assert.deepEqual(await r.json(), { message: 'No API key found in request' });
    }
    const bad = await rawAuth(cloud, '/settings', { method: 'GET', apikey: 'not-a-key' });
    assert.equal(bad.status, 401);
    assert.equal((await bad.json()).message, 'Invalid API key');
  });

  test('health and settings', async () => {
    const health = await rawAuth(cloud, '/health', { method: 'GET' });
    assert.equal(health.status, 200);
    assert.equal((await health.json()).name, 'GoTrue');
    const settings = await (await rawAuth(cloud, '/settings', { method: 'GET' })).json();
    assert.equal(settings.external.email, true);
    assert.equal(settings.disable_signup, false);
    assert.equal(settings.mailer_autoconfirm, true);
  });

  test('signInWithPassword gives a session with GoTrue claims', async () => {
    const sb = client();
    const before = Math.floor(Date.now() / 1000);
    const { data, error } = await sb.auth.signInWithPassword({ email: SEED.users.alice.email, password: DEMO_PASSWORD });
    assert.equal(error, null);
    const { session, user } = data;
    assert.equal(session.token_type, 'bearer');
    assert.equal(session.expires_in, 3600);
    assert.ok(Math.abs(session.expires_at - (before + 3600)) <= 5);
    assert.match(session.refresh_token, /^[a-z0-9]{12}$/);
    assert.equal(user.email, SEED.users.alice.email);
    assert.equal(user.id, SEED.users.alice.id);
    assert.equal(user.aud, 'authenticated');
    assert.equal(user.user_metadata.display_name, 'Alice Anders');
    assert.ok(user.last_sign_in_at);
    assert.ok(Array.isArray(user.identities));

    const c = claimsOf(session.access_token);
    assert.equal(c.iss, `${cloud.url}/auth/v1`);
    assert.equal(c.sub, SEED.users.alice.id);
    assert.equal(c.aud, 'authenticated');
    assert.equal(c.role, 'authenticated');
    assert.equal(c.email, SEED.users.alice.email);
    assert.equal(c.phone, '');
    assert.equal(c.aal, 'aal1');
    assert.equal(c.amr[0].method, 'password');
    assert.equal(typeof c.amr[0].timestamp, 'number');
    assert.equal(c.is_anonymous, false);
    assert.match(c.session_id, /^[0-9a-f-]{36}$/);
    assert.equal(c.exp - c.iat, 3600);
    assert.equal(c.exp, session.expires_at);
    assert.deepEqual(c.app_metadata, { provider: 'email', providers: ['email'] });
    assert.equal(c.user_metadata.display_name, 'Alice Anders');
  });

  test('wrong password and unknown email are the same invalid_credentials error', async () => {
    for (const [email, password] of [
      [SEED.users.alice.email, 'wrong-password'],
      ['nobody@nowhere.test', DEMO_PASSWORD],
    ]) {
      const { data, error } = await anon.auth.signInWithPassword({ email, password });
      assert.equal(data.session, null);
      assert.equal(error.name, 'AuthApiError');
      assert.equal(error.status, 400);
      assert.equal(error.code, 'invalid_credentials');
      assert.equal(error.message, 'Invalid login credentials');
    }
  });

  test('both error dialects, chosen by X-Supabase-Api-Version', async () => {
    const body = { email: SEED.users.alice.email, password: 'wrong-password' };
    const modern = await rawAuth(cloud, '/token?grant_type=password', {
      body,
      headers: { 'X-Supabase-Api-Version': '2024-01-01' },
    });
    assert.equal(modern.status, 400);
    assert.equal(modern.headers.get('x-supabase-api-version'), '2024-01-01');
    assert.equal(modern.headers.get('x-sb-error-code'), 'invalid_credentials');
    assert.deepEqual(await modern.json(), { code: 'invalid_credentials', message: 'Invalid login credentials' });

    const legacy = await rawAuth(cloud, '/token?grant_type=password', { body });
    assert.equal(legacy.status, 400);
    assert.equal(legacy.headers.get('x-supabase-api-version'), null);
    assert.equal(legacy.headers.get('x-sb-error-code'), 'invalid_credentials');
    assert.deepEqual(await legacy.json(), {
      code: 400,
      error_code: 'invalid_credentials',
      msg: 'Invalid login credentials',
    });

    const noBearer = await rawAuth(cloud, '/user', { method: 'GET' });
    assert.equal(noBearer.status, 401);
    assert.equal((await noBearer.json()).error_code, 'no_authorization');
    const badJwt = await rawAuth(cloud, '/user', {
      method: 'GET',
      headers: { Authorization: 'Bearer not.a.jwt', 'X-Supabase-Api-Version': '2024-01-01' },
    });
    assert.equal(badJwt.status, 403);
    assert.equal((await badJwt.json()).code, 'bad_jwt');
  });

  test('malformed requests', async () => {
    const v = { 'X-Supabase-Api-Version': '2024-01-01' };
    const cases = [
      ['/token?grant_type=password', '{"email":', 400, 'bad_json'],
      ['/token?grant_type=password', { email: 42, password: 'x' }, 400, 'bad_json'],
      ['/token?grant_type=password', { password: 'x' }, 400, 'validation_failed'],
      ['/token?grant_type=password', { email: 'a@b.test', phone: '+15550000', password: 'x' }, 400, 'validation_failed'],
      ['/token?grant_type=refresh_token', {}, 400, 'validation_failed'],
      ['/token?grant_type=magic', { email: 'a@b.test' }, 400, null],
      ['/token', { email: 'a@b.test' }, 400, null],
      ['/token?grant_type=password', { email: 'a@b.test', password: 'x'.repeat(2 * 1024 * 1024) }, 413, null],
    ];
    for (const [path, body, status, code] of cases) {
      const r = await rawAuth(cloud, path, { body, headers: v });
      assert.equal(r.status, status, `${path} ${JSON.stringify(body).slice(0, 60)}`);
      const json = await r.json();
      assert.equal(typeof json.code, 'string');
      if (code) assert.equal(json.code, code);
    }
  });

  test('refreshSession rotates the refresh token; the parent of the active token gets the active one', async () => {
    const sb = client();
    const { data: signIn } = await sb.auth.signInWithPassword({ email: SEED.users.bob.email, password: DEMO_PASSWORD });
    const first = signIn.session.refresh_token;
    const { data, error } = await sb.auth.refreshSession();
    assert.equal(error, null);
    const second = data.session.refresh_token;
    assert.match(second, /^[a-z0-9]{12}$/);
    assert.notEqual(second, first);
    assert.equal(claimsOf(data.session.access_token).session_id, claimsOf(signIn.session.access_token).session_id);
    assert.equal(data.user.email, SEED.users.bob.email);

    // A client that lost the answer presents the old token again: same active token back.
    const again = await refreshRaw(cloud, first);
    assert.equal(again.status, 200);
    assert.equal((await again.json()).refresh_token, second);
    // ... and the active token still rotates normally.
    const third = await refreshRaw(cloud, second);
    assert.equal(third.status, 200);
    assert.notEqual((await third.json()).refresh_token, second);
  });

  test('an unknown refresh token is refresh_token_not_found', async () => {
    const { data, error } = await anon.auth.refreshSession({ refresh_token: 'zzzzzzzzzzzz' });
    assert.equal(data.session, null);
    assert.equal(error.name, 'AuthApiError');
    assert.equal(error.status, 400);
    assert.equal(error.code, 'refresh_token_not_found');
    assert.equal(error.message, 'Invalid Refresh Token: Refresh Token Not Found');
  });

  test('concurrent refreshes with one token all succeed with the same new token', async () => {
    const session = await passwordGrant(cloud, SEED.users.carol.email);
    const responses = await Promise.all(Array.from({ length: 5 }, () => refreshRaw(cloud, session.refresh_token)));
    const bodies = await Promise.all(responses.map((r) => r.json()));
    for (const [i, r] of responses.entries()) assert.equal(r.status, 200, JSON.stringify(bodies[i]));
    const tokens = new Set(bodies.map((b) => b.refresh_token));
    assert.equal(tokens.size, 1, 'one rotation, the others got the active token');
    const [active] = tokens;
    assert.notEqual(active, session.refresh_token);
    // Nothing was revoked: the active token still refreshes and the session still exists.
    const next = await refreshRaw(cloud, active);
    assert.equal(next.status, 200);
    const user = await rawAuth(cloud, '/user', {
      method: 'GET',
      headers: { Authorization: `Bearer ${(await next.json()).access_token}` },
    });
    assert.equal(user.status, 200);
  });

  test('getUser returns the bare user', async () => {
    const sb = client();
    const { data: signIn } = await sb.auth.signInWithPassword({ email: SEED.users.alice.email, password: DEMO_PASSWORD });
    const { data, error } = await sb.auth.getUser();
    assert.equal(error, null);
    assert.equal(data.user.id, SEED.users.alice.id);
    assert.equal(data.user.email, SEED.users.alice.email);
    for (const key of ['aud', 'role', 'email_confirmed_at', 'phone', 'confirmed_at', 'last_sign_in_at',
      'app_metadata', 'user_metadata', 'identities', 'created_at', 'updated_at', 'is_anonymous']) {
      assert.ok(key in data.user, `user.${key}`);
    }
    const bare = await rawAuth(cloud, '/user', {
      method: 'GET',
      headers: { Authorization: `Bearer ${signIn.session.access_token}` },
    });
    const body = await bare.json();
    assert.equal(body.id, SEED.users.alice.id);
    assert.equal(body.user, undefined);
    assert.equal(body.encrypted_password, undefined);
  });

  test('signOut ends the session: getUser(token) fails with session_not_found', async () => {
    const email = freshEmail('signout');
    await cloud.createUser(email, 'signout-pass');
    const sb = client();
    const { data: signIn } = await sb.auth.signInWithPassword({ email, password: 'signout-pass' });
    const { access_token, refresh_token } = signIn.session;
    assert.equal((await sb.auth.signOut()).error, null);

    const { data, error } = await anon.auth.getUser(access_token);
    assert.equal(data.user, null);
    assert.equal(error.name, 'AuthSessionMissingError');

    const raw = await rawAuth(cloud, '/user', {
      method: 'GET',
      headers: { Authorization: `Bearer ${access_token}`, 'X-Supabase-Api-Version': '2024-01-01' },
    });
    assert.equal(raw.status, 403);
    assert.equal((await raw.json()).code, 'session_not_found');

    const refresh = await refreshRaw(cloud, refresh_token);
    assert.equal(refresh.status, 400);
    assert.equal((await refresh.json()).code, 'refresh_token_not_found');
  });

  test('logout scopes: local, others, global', async () => {
    const email = freshEmail('scopes');
    await cloud.createUser(email, 'scopes-pass');
    const sessions = [];
    for (let i = 0; i < 4; i++) sessions.push(await passwordGrant(cloud, email, 'scopes-pass'));
    const alive = async (s) =>
      (await rawAuth(cloud, '/user', { method: 'GET', headers: { Authorization: `Bearer ${s.access_token}` } })).status;
    const logout = (s, scope) =>
      rawAuth(cloud, `/logout?scope=${scope}`, { headers: { Authorization: `Bearer ${s.access_token}` } });

    assert.equal((await logout(sessions[0], 'local')).status, 204);
    assert.deepEqual(await Promise.all(sessions.map(alive)), [403, 200, 200, 200]);

    assert.equal((await logout(sessions[1], 'others')).status, 204);
    assert.deepEqual(await Promise.all(sessions.map(alive)), [403, 200, 403, 403]);

    const sb = client();
    await sb.auth.setSession({ access_token: sessions[1].access_token, refresh_token: sessions[1].refresh_token });
    const extra = await passwordGrant(cloud, email, 'scopes-pass');
    assert.equal((await sb.auth.signOut({ scope: 'global' })).error, null);
    assert.deepEqual(await Promise.all([sessions[1], extra].map(alive)), [403, 403]);
    const refresh = await refreshRaw(cloud, extra.refresh_token);
    assert.equal((await refresh.json()).code, 'refresh_token_not_found');

    const bad = await logout(extra, 'everyone');
    assert.equal(bad.status, 403, 'authentication is checked first; the session is gone');
  });

  test('signUp signs the new user in; duplicates and weak passwords are refused', async () => {
    const email = freshEmail('signup');
    const sb = client();
    const { data, error } = await sb.auth.signUp({
      email,
      password: 'signup-pass',
      options: { data: { display_name: 'Signed Up' } },
    });
    assert.equal(error, null);
    assert.equal(data.user.email, email);
    assert.equal(data.user.user_metadata.display_name, 'Signed Up');
    assert.ok(data.user.email_confirmed_at);
    assert.ok(data.session.access_token);
    assert.match(data.session.refresh_token, /^[a-z0-9]{12}$/);

    const again = await client().auth.signInWithPassword({ email, password: 'signup-pass' });
    assert.equal(again.error, null);
    assert.equal(again.data.user.id, data.user.id);

    const dup = await client().auth.signUp({ email, password: 'another-pass' });
    assert.equal(dup.error.status, 422);
    assert.equal(dup.error.code, 'user_already_exists');
    assert.equal(dup.error.message, 'User already registered');

    const weak = await client().auth.signUp({ email: freshEmail('weak'), password: '12345' });
    assert.equal(weak.error.name, 'AuthWeakPasswordError');
    assert.equal(weak.error.status, 422);
    assert.equal(weak.error.code, 'weak_password');
    assert.deepEqual(weak.error.reasons, ['length']);
  });

  test('updateUser changes metadata and password', async () => {
    const email = freshEmail('update');
    await cloud.createUser(email, 'update-pass', { display_name: 'Before' });
    const sb = client();
    await sb.auth.signInWithPassword({ email, password: 'update-pass' });
    const { data, error } = await sb.auth.updateUser({ data: { display_name: 'After', theme: 'dark' } });
    assert.equal(error, null);
    assert.deepEqual(data.user.user_metadata, { display_name: 'After', theme: 'dark' });
    const pw = await sb.auth.updateUser({ password: 'update-pass-2' });
    assert.equal(pw.error, null);
    const same = await sb.auth.updateUser({ password: 'update-pass-2' });
    assert.equal(same.error.code, 'same_password');
    assert.equal((await client().auth.signInWithPassword({ email, password: 'update-pass' })).error.code, 'invalid_credentials');
    assert.equal((await client().auth.signInWithPassword({ email, password: 'update-pass-2' })).error, null);
  });

  test('admin API: create, list, get, update, delete with the service role only', async () => {
    const admin = createClient(cloud.url, cloud.serviceRoleKey, opts).auth.admin;
    const email = freshEmail('admin');
    const { data, error } = await admin.createUser({
      email,
      password: 'admin-pass',
      email_confirm: true,
      user_metadata: { display_name: 'Made By Admin' },
      app_metadata: { plan: 'pro' },
    });
    assert.equal(error, null);
    const id = data.user.id;
    assert.equal(data.user.email, email);
    assert.equal(data.user.user_metadata.display_name, 'Made By Admin');
    assert.equal(data.user.app_metadata.plan, 'pro');
    assert.equal(data.user.app_metadata.provider, 'email');

    const dup = await admin.createUser({ email, password: 'admin-pass', email_confirm: true });
    assert.equal(dup.error.status, 422);
    assert.equal(dup.error.code, 'email_exists');

    const list = await admin.listUsers({ page: 1, perPage: 1000 });
    assert.equal(list.error, null);
    assert.ok(list.data.users.some((u) => u.id === id));
    assert.ok(list.data.users.some((u) => u.id === SEED.users.alice.id));
    assert.ok(list.data.total >= 4);

    const got = await admin.getUserById(id);
    assert.equal(got.data.user.email, email);

    const upd = await admin.updateUserById(id, { user_metadata: { team: 'blue' } });
    assert.equal(upd.error, null);
    assert.deepEqual(upd.data.user.user_metadata, { display_name: 'Made By Admin', team: 'blue' });

    // The profile trigger ran (only checkable where PostgREST is served).
    try {
      const rows = await cloud.serviceRest(`profiles?id=eq.${id}&select=display_name`);
      assert.deepEqual(rows, [{ display_name: 'Made By Admin' }]);
    } catch (e) {
      if (!/404/.test(String(e.message))) throw e;
    }

    const signIn = await createClient(cloud.url, cloud.anonKey, opts).auth.signInWithPassword({ email, password: 'admin-pass' });
    assert.equal(signIn.error, null);

    const del = await admin.deleteUser(id);
    assert.equal(del.error, null);
    const gone = await admin.getUserById(id);
    assert.equal(gone.error.status, 404);
    assert.equal(gone.error.code, 'user_not_found');
    const after = await createClient(cloud.url, cloud.anonKey, opts).auth.signInWithPassword({ email, password: 'admin-pass' });
    assert.equal(after.error.code, 'invalid_credentials');

    // Not with the anon key, nor with a user's token.
    const anonAdmin = createClient(cloud.url, cloud.anonKey, opts).auth.admin;
    const denied = await anonAdmin.createUser({ email: freshEmail('denied'), password: 'x-pass-123' });
    assert.equal(denied.error.status, 403);
    assert.equal(denied.error.code, 'not_admin');
    const session = await passwordGrant(cloud, SEED.users.alice.email);
    const asUser = await rawAuth(cloud, '/admin/users', {
      method: 'GET',
      headers: { Authorization: `Bearer ${session.access_token}` },
    });
    assert.equal(asUser.status, 403);
    assert.equal((await asUser.json()).error_code, 'not_admin');
    const noBearer = await rawAuth(cloud, '/admin/users', { method: 'GET' });
    assert.equal(noBearer.status, 401);
  });

  test('token grants are counted', async () => {
    await cloud.resetStats();
    const s = await passwordGrant(cloud, SEED.users.bob.email);
    await refreshRaw(cloud, s.refresh_token);
    await refreshRaw(cloud, 'yyyyyyyyyyyy');
    const { grants } = await cloud.stats();
    assert.equal(grants.password, 1);
    assert.equal(grants.refresh_token, 2);
  });
});

describe('devcloud auth (--refresh-reuse-interval 0 --jwt-exp 2)', () => {
  let cloud;

  before(async () => {
    cloud = await startDevcloud(['--refresh-reuse-interval', '0', '--jwt-exp', '2']);
  });
  after(async () => {
    await cloud?.stop();
  });

  test('reusing an older refresh token revokes the session', async () => {
    const t0 = (await passwordGrant(cloud, SEED.users.alice.email)).refresh_token;
    const t1 = (await (await refreshRaw(cloud, t0)).json()).refresh_token;
    const t2 = (await (await refreshRaw(cloud, t1)).json()).refresh_token;
    assert.ok(t0 && t1 && t2 && new Set([t0, t1, t2]).size === 3);

    // The parent of the active token is still tolerated, even with no reuse interval.
    const parent = await refreshRaw(cloud, t1);
    assert.equal(parent.status, 200);
    assert.equal((await parent.json()).refresh_token, t2);

    // The grandparent is not: that is reuse, and the whole session's tokens are revoked.
    const { data, error } = await createClient(cloud.url, cloud.anonKey, opts).auth.refreshSession({ refresh_token: t0 });
    assert.equal(data.session, null);
    assert.equal(error.status, 400);
    assert.equal(error.code, 'refresh_token_already_used');
    assert.equal(error.message, 'Invalid Refresh Token: Already Used');

    const active = await refreshRaw(cloud, t2);
    assert.equal(active.status, 400);
    assert.equal((await active.json()).code, 'refresh_token_already_used');
  });

  test('an expired access token is bad_jwt (403)', async () => {
    const session = await passwordGrant(cloud, SEED.users.bob.email);
    assert.equal(session.expires_in, 2);
    const ok = await rawAuth(cloud, '/user', { method: 'GET', headers: { Authorization: `Bearer ${session.access_token}` } });
    assert.equal(ok.status, 200);
    await sleep(3100);
    const expired = await rawAuth(cloud, '/user', {
      method: 'GET',
      headers: { Authorization: `Bearer ${session.access_token}`, 'X-Supabase-Api-Version': '2024-01-01' },
    });
    assert.equal(expired.status, 403);
    assert.equal((await expired.json()).code, 'bad_jwt');
    const { error } = await createClient(cloud.url, cloud.anonKey, opts).auth.getUser(session.access_token);
    assert.equal(error.status, 403);
    assert.equal(error.code, 'bad_jwt');
    // The refresh token still works after the access token expired.
    const refreshed = await refreshRaw(cloud, session.refresh_token);
    assert.equal(refreshed.status, 200);
  });
});
