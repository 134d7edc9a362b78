// A cloud that stops answering while a refresh is due: the client retries with backoff and
// keeps the session until the token really expires; past that it reports the session lost
// but keeps the stored token, so it resumes once the cloud is back.
// The cloud is frozen with SIGSTOP (connections hang, as on a dead network) and thawed
// with SIGCONT.
//
// Tokens live 20 s and the refresh is due at 10 s. A request waits 2 s at most: long
// enough for a login (a bcrypt hash) on a loaded machine, short enough that a hung refresh
// fails, and is retried, well before the token expires.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDevcloud, DEMO_PASSWORD } from './helpers/devcloud.mjs';
import { secretsManager } from './helpers/host.mjs';
import { cloudSyncFor } from './helpers/client.mjs';
import { until } from './helpers/wait.mjs';

let cloud;
before(async () => {
  cloud = await startDevcloud(['--jwt-exp', '20']);
});
after(async () => {
  cloud.child.kill('SIGCONT');
  await cloud?.stop();
});

const REQUEST_TIMEOUT_MS = 2_000;
const freeze = () => cloud.child.kill('SIGSTOP');
const thaw = () => cloud.child.kill('SIGCONT');

test('a refresh that fails for a while is retried and the session survives', async () => {
  const secrets = secretsManager();
  const { cs, bus } = await cloudSyncFor(cloud, { requestTimeoutMs: REQUEST_TIMEOUT_MS, secrets, tokenStore: 'secrets' });
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  await sleep(8_000);
  freeze(); // the scheduled refresh (at 10 s) times out (at 12 s)
  await sleep(5_000);
  assert.equal(cs.isLoggedIn(), true, 'still logged in while the token is valid');
  thaw();
  // A retry renews the session: the rotated token is stored (the cloud's count would also
  // take a request the client gave up on, which the thawed cloud still answers).
  await until(() => secrets.writes.length >= 2, 20_000, 'a retried refresh');
  assert.equal(cs.isLoggedIn(), true);
  assert.ok(!bus.names().includes('cloud:auth:logged-out'));
  const rows = await cs.client.get('/rest/v1/workspaces?select=id');
  assert.ok(Array.isArray(rows));
  assert.ok(((await cloud.stats()).grants.refresh_token ?? 0) >= 1, 'the retried refresh went through');
  await cs.destroy();
});

test('past the real expiry the session is reported lost, but the stored token is kept', async () => {
  const secrets = secretsManager();
  const { cs, bus } = await cloudSyncFor(cloud, { requestTimeoutMs: REQUEST_TIMEOUT_MS, secrets, tokenStore: 'secrets' });
  await cs.login('bob@acme.test', DEMO_PASSWORD);
  await sleep(8_000);
  freeze();
  // Lost at the first failure past the expiry (20 s), with the cloud frozen since 8 s.
  const lost = bus.next('cloud:auth:logged-out', 30_000);
  await lost;
  thaw();
  assert.equal(cs.isLoggedIn(), false);
  const error = bus.events.find((e) => e.name === 'cloud:auth:error');
  assert.match(error.payload.error, /unreachable/);
  assert.ok(secrets.get('OBOTO_CLOUD_REFRESH_TOKEN'), 'the stored session survives');
  assert.equal(await cs.tryAutoLogin(), true, 'and resumes once the cloud answers');
  assert.equal(cs.getStatus().user.email, 'bob@acme.test');
  await cs.destroy();
});
