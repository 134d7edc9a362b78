// Login, user context, events and the REST facade against a real local cloud.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDevcloud, DEMO_PASSWORD, SEED } from './helpers/devcloud.mjs';
import { JWT_PATTERN, secretsManager } from './helpers/host.mjs';
import { cloudSyncFor } from './helpers/client.mjs';
import { waitFor } from './helpers/sync.mjs';

let cloud;
before(async () => {
  cloud = await startDevcloud();
});
after(async () => {
  await cloud?.stop();
});

test('a wrong password is refused with a readable error that does not contain it', async () => {
  const { cs, bus } = await cloudSyncFor(cloud);
  const password = 'hunter2-not-the-password';
  await assert.rejects(cs.login('alice@acme.test', password), (e) => {
    assert.equal(e.code, 'invalid_credentials');
    assert.equal(e.status, 400);
    assert.match(e.message, /Invalid login credentials/);
    assert.ok(!e.message.includes(password) && !JSON.stringify(e).includes(password));
    return true;
  });
  assert.equal(cs.isLoggedIn(), false);
  // Emitted before the login rejected, the event crosses to JS on a queue of its own.
  await waitFor(bus, 'cloud:auth:error', () => true, 10_000);
  const errors = bus.events.filter((e) => e.name === 'cloud:auth:error');
  assert.equal(errors.length, 1);
  assert.ok(!JSON.stringify(errors).includes(password));
  await assert.rejects(cs.login('', ''), { code: 'INVALID_ARGUMENT' });
  await cs.destroy();
});

test('login fills user, profile, org and role, and emits logged-in', async () => {
  const { cs, bus } = await cloudSyncFor(cloud);
  const loggedIn = bus.next('cloud:auth:logged-in');
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  const status = cs.getStatus();
  assert.equal(status.loggedIn, true);
  assert.deepEqual(status.user, { id: SEED.users.alice.id, email: 'alice@acme.test' });
  assert.deepEqual(status.profile, { displayName: 'Alice Anders', avatarUrl: null });
  assert.deepEqual(status.org, { id: SEED.orgs.acme, name: 'Acme', slug: 'acme', tier: 'pro' });
  assert.equal(status.role, 'owner');
  const event = await loggedIn;
  assert.equal(event.loggedIn, true);
  assert.deepEqual(event.org, status.org);
  assert.equal(cs.auth.user.id, SEED.users.alice.id);
  assert.equal(cs.auth.org.id, SEED.orgs.acme);
  assert.equal(cs.auth.profile.display_name, 'Alice Anders');
  assert.equal(cs.auth.membership.role, 'owner');
  const from = bus.events.length;
  await cs.logout();
  assert.equal(cs.isLoggedIn(), false);
  assert.equal(cs.auth.user, null);
  await waitFor(bus, 'cloud:auth:logged-out', () => true, 10_000, from);
  assert.deepEqual(bus.names().slice(-1), ['cloud:auth:logged-out']);
  await cs.destroy();
});

test('bob is a member of Acme; carol owns Globex', async () => {
  for (const [email, org, role] of [['bob@acme.test', 'acme', 'member'], ['carol@globex.test', 'globex', 'owner']]) {
    const { cs } = await cloudSyncFor(cloud);
    await cs.login(email, DEMO_PASSWORD);
    assert.equal(cs.getStatus().org.slug, org);
    assert.equal(cs.getStatus().role, role);
    await cs.destroy();
  }
});

test('no token appears in the status, the auth facade or any event', async () => {
  const secrets = secretsManager();
  const { cs, bus } = await cloudSyncFor(cloud, { secrets, tokenStore: 'secrets' });
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  await cs.auth.refresh();
  await cs.logout();
  // Every event of the session, the last one included, before looking.
  await waitFor(bus, 'cloud:auth:logged-out', () => true, 10_000);
  const stored = secrets.writes.map((w) => w.value);
  assert.ok(stored.length >= 2, 'the refresh token was stored at login and after refresh');
  const seen = JSON.stringify([cs.getStatus(), bus.events, cs.auth.user, cs.auth.profile]);
  assert.doesNotMatch(seen, JWT_PATTERN);
  for (const token of stored) assert.ok(!seen.includes(token), 'a refresh token leaked');
  await cs.destroy();
});

