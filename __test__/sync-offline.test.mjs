// The durable outbox across a process restart: with the cloud stopped, one Node process
// queues 50 pushes and exits; a second process starts while the cloud is still down; the
// cloud comes back on the same port and data directory; all 50 messages arrive, once, in order.
// And within one process: what a push queued is sent once the cloud is back, without
// waiting for the next poll or the next push.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDevcloud, ROOT, DEMO_PASSWORD, SEED } from './helpers/devcloud.mjs';
import { workdir, newConversation, rowsOf, freePort, loggedIn, waitFor, history } from './helpers/sync.mjs';

let cloud;
after(async () => {
  await cloud?.stop();
});

/** Starts a host process running `body` (with `cs`, `bus`, `say(obj)` and `next()` in scope). */
function host(url, anonKey, dir, body) {
  const script = `
    import { CloudSync } from ${JSON.stringify(join(ROOT, 'cloud-sync.mjs'))};
    import { recordingEventBus } from ${JSON.stringify(join(ROOT, '__test__/helpers/host.mjs'))};
    import { createInterface } from 'node:readline';
    const lines = createInterface({ input: process.stdin });
    const queue = [];
    let waiter = null;
    lines.on('line', (l) => (waiter ? (waiter(l), (waiter = null)) : queue.push(l)));
    const next = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => (waiter = r)));
    const say = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
    const bus = recordingEventBus();
    const cs = new CloudSync(bus, null);
    await cs.initialize({ baseUrl: ${JSON.stringify(url)}, anonKey: ${JSON.stringify(anonKey)}, tokenStore: 'memory',
                          syncInterval: 500, connectTimeoutMs: 1000, requestTimeoutMs: 5000 });
    cs.setWorkingDir(${JSON.stringify(dir)});
    ${body}
    await cs.destroy();
    lines.close();
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const said = [];
  let buf = '';
  const listeners = [];
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const msg = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      said.push(msg);
      listeners.splice(0).forEach((l) => l());
    }
  });
  const exited = new Promise((resolve, reject) =>
    child.once('exit', (code) => (code === 0 ? resolve(said) : reject(new Error(`host exited ${code}: ${err}`)))),
  );
  return {
    send: (line) => child.stdin.write(line + '\n'),
    /** The next message with `step`. */
    step: (step) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const m = said.find((x) => x.step === step);
          if (m) return resolve(m);
          listeners.push(check);
        };
        exited.then(() => reject(new Error(`host exited before ${step}`)), reject);
        check();
      }),
    exited,
  };
}

const ALICE_LOGIN = `await cs.login(${JSON.stringify(SEED.users.alice.email)}, ${JSON.stringify(DEMO_PASSWORD)});`;

/** A cloud that can stop and come back on the same port with its data. */
async function restartableCloud() {
  const args = ['--port', String(await freePort()), '--data-dir', join(workdir('oboto-cloud-data-'), 'db')];
  await cloud?.stop();
  cloud = await startDevcloud(args);
  return args;
}

test('50 pushes queued offline survive a restart and arrive once when the cloud returns', async () => {
  const dir = workdir();
  const args = await restartableCloud();
  const conv = await newConversation(cloud);

  const first = host(cloud.url, cloud.anonKey, dir, `
    ${ALICE_LOGIN}
    await cs.linkWorkspace(${JSON.stringify(SEED.workspaces.websiteRevamp)});
    cs.workspaceSync.linkConversation('chat', ${JSON.stringify(conv)});
    say({ step: 'linked' });
    await next();
    const history = [];
    const results = [];
    for (let i = 0; i < 50; i++) {
      history.push({ role: i % 2 ? 'assistant' : 'user', content: 'offline ' + i });
      results.push(await cs.pushConversation(${JSON.stringify(conv)}, history));
    }
    say({ step: 'queued', results, status: cs.getStatus() });
  `);
  await first.step('linked');
  await cloud.stop();
  first.send('go');
  const queued = await first.step('queued');
  await first.exited;
  assert.deepEqual(queued.results.map((r) => [r.pushed, r.queued]), Array.from({ length: 50 }, () => [0, 1]));
  assert.equal(queued.status.syncState, 'offline');
  assert.equal(queued.status.syncEngineStatus.outboxPending, 50);
  const outboxFile = join(dir, '.cloud-outbox.jsonl');
  assert.equal(queued.status.syncEngineStatus.outboxPath, outboxFile, 'the outbox lives beside the link file');
  assert.equal(readFileSync(outboxFile, 'utf8').trim().split('\n').length, 50);

  // A new process starts while the cloud is still down; then the cloud comes back.
  const second = host(cloud.url, cloud.anonKey, dir, `
    say({ step: 'started', pending: cs.getStatus() });
    for (;;) {
      try { await cs.login(${JSON.stringify(SEED.users.alice.email)}, ${JSON.stringify(DEMO_PASSWORD)}); break; }
      catch { await new Promise((r) => setTimeout(r, 200)); }
    }
    for (let i = 0; i < 300 && cs.getStatus().syncEngineStatus.outboxPending > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const status = cs.getStatus();
    say({ step: 'drained', status, events: bus.names() });
  `);
  await second.step('started');
  cloud = await startDevcloud(args);
  const drained = await second.step('drained');
  await second.exited;
  assert.equal(drained.status.syncEngineStatus.outboxPending, 0);
  assert.equal(existsSync(outboxFile), false, 'the drained outbox is removed');

  const rows = await rowsOf(cloud, conv);
  assert.deepEqual(rows.map((r) => r.content), Array.from({ length: 50 }, (_, i) => `offline ${i}`), 'all 50, once, in order');
  assert.equal(new Set(rows.map((r) => r.id)).size, 50);
});

test('a push queued offline is sent when the cloud returns, though the engine would not poll for an hour', async () => {
  // No socket, and an hour between polls: the engine stands for one whose socket came back
  // live before its next poll, which then never comes while the socket stays up.
  const args = await restartableCloud();
  const conv = await newConversation(cloud);
  const { cs, bus } = await loggedIn(cloud, 'alice', {
    dir: workdir(),
    syncInterval: 3_600_000,
    syncDebounceMs: 100,
    realtime: false,
    connectTimeoutMs: 1000,
    requestTimeoutMs: 5000,
  });
  try {
    await cs.linkWorkspace(SEED.workspaces.websiteRevamp);
    await waitFor(bus, 'cloud:sync:completed', (p) => p.type === 'workspace');
    await cloud.stop();
    const h = history(3, 'queued');
    assert.equal((await cs.pushConversation(conv, h)).queued, 3);
    cloud = await startDevcloud(args);
    // Only the queued push itself can have the engine retry until the outbox drains.
    for (let i = 0; i < 200 && cs.getStatus().syncEngineStatus.outboxPending > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(cs.getStatus().syncEngineStatus.outboxPending, 0, 'drained');
    assert.deepEqual((await rowsOf(cloud, conv)).map((r) => r.content), h.map((m) => m.content));
  } finally {
    await cs.destroy();
  }
});

test('two processes draining one outbox at once store each row once and leave nothing queued', async () => {
  const dir = workdir();
  const args = await restartableCloud();
  const conv = await newConversation(cloud);
  const n = 40;
  const first = host(cloud.url, cloud.anonKey, dir, `
    ${ALICE_LOGIN}
    await cs.linkWorkspace(${JSON.stringify(SEED.workspaces.websiteRevamp)});
    cs.workspaceSync.linkConversation('chat', ${JSON.stringify(conv)});
    say({ step: 'linked' });
    await next();
    const history = [];
    for (let i = 0; i < ${n}; i++) {
      history.push({ role: i % 2 ? 'assistant' : 'user', content: 'offline ' + i });
      await cs.pushConversation(${JSON.stringify(conv)}, history);
    }
    say({ step: 'queued', status: cs.getStatus() });
  `);
  await first.step('linked');
  await cloud.stop();
  first.send('go');
  assert.equal((await first.step('queued')).status.syncEngineStatus.outboxPending, n);
  await first.exited;

  // Two processes on the directory, both alice's, start while the cloud is down; both drain
  // the outbox when it returns, each sending what it loaded (the same entries).
  const drainer = () => host(cloud.url, cloud.anonKey, dir, `
    say({ step: 'started' });
    for (;;) {
      try { await cs.login(${JSON.stringify(SEED.users.alice.email)}, ${JSON.stringify(DEMO_PASSWORD)}); break; }
      catch { await new Promise((r) => setTimeout(r, 100)); }
    }
    for (let i = 0; i < 300 && cs.getStatus().syncEngineStatus.outboxPending > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    say({ step: 'drained', status: cs.getStatus() });
  `);
  const drainers = [drainer(), drainer()];
  await Promise.all(drainers.map((d) => d.step('started')));
  cloud = await startDevcloud(args);
  const drained = await Promise.all(drainers.map((d) => d.step('drained')));
  await Promise.all(drainers.map((d) => d.exited));
  for (const d of drained) assert.equal(d.status.syncEngineStatus.outboxPending, 0);
  assert.equal(existsSync(join(dir, '.cloud-outbox.jsonl')), false, 'nothing is left queued');
  const rows = await rowsOf(cloud, conv);
  assert.equal(rows.length, n, 'each row once');
  assert.deepEqual(new Set(rows.map((r) => r.content)), new Set(Array.from({ length: n }, (_, i) => `offline ${i}`)));
});

/** Another process of alice's on `dir` queues two rows of `conv` while the cloud is down and
 *  exits; the cloud then comes back on `args`. */
async function queuedByAnotherProcess(dir, conv, args) {
  const queuer = host(cloud.url, cloud.anonKey, dir, `
    ${ALICE_LOGIN}
    say({ step: 'ready' });
    await next();
    const history = [{ role: 'user', content: 'queued 0' }, { role: 'assistant', content: 'queued 1' }];
    say({ step: 'queued', result: await cs.pushConversation(${JSON.stringify(conv)}, history) });
  `);
  await queuer.step('ready');
  await cloud.stop();
  queuer.send('go');
  assert.equal((await queuer.step('queued')).result.queued, 2);
  await queuer.exited;
  cloud = await startDevcloud(args);
}

test('a push sends first what another process on the directory queued since this one started', async () => {
  const dir = workdir();
  const args = await restartableCloud();
  const [queuedConv, pushedConv] = [await newConversation(cloud), await newConversation(cloud)];
  // Started before anything is queued: its own count of queued entries stays 0.
  const pusher = host(cloud.url, cloud.anonKey, dir, `
    ${ALICE_LOGIN}
    await cs.linkWorkspace(${JSON.stringify(SEED.workspaces.websiteRevamp)});
    say({ step: 'linked' });
    await next();
    const result = await cs.pushConversation(${JSON.stringify(pushedConv)}, [{ role: 'user', content: 'pushed' }]);
    say({ step: 'pushed', result });
  `);
  await pusher.step('linked');
  await queuedByAnotherProcess(dir, queuedConv, args);
  pusher.send('go');
  const { result } = await pusher.step('pushed');
  await pusher.exited;
  assert.equal(result.pushed, 1);
  assert.deepEqual((await rowsOf(cloud, queuedConv)).map((r) => r.content), ['queued 0', 'queued 1'], 'sent before the push');
  assert.equal(existsSync(join(dir, '.cloud-outbox.jsonl')), false, 'nothing is left queued');
});

test('an idle linked process drains what another process on the directory queued', async () => {
  const dir = workdir();
  const args = await restartableCloud();
  const conv = await newConversation(cloud);
  // Linked before anything is queued, and never pushes: only its engine can send them.
  const idle = host(cloud.url, cloud.anonKey, dir, `
    ${ALICE_LOGIN}
    await cs.linkWorkspace(${JSON.stringify(SEED.workspaces.websiteRevamp)});
    say({ step: 'linked' });
    await next();
  `);
  await idle.step('linked');
  await queuedByAnotherProcess(dir, conv, args);
  let rows = [];
  for (const end = Date.now() + 30_000; Date.now() < end && rows.length < 2; await sleep(200)) rows = await rowsOf(cloud, conv);
  idle.send('go');
  await idle.exited;
  assert.deepEqual(rows.map((r) => r.content), ['queued 0', 'queued 1'], 'sent by the idle process');
  assert.equal(existsSync(join(dir, '.cloud-outbox.jsonl')), false, 'nothing is left queued');
});
