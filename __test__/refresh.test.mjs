// Token expiry and refresh: single flight under concurrency, scheduled refresh, rotation
// stored before reuse, and a revoked session reported to the host.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDevcloud, DEMO_PASSWORD } from './helpers/devcloud.mjs';
import { secretsManager } from './helpers/host.mjs';
import { cloudSyncFor } from './helpers/client.mjs';
import { startProxy } from './helpers/proxy.mjs';
import { until } from './helpers/wait.mjs';

let cloud;
before(async () => {
  cloud = await startDevcloud(['--jwt-exp', '15', '--refresh-reuse-interval', '0']);
});
after(async () => {
  await cloud?.stop();
});

const refreshes = async () => (await cloud.stats()).grants.refresh_token ?? 0;

test('after the token expires, 20 concurrent calls succeed with exactly one refresh', async () => {
  const { cs } = await cloudSyncFor(cloud, { autoRefresh: false });
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  await sleep(16_000);
  await cloud.resetStats();
  const results = await Promise.all(
    Array.from({ length: 20 }, () => cs.client.get('/rest/v1/workspaces?select=id')),
  );
  assert.ok(results.every((rows) => Array.isArray(rows) && rows.length === 2));
  assert.equal(await refreshes(), 1);
  assert.equal(cs.isLoggedIn(), true);
  await cs.destroy();
});

test('a token the server calls expired is renewed once and the call replayed', async (t) => {
  // The clock says the token is fresh, the server disagrees (a clock skew, a key rotation):
  // only the 401 path can save it. The stand-in answers as PostgREST does for an expired JWT,
  // to every request that still carries the first token.
  let armed = false;
  let first = null;
  const seen = [];
  const proxy = await startProxy(cloud.url, {
    intercept: (req) => {
      if (!armed || !req.url.startsWith('/rest/v1/')) return null;
      const bearer = req.headers.authorization ?? '';
      first ??= bearer;
      seen.push(bearer);
      if (bearer !== first) return null;
      return {
        status: 401,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ code: 'PGRST303', details: null, hint: null, message: 'JWT expired' }),
      };
    },
  });
  t.after(() => proxy.close());
  const { cs } = await cloudSyncFor({ ...cloud, url: proxy.url }, { autoRefresh: false });
  await cs.login('bob@acme.test', DEMO_PASSWORD);
  // A JWT's times are whole seconds: a refresh within the login's second would mint the very
  // same token, which the stand-in could not tell from the rejected one.
  await sleep(1_100);
  armed = true;
  await cloud.resetStats();
  const calls = await Promise.all([
    cs.client.get('/rest/v1/workspaces?select=id'),
    cs.client.get('/rest/v1/cloud_agents?select=slug'),
  ]);
  assert.equal(calls[0].length, 2);
  assert.equal(calls[1].length, 2);
  assert.equal(await refreshes(), 1, 'one refresh for both rejected calls');
  // A call sent after the refresh already carries the new token; one sent before is rejected
  // once, and replayed once with the new one.
  const rejected = seen.filter((b) => b === first).length;
  assert.ok(rejected >= 1, 'the 401 path ran');
  assert.equal(seen.length, 2 + rejected, 'each rejected call was replayed once');
  await cs.destroy();
});

test('the session is refreshed on a timer before it expires, and the new token stored first', async () => {
  const secrets = secretsManager();
  const { cs } = await cloudSyncFor(cloud, { secrets, tokenStore: 'secrets' });
  await cs.login('carol@globex.test', DEMO_PASSWORD);
  assert.equal(secrets.writes.length, 1);
  await cloud.resetStats();
  // expires_in 15 s → refresh at max(15 − 60, 10) = 10 s. Nothing here uses the session
  // meanwhile, so only the timer can refresh it; on a loaded machine the rotated token may
  // be stored well after the 10 s, so its arrival is what the test waits for.
  await until(() => secrets.writes.length >= 2, 30_000, 'a refresh by the timer');
  assert.equal(await refreshes(), 1);
  assert.equal(secrets.writes.length, 2);
  assert.notEqual(secrets.writes[1].value, secrets.writes[0].value, 'the rotated token was stored');
  const rows = await cs.client.get('/rest/v1/workspaces?select=slug');
  assert.deepEqual(rows.map((r) => r.slug), ['secret-plans']);
  assert.equal(await refreshes(), 1, 'the fresh token needed no further refresh');
  await cs.destroy();
});

test('refresh-token reuse revokes the session and the client reports it', async () => {
  const secrets = secretsManager();
  const { cs, bus } = await cloudSyncFor(cloud, { secrets, tokenStore: 'secrets', autoRefresh: false });
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  await cs.auth.refresh();
  await cs.auth.refresh();
  const [first] = secrets.writes.map((w) => w.value);
  // Someone replays the oldest token: the server sees reuse and revokes the whole session.
  const replay = await fetch(`${cloud.url}/auth/v1/token?grant_type=refresh_token`, {
    method: 'POST',
    headers: { apikey: cloud.anonKey, 'content-type': 'application/json' },
    body: JSON.stringify({ refresh_token: first }),
  });
  assert.equal(replay.status, 400);
  assert.equal((await replay.json()).error_code, 'refresh_token_already_used');
  const loggedOut = bus.next('cloud:auth:logged-out');
  await assert.rejects(cs.auth.refresh(), { code: 'SESSION_ENDED' });
  await loggedOut;
  const error = bus.events.find((e) => e.name === 'cloud:auth:error');
  assert.match(error.payload.error, /session has ended/);
  assert.equal(cs.isLoggedIn(), false);
  assert.equal(secrets.get('OBOTO_CLOUD_REFRESH_TOKEN'), undefined, 'the dead token was forgotten');
  assert.equal(await cs.tryAutoLogin(), false);
  await cs.destroy();
});

test('concurrent explicit refreshes share one request', async () => {
  // The refresh is held on its way to the cloud, so the five calls overlap however busy the
  // machine is (without it, a first refresh could finish before a descheduled test issued
  // the fifth, which rightly makes a second request).
  const proxy = await startProxy(cloud.url, {
    delayMs: (req) => (req.url.includes('grant_type=refresh_token') ? 300 : 0),
  });
  const { cs } = await cloudSyncFor({ ...cloud, url: proxy.url }, { autoRefresh: false });
  await cs.login('bob@acme.test', DEMO_PASSWORD);
  await cloud.resetStats();
  await Promise.all(Array.from({ length: 5 }, () => cs.auth.refresh()));
  assert.equal(await refreshes(), 1);
  await cs.auth.refresh();
  assert.equal(await refreshes(), 2, 'a later refresh is a new request');
  assert.equal(cs.isLoggedIn(), true);
  await cs.destroy();
  await proxy.close();
});