test('client.get and post speak PostgREST, Prefer included', async () => {
  const { cs } = await cloudSyncFor(cloud);
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  const rows = await cs.client.get('/rest/v1/workspaces?select=id,slug&order=slug.asc');
  assert.deepEqual(rows.map((r) => r.slug), ['data-pipeline', 'website-revamp']);
  const slug = `ws-${Date.now()}`;
  const created = await cs.client.post(
    '/rest/v1/workspaces',
    { name: 'Test WS', slug, org_id: cs.auth.org.id, status: 'active', created_by: cs.auth.user.id },
    { Prefer: 'return=representation' },
  );
  assert.equal(created[0].slug, slug);
  const minimal = await cs.client.post('/rest/v1/workspaces', { name: 'Quiet', slug: `${slug}-2`, org_id: cs.auth.org.id });
  assert.equal(minimal, null, '201 without representation gives null');
  const patched = await cs.client.patch(`/rest/v1/workspaces?id=eq.${created[0].id}`, { current_step: 'two' });
  assert.equal(patched[0].current_step, 'two', 'patch asks for the representation');
  const text = await cs.client.request('/rest/v1/workspaces?select=id', { method: 'GET', headers: { Accept: 'text/csv' } }).catch((e) => e);
  assert.ok(typeof text === 'string' || text instanceof Error);
  assert.equal(await cs.client.delete(`/rest/v1/workspaces?slug=eq.${slug}-2`), null);
  await cs.destroy();
});

test('a non-2xx answer rejects with status, url and the server code', async () => {
  const { cs } = await cloudSyncFor(cloud);
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  await assert.rejects(cs.client.get('/rest/v1/no_such_table'), (e) => {
    assert.equal(e.status, 404);
    assert.equal(e.code, 'PGRST205');
    assert.equal(e.url, `${cloud.url}/rest/v1/no_such_table`);
    return true;
  });
  await assert.rejects(cs.client.get('/rest/v1/workspaces?id=eq.not-a-uuid'), { status: 400, code: '22P02' });
  await assert.rejects(
    cs.client.post('/rest/v1/workspaces', { name: 'dup', slug: 'website-revamp', org_id: SEED.orgs.acme }),
    { status: 409, code: '23505' },
  );
  await assert.rejects(cs.client.get('https://elsewhere.test/steal'), { code: 'INVALID_ARGUMENT' });
  await cs.destroy();
});

test('RLS applies to the client: carol cannot read Acme rows', async () => {
  const { cs } = await cloudSyncFor(cloud);
  await cs.login('carol@globex.test', DEMO_PASSWORD);
  const rows = await cs.client.get(`/rest/v1/workspaces?org_id=eq.${SEED.orgs.acme}&select=id`);
  assert.deepEqual(rows, []);
  await cs.destroy();
});

test('a throwing event listener does not break the client', async () => {
  const { cs, bus } = await cloudSyncFor(cloud);
  bus.on('cloud:auth:logged-in', () => {
    throw new Error('listener bug');
  });
  const warned = new Promise((resolve) => process.once('warning', resolve));
  await cs.login('bob@acme.test', DEMO_PASSWORD);
  assert.match((await warned).message, /a listener of cloud:auth:logged-in threw: listener bug/);
  assert.equal(cs.isLoggedIn(), true);
  assert.ok(Array.isArray(await cs.client.get('/rest/v1/workspaces?select=id')));
  await cs.destroy();
});

test('after destroy() the instance refuses work and releases its session', async () => {
  const { cs } = await cloudSyncFor(cloud);
  await cs.login('bob@acme.test', DEMO_PASSWORD);
  await cs.destroy();
  assert.equal(cs.isLoggedIn(), false);
  assert.equal(cs.getStatus().configured, false);
  await assert.rejects(cs.client.get('/rest/v1/workspaces'), { code: 'DESTROYED' });
  await cs.destroy();
});

test('tryAutoLogin while logged in keeps the session without a refresh', async () => {
  const { cs } = await cloudSyncFor(cloud);
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  await cloud.resetStats();
  assert.equal(await cs.tryAutoLogin(), true);
  assert.equal((await cloud.stats()).grants.refresh_token ?? 0, 0);
  await cs.destroy();
});

test('autoLogin: false turns tryAutoLogin off', async () => {
  const first = await cloudSyncFor(cloud);
  await first.cs.login('alice@acme.test', DEMO_PASSWORD);
  await first.cs.destroy();
  const { cs } = await cloudSyncFor(cloud, { autoLogin: false });
  assert.equal(await cs.tryAutoLogin(), false);
  assert.equal(cs.isLoggedIn(), false);
  await cs.destroy();
  const again = await cloudSyncFor(cloud);
  assert.equal(await again.cs.tryAutoLogin(), true, 'the stored session was left alone');
  await again.cs.logout();
  await again.cs.destroy();
});
