// Presence across processes: alice and bob, each a CloudSync in a Node process of its own,
// see each other join and leave; a killed process leaves at once (its kernel closes the
// socket), and a frozen one (socket open, nothing sent) within the cloud's idle timeout,
// shortened here with --realtime-timeout-ms.
import { before, after, afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDevcloud, SEED } from './helpers/devcloud.mjs';
import { spawnClient } from './helpers/child.mjs';

const WS = SEED.workspaces.websiteRevamp;
const ALICE = SEED.users.alice.id;
const BOB = SEED.users.bob.id;
const BOTH = [ALICE, BOB].sort().join();
// The clients heartbeat well within the cloud's timeout, so only a frozen one is dropped.
const TIMEOUT_MS = 3_000;
const HEARTBEAT_MS = 500;

let cloud;
const children = [];
before(async () => {
  cloud = await startDevcloud(['--realtime-timeout-ms', String(TIMEOUT_MS)]);
});
afterEach(async () => {
  for (const c of children.splice(0)) {
    c.kill('SIGKILL');
    await c.exited;
  }
});
after(async () => {
  await cloud?.stop();
});

const ids = (members) => members.map((m) => m.userId).sort().join();

async function start(who) {
  const c = spawnClient(cloud, who, WS, { heartbeatMs: HEARTBEAT_MS });
  children.push(c);
  await c.until((l) => l.event === 'cloud:realtime:connected', 30_000, 0, 'cloud:realtime:connected');
  return c;
}

/** The next `cloud:presence:updated` (from line `from` on) whose members are `want`. */
const presence = (c, want, from = 0, timeoutMs = 20_000) =>
  c.until(
    (l) => l.event === 'cloud:presence:updated' && l.payload.workspaceId === WS && ids(l.payload.members) === want,
    timeoutMs,
    from,
    `cloud:presence:updated with [${want}]`,
  );

async function bothOnline() {
  const alice = await start('alice');
  const bob = await start('bob');
  await presence(alice, BOTH);
  await presence(bob, BOTH);
  assert.equal(ids(await alice.ask('presence', 'presence')), BOTH);
  assert.equal(ids(await bob.ask('presence', 'presence')), BOTH);
  return { alice, bob };
}

test('two processes see each other join, with the member shape of the interface', async () => {
  const { alice, bob } = await bothOnline();
  const seenByBob = (await bob.ask('presence', 'presence')).find((m) => m.userId === ALICE);
  assert.equal(seenByBob.status, 'active');
  assert.equal(typeof seenByBob.displayName, 'string');
  assert.ok(!Number.isNaN(Date.parse(seenByBob.lastSeen)), `lastSeen ${seenByBob.lastSeen}`);
  // alice was alone first, then saw bob arrive: both states reached her as events.
  const views = alice.events('cloud:presence:updated').map((p) => ids(p.members));
  assert.equal(views[0], ALICE);
  assert.equal(views.at(-1), BOTH);
});

test('a graceful leave (destroy) removes the member from the other process', async () => {
  const { alice, bob } = await bothOnline();
  const from = alice.lines.length;
  assert.ok(typeof (await bob.ask('destroy', 'destroyed')) === 'number');
  const { code } = await bob.exited;
  assert.equal(code, 0, bob.stderr());
  await presence(alice, ALICE, from);
  assert.equal(ids(await alice.ask('presence', 'presence')), ALICE);
});

test('a SIGKILLed process leaves the other one’s presence', async () => {
  const { alice, bob } = await bothOnline();
  const from = alice.lines.length;
  bob.kill('SIGKILL');
  await bob.exited;
  // The kernel closes a killed process's sockets: within the timeout, at the latest.
  await presence(alice, ALICE, from, TIMEOUT_MS + 5_000);
  assert.equal(ids(await alice.ask('presence', 'presence')), ALICE);
});

test('a frozen process (socket open, silent) leaves within the cloud’s idle timeout', async () => {
  const { alice, bob } = await bothOnline();
  const from = alice.lines.length;
  bob.kill('SIGSTOP');
  const frozenAt = Date.now();
  try {
    // Nothing closes bob's socket but the cloud's idle timeout.
    await presence(alice, ALICE, from, TIMEOUT_MS + 5_000);
    const took = Date.now() - frozenAt;
    // Not sooner than the timeout less bob's last heartbeat interval: the idle timer did it.
    assert.ok(took >= TIMEOUT_MS - HEARTBEAT_MS - 200, `left after ${took} ms`);
  } finally {
    bob.kill('SIGKILL');
  }
  // alice herself heartbeats and stays.
  assert.equal(ids(await alice.ask('presence', 'presence')), ALICE);
});
