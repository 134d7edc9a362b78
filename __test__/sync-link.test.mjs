// The workspace link (.cloud-link.json) and the workspace state, against the local cloud.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDevcloud, SEED, ROOT, DEMO_PASSWORD } from './helpers/devcloud.mjs';
import { JWT_PATTERN } from './helpers/host.mjs';
import { startProxy } from './helpers/proxy.mjs';
import { loggedIn, workdir, newConversation, requests, waitFor } from './helpers/sync.mjs';

const WS = SEED.workspaces.websiteRevamp;
let cloud;
const instances = [];
before(async () => {
  cloud = await startDevcloud();
});
after(async () => {
  for (const cs of instances) await cs.destroy();
  await cloud?.stop();
});

// No realtime socket: these tests count the REST requests one instance makes, and the sockets
// of the instances before it would catch up on each new conversation (realtime.test.mjs).
async function alice(opts = {}) {
  const r = await loggedIn(cloud, 'alice', { syncDebounceMs: 0, syncInterval: 3_600_000, realtime: false, ...opts });
  instances.push(r.cs);
  return r;
}

const readLink = (dir) => JSON.parse(readFileSync(join(dir, '.cloud-link.json'), 'utf8'));

test('link and unlink round trip; a new instance loads the link at login', async () => {
  const dir = workdir();
  const { cs, bus } = await alice({ dir });
  assert.equal(cs.workspaceSync.getLinkedWorkspaceId(), null);
  await cs.linkWorkspace(WS);
  const file = readLink(dir);
  assert.equal(file.version, 1);
  assert.equal(file.cloudWorkspaceId, WS);
  assert.equal(file.cloudWorkspaceName, 'Website Revamp');
  assert.ok(Date.parse(file.linkedAt));
  assert.deepEqual(file.conversations, {});
  assert.deepEqual(file.syncConfig, {
    autoSync: true, syncIntervalMs: 3_600_000, syncConversations: true, syncWorkspaceState: true, syncFiles: false,
  });
  const linked = await waitFor(bus, 'cloud:workspace:linked');
  assert.deepEqual([linked.localDir, linked.cloudWorkspaceId, linked.cloudWorkspaceName], [dir, WS, 'Website Revamp']);
  assert.deepEqual(cs.getStatus().linkedWorkspace, { id: WS, name: 'Website Revamp' });
  assert.equal(cs.getStatus().syncEngineStatus.running, true, 'auto-sync starts on link');
  assert.equal(cs.workspaceSync.getLinkedWorkspaceId(), WS);
  assert.equal(cs.workspaceSync.getLinkData().cloudWorkspaceId, WS);

  const second = await alice({ dir });
  assert.equal(second.cs.workspaceSync.getLinkedWorkspaceId(), WS, 'loaded at login');
  assert.equal(second.cs.getStatus().syncEngineStatus.running, true);

  await cs.unlinkWorkspace();
  assert.equal(existsSync(join(dir, '.cloud-link.json')), false);
  assert.equal((await waitFor(bus, 'cloud:workspace:unlinked')).cloudWorkspaceId, WS);
  assert.equal(cs.getStatus().linkedWorkspace, null);
  assert.equal(cs.getStatus().syncEngineStatus.running, false, 'auto-sync stops on unlink');
  assert.equal(cs.workspaceSync.getLinkedWorkspaceId(), null);
  assert.equal(await cs.pushWorkspaceState({ task_goal: 'x' }), null, 'not linked');
  assert.deepEqual(await cs.listCloudConversations(), []);
});

test('workspaceSync is null before login; the link follows setWorkingDir', async () => {
  const { cs: fresh } = await loggedIn(cloud, 'alice');
  await fresh.logout();
  assert.equal(fresh.workspaceSync, null);
  fresh.destroy();

  const linkedDir = workdir();
  const other = workdir();
  const { cs } = await alice({ dir: linkedDir });
  await cs.linkWorkspace(WS);
  cs.setWorkingDir(other);
  assert.equal(cs.workspaceSync.getLinkedWorkspaceId(), null);
  assert.equal(cs.getStatus().syncEngineStatus.running, false);
  cs.setWorkingDir(linkedDir);
  assert.equal(cs.workspaceSync.getLinkedWorkspaceId(), WS);
  assert.equal(cs.getStatus().syncEngineStatus.running, true);
  await cs.logout();
  assert.equal(cs.getStatus().linkedWorkspace, null);
  assert.equal(cs.getStatus().syncEngineStatus, null, 'stops on logout');
});

