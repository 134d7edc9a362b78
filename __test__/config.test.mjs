// loadCloudConfig() and initialize() validation; the status shape before and after.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { CloudSync, loadCloudConfig } from '../cloud-sync.mjs';
import { ROOT } from './helpers/devcloud.mjs';

/** Runs loadCloudConfig() in a child with exactly `env`, so the parent's environment is untouched. */
function configFrom(env) {
  const out = execFileSync(
    process.execPath,
    ['-e', "process.stdout.write(JSON.stringify(require('./cloud-sync.js').loadCloudConfig()))"],
    { cwd: ROOT, env: { PATH: process.env.PATH, ...env } },
  );
  return JSON.parse(out.toString());
}

const STATUS_KEYS = ['configured', 'linkedWorkspace', 'loggedIn', 'org', 'profile', 'role', 'syncEngineStatus', 'syncState', 'user'];

test('loadCloudConfig needs both URL and key', () => {
  assert.equal(configFrom({}), null);
  assert.equal(configFrom({ OBOTO_CLOUD_URL: 'http://x.test' }), null);
  assert.equal(configFrom({ OBOTO_CLOUD_KEY: 'k' }), null);
  assert.equal(configFrom({ OBOTO_CLOUD_URL: '', OBOTO_CLOUD_KEY: 'k' }), null);
});

test('loadCloudConfig reads the environment with legacy defaults', () => {
  assert.deepEqual(configFrom({ OBOTO_CLOUD_URL: 'https://x.supabase.co/', OBOTO_CLOUD_KEY: 'anon' }), {
    baseUrl: 'https://x.supabase.co',
    anonKey: 'anon',
    autoLogin: true,
    syncInterval: 30000,
    presenceInterval: 60000,
  });
  const c = configFrom({
    OBOTO_CLOUD_URL: 'http://127.0.0.1:54321',
    OBOTO_CLOUD_KEY: 'anon',
    OBOTO_CLOUD_AUTO_LOGIN: 'false',
    OBOTO_CLOUD_SYNC_INTERVAL: 'soon',
    OBOTO_CLOUD_PRESENCE_INTERVAL: '5000',
  });
  assert.equal(c.autoLogin, false);
  assert.equal(c.syncInterval, 30000, 'a non-numeric interval falls back to the default, not NaN');
  assert.equal(c.presenceInterval, 5000);
  assert.equal(configFrom({ OBOTO_CLOUD_URL: 'http://h', OBOTO_CLOUD_KEY: 'k', OBOTO_CLOUD_AUTO_LOGIN: 'no' }).autoLogin, true);
});

test('loadCloudConfig sees process.env changes made at run time', () => {
  const saved = { url: process.env.OBOTO_CLOUD_URL, key: process.env.OBOTO_CLOUD_KEY };
  try {
    process.env.OBOTO_CLOUD_URL = 'http://runtime.test';
    process.env.OBOTO_CLOUD_KEY = 'k';
    assert.equal(loadCloudConfig().baseUrl, 'http://runtime.test');
  } finally {
    for (const [k, v] of [['OBOTO_CLOUD_URL', saved.url], ['OBOTO_CLOUD_KEY', saved.key]]) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});

test('initialize rejects a baseUrl that is not http(s), saying so', async () => {
  const cs = new CloudSync(null, null);
  for (const baseUrl of ['ftp://files.test', 'localhost:54321', 'not a url', 'file:///etc/passwd', '']) {
    await assert.rejects(cs.initialize({ baseUrl, anonKey: 'k' }), (e) => {
      assert.equal(e.code, 'INVALID_CONFIG');
      assert.match(e.message, /baseUrl must be an http\(s\) URL/);
      return true;
    });
  }
  await assert.rejects(cs.initialize({ baseUrl: 'http://ok.test', anonKey: '' }), { code: 'INVALID_CONFIG' });
  await assert.rejects(cs.initialize({ baseUrl: 'http://ok.test', anonKey: 'k', tokenStore: 'floppy' }), { code: 'INVALID_CONFIG' });
  assert.equal(cs.isConfigured(), false);
  await cs.destroy();
});

test('status has exactly the documented keys before and after initialize', async () => {
  const cs = new CloudSync(null, null);
  const before = cs.getStatus();
  assert.deepEqual(Object.keys(before).sort(), STATUS_KEYS);
  assert.deepEqual(before, {
    configured: false, loggedIn: false, user: null, profile: null, org: null, role: null,
    linkedWorkspace: null, syncState: 'idle', syncEngineStatus: null,
  });
  await cs.initialize(null);
  assert.equal(cs.isConfigured(), false, 'initialize(null) leaves cloud sync unconfigured');
  await cs.initialize({ baseUrl: 'http://127.0.0.1:9', anonKey: 'k', tokenStore: 'memory', syncInterval: NaN });
  const after = cs.getStatus();
  assert.deepEqual(Object.keys(after).sort(), STATUS_KEYS);
  assert.equal(after.configured, true);
  assert.equal(after.loggedIn, false);
  assert.equal(cs.isLoggedIn(), false);
  await cs.destroy();
});

test('methods of later phases return their logged-out defaults', async () => {
  const cs = new CloudSync(null, null);
  await cs.initialize({ baseUrl: 'http://127.0.0.1:9', anonKey: 'k', tokenStore: 'memory' });
  assert.equal(await cs.tryAutoLogin(), false);
  assert.equal(await cs.pushWorkspaceState({ task_goal: 'x' }), null);
  assert.equal(await cs.pullWorkspaceState(), null);
  assert.deepEqual(await cs.listCloudWorkspaces(), []);
  assert.deepEqual(await cs.pushConversation('c', []), { pushed: 0 });
  assert.deepEqual(await cs.pullConversation('c'), { messages: [] });
  assert.deepEqual(await cs.listCloudConversations(), []);
  assert.deepEqual(await cs.listAgents(), []);
  assert.deepEqual(await cs.listCloudModels(), []);
  assert.equal(await cs.getUsage(), null);
  assert.deepEqual(cs.getPresence(), []);
  await cs.linkWorkspace('bbbbbbbb-0000-4000-8000-000000000001', 'x');
  await cs.unlinkWorkspace();
  await cs.broadcast('typing', { on: true });
  await assert.rejects(cs.invokeAgent('code-reviewer', 'hi'), { message: 'Not logged in to cloud', code: 'NOT_LOGGED_IN' });
  await assert.rejects(cs.aiProxyRequest('cloud', 'm', []), { code: 'NOT_LOGGED_IN' });
  await assert.rejects(async () => {
    for await (const _ of cs.aiProxyStream('m', [])) break;
  }, { code: 'NOT_LOGGED_IN' });
  assert.equal(cs.workspaceSync, null);
  assert.equal(cs.fileSync, null);
  assert.deepEqual([cs.auth.user, cs.auth.profile, cs.auth.org, cs.auth.membership], [null, null, null, null]);
  await cs.destroy();
});

test('the package loads from CommonJS too', () => {
  const out = execFileSync(process.execPath, ['-e', "const m = require('oboto-cloud'); process.stdout.write(typeof m.CloudSync + ' ' + typeof m.loadCloudConfig)"], { cwd: ROOT });
  assert.equal(out.toString(), 'function function');
});
