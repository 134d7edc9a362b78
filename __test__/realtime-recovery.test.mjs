// Realtime when things go wrong: the local cloud restarts under a live socket, and tokens
// expire under a joined channel. Every row must reach the addon exactly once, live or by
// the catch-up after a reconnect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDevcloud, SEED } from './helpers/devcloud.mjs';
import { loggedIn, workdir, newConversation, waitFor, freePort } from './helpers/sync.mjs';

const WS = SEED.workspaces.websiteRevamp;

/** bob writes a message through the service role (so it is not alice's own push). */
const insert = (cloud, conv, content) =>
  cloud.serviceRest('messages', {
    method: 'POST',
    body: { conversation_id: conv, role: 'user', content, sender_user_id: SEED.users.bob.id },
  });

const received = (bus, prefix) =>
  bus.events
    .filter((e) => e.name === 'cloud:message:received' && e.payload.content.startsWith(prefix))
    .map((e) => e.payload.content);

async function until(pred, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`not within ${timeoutMs} ms: ${what()}`);
    await sleep(50);
  }
}

test('a cloud restarted under a live socket: every row arrives once, live or by catch-up', async () => {
  const args = ['--port', String(await freePort()), '--data-dir', join(workdir('oboto-rt-data-'), 'db')];
  let cloud = await startDevcloud(args);
  let cs;
  try {
    const conv = await newConversation(cloud);
    const r = await loggedIn(cloud, 'alice', { dir: workdir(), syncDebounceMs: 0, connectTimeoutMs: 1000 });
    cs = r.cs;
    const { bus } = r;
    await cs.linkWorkspace(WS);
    await waitFor(bus, 'cloud:realtime:connected');
    await sleep(300); // the channel re-joins with the new conversation

    for (let i = 0; i < 5; i++) await insert(cloud, conv, `r-${i}`);
    await until(() => received(bus, 'r-').length >= 5, 10_000, () => received(bus, 'r-').join());

    await cloud.stop();
    await waitFor(bus, 'cloud:realtime:disconnected');
    const mark = bus.events.length;
    cloud = await startDevcloud(args);
    // Written before the addon is back: only the catch-up can deliver these.
    for (let i = 5; i < 10; i++) await insert(cloud, conv, `r-${i}`);
    await waitFor(bus, 'cloud:realtime:connected', () => true, 30_000, mark);
    for (let i = 10; i < 15; i++) await insert(cloud, conv, `r-${i}`);

    const all = Array.from({ length: 15 }, (_, i) => `r-${i}`);
    await until(() => received(bus, 'r-').length >= 15, 20_000, () => received(bus, 'r-').join());
    await sleep(500);
    assert.deepEqual([...received(bus, 'r-')].sort(), [...all].sort(), 'each row exactly once');
  } finally {
    await cs?.destroy();
    await cloud.stop();
  }
});

test('a joined channel keeps delivering across three token expiries', async () => {
  const cloud = await startDevcloud(['--jwt-exp', '15']);
  let cs;
  try {
    const conv = await newConversation(cloud);
    const r = await loggedIn(cloud, 'alice', { dir: workdir(), syncDebounceMs: 0 });
    cs = r.cs;
    const { bus } = r;
    await cs.linkWorkspace(WS);
    await waitFor(bus, 'cloud:realtime:connected');
    await sleep(300);
    // One row in each token's lifetime: at 0 s, after the first, second and third expiry.
    for (let i = 0; i < 4; i++) {
      if (i) await sleep(16_000);
      await insert(cloud, conv, `t-${i}`);
      await until(() => received(bus, 't-').length > i, 10_000, () => `after ${i} expiries: ${received(bus, 't-').join()}`);
    }
    assert.deepEqual(received(bus, 't-'), ['t-0', 't-1', 't-2', 't-3']);
  } finally {
    await cs?.destroy();
    await cloud.stop();
  }
});

/** A TCP relay to the cloud that can go silent: `freeze()` stops passing bytes either way
 * while keeping every connection open, as a dead NAT entry or a sleeping laptop does. */
async function freezableRelay(target) {
  const { hostname, port } = new URL(target);
  let frozen = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    const pass = (from, to) => from.on('data', (d) => !frozen && to.write(d));
    pass(client, upstream);
    pass(upstream, client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    freeze: () => (frozen = true),
    thaw: () => (frozen = false),
    close: () => new Promise((r) => server.close(r)),
  };
}

const HEARTBEAT = 500;

test('a socket that goes silent is dropped within two heartbeats, and reconnects', async () => {
  const cloud = await startDevcloud();
  const relay = await freezableRelay(cloud.url);
  let cs;
  try {
    const r = await loggedIn({ ...cloud, url: relay.url }, 'alice', {
      dir: workdir(),
      syncDebounceMs: 0,
      realtimeHeartbeatMs: HEARTBEAT,
      connectTimeoutMs: 1000,
    });
    cs = r.cs;
    const { bus } = r;
    await cs.linkWorkspace(WS);
    await waitFor(bus, 'cloud:realtime:connected');
    const mark = bus.events.length;
    relay.freeze();
    const frozenAt = Date.now();
    await waitFor(bus, 'cloud:realtime:disconnected', () => true, 5_000, mark);
    const noticed = Date.now() - frozenAt;
    // Two heartbeat intervals, and a second of slack for a loaded machine.
    assert.ok(noticed < 2 * HEARTBEAT + 1_000, `noticed after ${noticed} ms`);
    relay.thaw();
    await waitFor(bus, 'cloud:realtime:connected', () => true, 20_000, mark);
  } finally {
    await cs?.destroy();
    await relay.close();
    await cloud.stop();
  }
});