test('a link file written by the old modules is read, and its unknown keys survive rewrites', async () => {
  const dir = workdir();
  const conv = await newConversation(cloud);
  writeFileSync(
    join(dir, '.cloud-link.json'),
    JSON.stringify({ workspaceId: WS, linkedAt: '2025-01-01T00:00:00.000Z', conversations: { chat: conv }, hostKey: { keep: [1, 2] } }),
  );
  const { cs } = await alice({ dir });
  assert.equal(cs.workspaceSync.getLinkedWorkspaceId(), WS);
  assert.deepEqual(cs.workspaceSync.getLinkData().conversations.chat, { cloudConvId: conv });
  const r = await cs.pushConversation(conv, [{ role: 'user', content: 'hello' }]);
  assert.equal(r.pushed, 1);
  const file = readLink(dir);
  assert.deepEqual(file.hostKey, { keep: [1, 2] });
  assert.equal(file.workspaceId, WS);
  assert.equal(file.conversations.chat.cloudConvId, conv);
  assert.equal(file.conversations.chat.pushedCount, 1);
  assert.ok(Date.parse(file.conversations.chat.lastSyncAt));
});

test('a corrupt link file is reported, treated as not linked, and never overwritten', async () => {
  const dir = workdir();
  const corrupt = `{"version":1,"cloudWorkspaceId":"${WS}","cloudWorkspaceNa`;
  writeFileSync(join(dir, '.cloud-link.json'), corrupt);
  const { cs, bus } = await alice({ dir });
  const status = await waitFor(bus, 'cloud:sync-status');
  assert.equal(status?.state, 'error');
  assert.match(status.error, /cloud-link\.json/);
  assert.equal(cs.getStatus().syncState, 'error');
  assert.equal(cs.getStatus().linkedWorkspace, null);
  assert.equal(cs.workspaceSync.getLinkedWorkspaceId(), null);
  assert.equal(await cs.pushWorkspaceState({ task_goal: 'x' }), null);
  const conv = await newConversation(cloud);
  await cs.pushConversation(conv, [{ role: 'user', content: 'hi' }]);
  assert.equal(readFileSync(join(dir, '.cloud-link.json'), 'utf8'), corrupt, 'left as it was');

  await cs.linkWorkspace(WS);
  assert.equal(readLink(dir).cloudWorkspaceId, WS);
  const aside = readdirSync(dir).filter((f) => f.startsWith('.cloud-link.json.corrupt-'));
  assert.equal(aside.length, 1, 'the unreadable file was moved aside, not lost');
  assert.equal(readFileSync(join(dir, aside[0]), 'utf8'), corrupt);
  assert.notEqual(cs.getStatus().syncState, 'error');
});

test('linking checks that the workspace exists and is visible', async () => {
  const dir = workdir();
  const { cs } = await alice({ dir });
  await assert.rejects(cs.linkWorkspace(SEED.workspaces.secretPlans), { code: 'INVALID_ARGUMENT' }, "Globex's workspace");
  await assert.rejects(cs.linkWorkspace('00000000-0000-4000-8000-00000000dead'), { code: 'INVALID_ARGUMENT' });
  assert.equal(existsSync(join(dir, '.cloud-link.json')), false);
  const { cs: noDir } = await alice();
  await assert.rejects(noDir.linkWorkspace(WS), { code: 'NO_WORKING_DIR' });
});

