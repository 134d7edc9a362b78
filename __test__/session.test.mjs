// The session across processes: a second Node process resumes it after the first called
// destroy(), and not after logout(); the process exits by itself after destroy().
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDevcloud, ROOT } from './helpers/devcloud.mjs';

let cloud;
let dir;
before(async () => {
  cloud = await startDevcloud();
  dir = mkdtempSync(join(tmpdir(), 'oboto-session-'));
});
after(async () => {
  await cloud?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs one step of the Oboto server's life in a fresh Node process. */
function runHost(step, { tokenStore, env = {} } = {}) {
  const script = `
    import { CloudSync } from ${JSON.stringify(join(ROOT, 'cloud-sync.mjs'))};
    import { recordingEventBus, secretsManager } from ${JSON.stringify(join(ROOT, '__test__/helpers/host.mjs'))};
    const bus = recordingEventBus();
    const cs = new CloudSync(bus, secretsManager(${JSON.stringify(join(dir, 'secrets.json'))}));
    await cs.initialize({ baseUrl: ${JSON.stringify(cloud.url)}, anonKey: ${JSON.stringify(cloud.anonKey)}, tokenStore: ${JSON.stringify(tokenStore)} });
    const out = {};
    const step = ${JSON.stringify(step)};
    if (step === 'login') await cs.login('alice@acme.test', 'oboto-demo-pass');
    if (step === 'auto' || step === 'auto-logout') out.auto = await cs.tryAutoLogin();
    out.loggedIn = cs.isLoggedIn();
    out.email = cs.getStatus().user?.email ?? null;
    if (step === 'auto-logout') await cs.logout();
    await cs.destroy();
    out.destroyedAt = Date.now();
    process.stdout.write(JSON.stringify(out) + '\\n');
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('exit', (code, signal) => {
      clearTimeout(killer);
      const exitedAt = Date.now();
      if (code !== 0) return reject(new Error(`host exited ${code ?? signal}: ${err}`));
      resolve({ ...JSON.parse(out.trim().split('\n').pop()), exitedAt, stderr: err });
    });
  });
}

for (const tokenStore of ['secrets', 'auto']) {
  test(`a second process auto-logs in after destroy(), not after logout() (${tokenStore} store)`, async () => {
    const first = await runHost('login', { tokenStore });
    assert.equal(first.loggedIn, true);
    const second = await runHost('auto-logout', { tokenStore });
    assert.deepEqual([second.auto, second.loggedIn, second.email], [true, true, 'alice@acme.test']);
    const third = await runHost('auto', { tokenStore });
    assert.deepEqual([third.auto, third.loggedIn], [false, false]);
  });
}

test('a token left in the secretsManager by the JavaScript client moves into the keychain', async () => {
  const secretsFile = join(dir, 'secrets.json');
  const legacy = await runHost('login', { tokenStore: 'secrets' });
  assert.equal(legacy.loggedIn, true);
  assert.ok(JSON.parse(readFileSync(secretsFile, 'utf8')).OBOTO_CLOUD_REFRESH_TOKEN);
  const moved = await runHost('auto', { tokenStore: 'auto' });
  assert.equal(moved.auto, true);
  assert.equal(JSON.parse(readFileSync(secretsFile, 'utf8')).OBOTO_CLOUD_REFRESH_TOKEN, undefined, 'removed from the secrets manager');
  const fromKeychain = await runHost('auto-logout', { tokenStore: 'keychain' });
  assert.equal(fromKeychain.auto, true, 'now in the keychain');
});

test('the process exits by itself within 1 s of destroy()', async () => {
  const run = await runHost('login', { tokenStore: 'memory' });
  const lag = run.exitedAt - run.destroyedAt;
  assert.ok(lag < 1000, `exited ${lag} ms after destroy()`);
});

test('trace logging shows no token or password', async () => {
  const run = await runHost('login', { tokenStore: 'secrets', env: { OBOTO_CLOUD_LOG: 'trace' } });
  assert.match(run.stderr, /initialized/, 'logging is on');
  assert.doesNotMatch(run.stderr, /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}/);
  assert.ok(!run.stderr.includes('oboto-demo-pass'));
  const auto = await runHost('auto-logout', { tokenStore: 'secrets', env: { OBOTO_CLOUD_LOG: 'trace' } });
  assert.ok(!/refresh_token"?\s*[:=]\s*"?[a-z0-9]{12}/.test(auto.stderr));
});
