// The sync engine: debounce, interval, conflicts, status and offline recovery.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startDevcloud, SEED } from './helpers/devcloud.mjs';
import { loggedIn, workdir, newConversation, rowsOf, requests, waitFor, freePort } from './helpers/sync.mjs';

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

async function linkedAlice(c, opts = {}) {
  const dir = workdir();
  const r = await loggedIn(c, 'alice', { dir, syncDebounceMs: 0, syncInterval: 3_600_000, ...opts });
  instances.push(r.cs);
  await r.cs.linkWorkspace(opts.workspace ?? WS);
  return { ...r, dir };
}

const cloudGoal = async (c, ws = WS) => (await c.serviceRest(`workspaces?id=eq.${ws}&select=task_goal`))[0].task_goal;

test('a change on both sides is a conflict: the cloud version is kept and the local one handed back', async () => {
  // Without a socket, the remote change stays unseen until the push finds it: a live socket
  // would have pulled it first, making the push a plain last write.
  const { cs, bus } = await linkedAlice(cloud, { realtime: false });
  // The engine's first cycle pulls the workspace right after the link: one that reads the
  // row after the remote change takes it as the new base, and the push is no conflict.
  await waitFor(bus, 'cloud:sync:completed', (p) => p.type === 'workspace');
  await cloud.serviceRest(`workspaces?id=eq.${WS}`, { method: 'PATCH', body: { task_goal: 'edited elsewhere' } });
  const result = await cs.pushWorkspaceState({ task_goal: 'edited here', current_step: 'local step' });
  assert.equal(result, null, 'nothing was written');
  const conflict = await waitFor(bus, 'cloud:sync:conflict');
  assert.equal(conflict.type, 'workspace');
  assert.equal(conflict.workspaceId, WS);
  assert.equal(conflict.local.task_goal, 'edited here');
  assert.equal(conflict.cloud.task_goal, 'edited elsewhere');
  assert.equal(await cloudGoal(cloud), 'edited elsewhere');
  assert.equal(cs.getStatus().syncState, 'conflict');
  await waitFor(bus, 'cloud:sync-status', (p) => p.state === 'conflict');

  // The host applied the cloud version; its next change goes through.
  const row = await cs.pushWorkspaceState({ task_goal: 'merged' });
  assert.equal(row.task_goal, 'merged');
  assert.equal(await cloudGoal(cloud), 'merged');
  assert.equal(cs.getStatus().syncState, 'synced');
  await waitFor(bus, 'cloud:sync:resolved', (p) => p.type === 'workspace');
});

test('only one side changed: last write wins without a conflict', async () => {
  const { cs, bus } = await linkedAlice(cloud);
  assert.equal((await cs.pushWorkspaceState({ task_goal: 'mine 1' })).task_goal, 'mine 1');
  assert.equal((await cs.pushWorkspaceState({ task_goal: 'mine 2' })).task_goal, 'mine 2');
  // Events arrive in order: a conflict would come before the second `pushed`.
  await waitFor(bus, 'cloud:workspace:pushed', () => bus.names().filter((n) => n === 'cloud:workspace:pushed').length >= 2);
  assert.ok(!bus.names().includes('cloud:sync:conflict'));
});

test('local changes are debounced into one push', async () => {
  const { cs, bus } = await linkedAlice(cloud, { syncDebounceMs: 2000, workspace: SEED.workspaces.dataPipeline });
  await waitFor(bus, 'cloud:sync:completed', (p) => p.type === 'workspace');
  await cloud.resetStats();
  for (let i = 1; i <= 5; i++) {
    assert.equal(await cs.pushWorkspaceState({ task_goal: `draft ${i}` }), null, 'the engine takes it');
  }
  await waitFor(bus, 'cloud:workspace:pushed');
  assert.equal(await requests(cloud, 'PATCH /rest/v1/workspaces'), 1);
  assert.equal(await cloudGoal(cloud, SEED.workspaces.dataPipeline), 'draft 5');
});

test('the interval pulls a change made elsewhere (no socket)', async () => {
  const { bus } = await linkedAlice(cloud, { syncInterval: 300, realtime: false });
  await waitFor(bus, 'cloud:sync:completed', (p) => p.type === 'workspace');
  await cloud.serviceRest(`workspaces?id=eq.${WS}`, { method: 'PATCH', body: { task_goal: 'from the web app' } });
  const update = await waitFor(bus, 'cloud:workspace:remote-update', (p) => p.task_goal === 'from the web app');
  assert.equal(update.task_goal, 'from the web app');
  const pulled = await waitFor(bus, 'cloud:workspace:pulled', (p) => p.state.task_goal === 'from the web app');
  assert.equal(pulled.workspaceId, WS);
});

test('the engine starts on link and stops on unlink, logout and destroy', async () => {
  const { cs } = await linkedAlice(cloud);
  assert.equal(cs.getStatus().syncEngineStatus.running, true);
  await cs.unlinkWorkspace();
  assert.equal(cs.getStatus().syncEngineStatus.running, false);
  await cs.linkWorkspace(WS);
  assert.equal(cs.getStatus().syncEngineStatus.running, true);
  await cs.logout();
  assert.equal(cs.getStatus().syncEngineStatus, null);
  const { cs: other } = await linkedAlice(cloud);
  await other.destroy();
  assert.equal(other.getStatus().syncEngineStatus, null);
});

test('status goes offline when the cloud stops, and back when it returns; queued pushes arrive once', async () => {
  const data = join(workdir('oboto-cloud-data-'), 'db');
  const args = ['--port', String(await freePort()), '--data-dir', data];
  let own = await startDevcloud(args);
  try {
    const { cs, bus } = await linkedAlice(own, { syncInterval: 500, connectTimeoutMs: 1000, requestTimeoutMs: 3000 });
    const conv = await newConversation(own);
    await own.stop();

    const r = await cs.pushConversation(conv, [{ role: 'user', content: 'written offline' }]);
    assert.deepEqual([r.pushed, r.queued], [0, 1]);
    assert.equal(cs.getStatus().syncState, 'offline');
    assert.equal(cs.getStatus().syncEngineStatus.outboxPending, 1);
    const offline = bus.events.findIndex((e) => e.name === 'cloud:sync-status' && e.payload.state === 'offline');
    assert.ok(offline >= 0, 'offline was announced');
    // The engine's retries while the cloud is away do not flap the status to `syncing`.
    const retry = bus.events.length;
    await waitFor(bus, 'cloud:sync:error', () => true, 10_000, retry);
    await waitFor(bus, 'cloud:sync:error', () => true, 10_000, bus.events.length);
    assert.equal(cs.getStatus().syncState, 'offline');

    const mark = bus.events.length;
    own = await startDevcloud(args);
    await waitFor(bus, 'cloud:sync-status', (p) => p.state === 'synced', 30_000, mark);
    const states = bus.events
      .slice(offline + 1)
      .filter((e) => e.name === 'cloud:sync-status')
      .map((e) => e.payload.state);
    const until = states.slice(0, states.indexOf('synced'));
    assert.deepEqual(until, until.map(() => 'offline'), 'offline until synced');
    assert.equal(cs.getStatus().syncEngineStatus.outboxPending, 0);
    const rows = await rowsOf(own, conv);
    assert.deepEqual(rows.map((x) => x.content), ['written offline']);
    assert.equal((await cs.pushConversation(conv, [{ role: 'user', content: 'written offline' }])).pushed, 0);
    assert.equal((await rowsOf(own, conv)).length, 1);
  } finally {
    await own.stop();
  }
});