test('malformed ids are rejected before any request', async () => {
  // Counted on the way from this instance alone: the engines the earlier tests linked may
  // still be in their first cycle, and the cloud's own counters would see their requests.
  const proxy = await startProxy(cloud.url);
  try {
    const dir = workdir();
    const { cs } = await alice({ dir, baseUrl: proxy.url });
    const conv = await newConversation(cloud);
    const before = proxy.stats.requests;
    const bad = 'x&org_id=neq.0';
    await assert.rejects(cs.linkWorkspace(bad), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(cs.pushConversation(bad, [{ role: 'user', content: 'x' }]), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(cs.pullConversation(bad), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(cs.pullConversation(conv, `2026-01-01T00:00:00Z,id.gt.0`), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => cs.workspaceSync.linkConversation('chat', bad), { code: 'INVALID_ARGUMENT' });
    assert.equal(proxy.stats.requests, before, 'no request was made');
  } finally {
    await proxy.close();
  }
});

test('listCloudWorkspaces: the documented fields, most recently active first', async () => {
  const { cs } = await alice();
  const list = await cs.listCloudWorkspaces();
  assert.ok(list.some((w) => w.id === SEED.workspaces.websiteRevamp));
  assert.ok(list.some((w) => w.id === SEED.workspaces.dataPipeline));
  for (const w of list) {
    assert.deepEqual(Object.keys(w).sort(), ['current_step', 'description', 'id', 'last_active_at', 'name', 'slug', 'status', 'task_goal']);
  }
  const times = list.map((w) => (w.last_active_at ? Date.parse(w.last_active_at) : -Infinity));
  assert.deepEqual(times, [...times].sort((a, b) => b - a));
  assert.ok(!list.some((w) => w.id === SEED.workspaces.secretPlans), "no other organization's workspace");
  const { cs: out } = await loggedIn(cloud, 'alice');
  await out.logout();
  assert.deepEqual(await out.listCloudWorkspaces(), []);
  out.destroy();
});

test('push and pull the workspace state, with events', async () => {
  const dir = workdir();
  const { cs, bus } = await alice({ dir });
  await cs.linkWorkspace(SEED.workspaces.dataPipeline);
  await cloud.resetStats();
  const state = { task_goal: 'Load the warehouse', current_step: 'extract', status: 'active', progress_data: { pct: 40 }, next_steps: ['transform'], shared_memory: { k: 'v' }, name: 'ignored' };
  const row = await cs.pushWorkspaceState(state);
  assert.equal(row.task_goal, 'Load the warehouse');
  assert.deepEqual(row.progress_data, { pct: 40 });
  assert.equal(row.name, 'Data Pipeline', 'only state fields are written');
  assert.equal(await requests(cloud, 'PATCH /rest/v1/workspaces'), 1);
  assert.equal((await waitFor(bus, 'cloud:workspace:pushed')).workspaceId, SEED.workspaces.dataPipeline);
  const pulled = await cs.pullWorkspaceState();
  assert.deepEqual(
    Object.keys(pulled).sort(),
    ['current_step', 'name', 'next_steps', 'progress_data', 'shared_memory', 'slug', 'status', 'task_goal', 'updated_at'],
  );
  assert.equal(pulled.current_step, 'extract');
  const ev = await waitFor(bus, 'cloud:workspace:pulled');
  assert.equal(ev.workspaceId, SEED.workspaces.dataPipeline);
  assert.equal(ev.state.task_goal, 'Load the warehouse');
  assert.equal(cs.getStatus().syncState, 'synced');
  assert.ok(readLink(dir).workspaceUpdatedAt, 'the conflict base is kept in the link file');
  for (const e of bus.events) assert.doesNotMatch(JSON.stringify(e.payload), JWT_PATTERN);
  assert.doesNotMatch(JSON.stringify(cs.getStatus()), JWT_PATTERN);
});

test('killing the process in the middle of a burst of link writes leaves a valid file', async () => {
  const dir = workdir();
  const { cs } = await alice({ dir });
  await cs.linkWorkspace(WS);
  const script = `
    import { CloudSync } from ${JSON.stringify(join(ROOT, 'cloud-sync.mjs'))};
    const cs = new CloudSync(null, null);
    await cs.initialize({ baseUrl: ${JSON.stringify(cloud.url)}, anonKey: ${JSON.stringify(cloud.anonKey)}, tokenStore: 'memory', syncInterval: 3600000 });
    cs.setWorkingDir(${JSON.stringify(dir)});
    await cs.login('alice@acme.test', ${JSON.stringify(DEMO_PASSWORD)});
    const big = 'x'.repeat(2000);
    let i = 0;
    for (;;) {
      cs.workspaceSync.linkConversation('conv-' + (i % 200) + big, '${SEED.conversations.acmeChat}'.slice(0, 28) + String(i % 100000).padStart(8, '0'));
      if (++i === 50) process.stdout.write('writing\\n');
    }
  `;
  for (let round = 0; round < 3; round++) {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    await new Promise((resolve, reject) => {
      child.stdout.once('data', resolve);
      child.once('exit', (code) => reject(new Error(`writer exited ${code}: ${err}`)));
    });
    await new Promise((r) => setTimeout(r, 50 + round * 100));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const file = readLink(dir);
    assert.equal(file.cloudWorkspaceId, WS, `round ${round}: a complete file`);
    assert.ok(Object.keys(file.conversations).length > 0);
  }
});
