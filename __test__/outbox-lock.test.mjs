// The outbox's cross-process lock held by another process (here `flock(1)`, which takes the
// same advisory lock as the addon) for longer than a write waits: the failure is reported as
// `cloud:sync:error` with code OUTBOX_LOCKED, and nothing is lost: once the lock is let go,
// what was to be sent arrives, once.
import { after, afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDevcloud, SEED } from './helpers/devcloud.mjs';
import { linkedAlice, newConversation, rowsOf, workdir, freePort, waitFor } from './helpers/sync.mjs';

let cloud;
const cleanups = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
after(async () => {
  await cloud?.stop();
});

async function restartableCloud() {
  const args = ['--port', String(await freePort()), '--data-dir', join(workdir('oboto-cloud-data-'), 'db')];
  await cloud?.stop();
  cloud = await startDevcloud(args);
  return args;
}

/** Another process holding the outbox lock of `dir` until `release()`. */
async function holdLock(dir) {
  const child = spawn('flock', ['-x', join(dir, '.cloud-outbox.jsonl.lock'), '-c', 'echo held; read _'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const [first] = await once(child.stdout, 'data');
  assert.equal(first.toString().trim(), 'held');
  const exited = once(child, 'exit');
  const release = async () => {
    if (child.exitCode === null) {
      child.stdin.end('\n');
      await exited;
    }
  };
  cleanups.push(release);
  return release;
}

async function drained(cs, timeoutMs = 30_000) {
  const until = Date.now() + timeoutMs;
  while (cs.getStatus().syncEngineStatus?.outboxPending > 0) {
    if (Date.now() > until) throw new Error(`outbox not drained: ${JSON.stringify(cs.getStatus().syncEngineStatus)}`);
    await sleep(100);
  }
}

const lockedErrors = (bus, from) =>
  bus.events.slice(from).filter((e) => e.name === 'cloud:sync:error' && e.payload.code === 'OUTBOX_LOCKED');

test('an engine cycle that cannot take the outbox lock reports OUTBOX_LOCKED; the queued rows arrive once after', async () => {
  const args = await restartableCloud();
  const conv = await newConversation(cloud);
  const { cs, bus, dir } = await linkedAlice(cloud, conv, { realtime: false });
  cleanups.push(() => cs.destroy());
  await cloud.stop();
  const h = [
    { role: 'user', content: 'locked 0' },
    { role: 'assistant', content: 'locked 1' },
  ];
  assert.equal((await cs.pushConversation(conv, h)).queued, 2);

  const release = await holdLock(dir);
  const from = bus.events.length;
  cloud = await startDevcloud(args);
  // As OUTBOX_FULL is: an outbox problem, with the file it is about.
  const error = await waitFor(bus, 'cloud:sync:error', (p) => p.type === 'outbox' && p.code === 'OUTBOX_LOCKED', 30_000, from);
  assert.equal(error.path, join(dir, '.cloud-outbox.jsonl'));
  assert.equal(typeof error.error, 'string');
  assert.equal(cs.getStatus().syncEngineStatus.outboxPending, 1, 'the entry is still queued');

  await release();
  await drained(cs);
  assert.deepEqual((await rowsOf(cloud, conv)).map((r) => r.content), ['locked 0', 'locked 1'], 'each once');
});

test('a workspace state queued while the outbox is locked is reported, kept, and pushed once the lock is free', async () => {
  const args = await restartableCloud();
  const { cs, bus, dir } = await linkedAlice(cloud, null, { realtime: false, syncDebounceMs: 0 });
  cleanups.push(() => cs.destroy());
  await waitFor(bus, 'cloud:sync:completed', (p) => p.type === 'workspace');
  await cloud.stop();
  const release = await holdLock(dir);
  const from = bus.events.length;
  await assert.rejects(cs.pushWorkspaceState({ task_goal: 'kept through the lock' }));
  assert.ok(
    lockedErrors(bus, from).some((e) => e.payload.type === 'outbox' && e.payload.path === join(dir, '.cloud-outbox.jsonl')),
    'OUTBOX_LOCKED reported as an outbox problem',
  );

  await release();
  cloud = await startDevcloud(args);
  const goal = async () =>
    (await cloud.serviceRest(`workspaces?id=eq.${SEED.workspaces.websiteRevamp}&select=task_goal`))[0].task_goal;
  let now = await goal();
  for (let i = 0; i < 300 && now !== 'kept through the lock'; i++) {
    await sleep(100);
    now = await goal();
  }
  assert.equal(now, 'kept through the lock', 'the state was not lost');
});

test('a push that cannot queue for the lock rejects with OUTBOX_LOCKED, reported; the next push sends its messages once', async () => {
  const args = await restartableCloud();
  const conv = await newConversation(cloud);
  const { cs, bus, dir } = await linkedAlice(cloud, conv, { realtime: false });
  cleanups.push(() => cs.destroy());
  await cloud.stop();
  const release = await holdLock(dir);
  const from = bus.events.length;
  const h = [{ role: 'user', content: 'not queued 0' }];
  await assert.rejects(cs.pushConversation(conv, h), (e) => e.code === 'OUTBOX_LOCKED');
  assert.ok(
    lockedErrors(bus, from).some((e) => e.payload.type === 'outbox' && e.payload.path === join(dir, '.cloud-outbox.jsonl')),
    'OUTBOX_LOCKED reported as an outbox problem',
  );

  await release();
  cloud = await startDevcloud(args);
  h.push({ role: 'assistant', content: 'not queued 1' });
  assert.equal((await cs.pushConversation(conv, h)).pushed, 2);
  assert.deepEqual((await rowsOf(cloud, conv)).map((r) => r.content), ['not queued 0', 'not queued 1'], 'each once');
});

test('a queued workspace state sent while the lock is held is not sent again over a newer state', async () => {
  const args = await restartableCloud();
  const { cs, bus, dir } = await linkedAlice(cloud, null, { realtime: false, syncDebounceMs: 0 });
  cleanups.push(() => cs.destroy());
  await waitFor(bus, 'cloud:sync:completed', (p) => p.type === 'workspace');
  await cloud.stop();
  await cs.pushWorkspaceState({ task_goal: 'queued offline' }).catch(() => null);
  assert.equal(cs.getStatus().syncEngineStatus.outboxPending, 1, 'the state is queued');

  // The cloud back, the queued state is sent, but not taken out of the outbox: locked.
  const release = await holdLock(dir);
  cloud = await startDevcloud(args);
  const goal = async () =>
    (await cloud.serviceRest(`workspaces?id=eq.${SEED.workspaces.websiteRevamp}&select=task_goal`))[0].task_goal;
  let now = await goal();
  for (let i = 0; i < 300 && now !== 'queued offline'; i++) {
    await sleep(100);
    now = await goal();
  }
  assert.equal(now, 'queued offline');
  assert.ok(cs.getStatus().syncEngineStatus.outboxPending > 0, 'still queued: the lock is held');
  // The host moves on; then the lock is let go and the entry leaves the outbox.
  assert.equal((await cs.pushWorkspaceState({ task_goal: 'newer, pushed directly' })).task_goal, 'newer, pushed directly');
  await release();
  await drained(cs);
  assert.equal(await goal(), 'newer, pushed directly', 'the queued state did not overwrite the newer one');
});
