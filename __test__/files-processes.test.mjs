// Two processes syncing one directory at once (two windows of the app, or the app and a
// script): they take turns, so neither removes the other's downloads in flight or writes
// back a manifest older than the other's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileSuite, put, sha } from './helpers/files.mjs';
import { loggedIn, workdir, waitFor } from './helpers/sync.mjs';
import { ROOT, SEED, DEMO_PASSWORD } from './helpers/devcloud.mjs';

const suite = fileSuite();
const { user, newWorkspace } = suite;

/** A process of alice's that syncs `dir` once told to, and prints the result. */
function syncer(ws, dir) {
  const script = `
    import { CloudSync } from ${JSON.stringify(join(ROOT, 'cloud-sync.mjs'))};
    import { recordingEventBus } from ${JSON.stringify(join(ROOT, '__test__/helpers/host.mjs'))};
    import { createInterface } from 'node:readline';
    const say = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
    const cs = new CloudSync(recordingEventBus(), null);
    await cs.initialize({ baseUrl: ${JSON.stringify(suite.cloud.url)}, anonKey: ${JSON.stringify(suite.cloud.anonKey)},
                          tokenStore: 'memory', syncInterval: 3600000 });
    await cs.login(${JSON.stringify(SEED.users.alice.email)}, ${JSON.stringify(DEMO_PASSWORD)});
    say({ ready: true });
    const lines = createInterface({ input: process.stdin });
    for await (const _ of lines) break;
    let result;
    try { result = await cs.fileSync.syncFiles(${JSON.stringify(ws)}, ${JSON.stringify(dir)}); }
    catch (e) { result = { error: String(e), code: e.code }; }
    say({ result });
    await cs.destroy();
    lines.close();
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const said = [];
  const waiters = [];
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) said.push(JSON.parse(buf.slice(0, i)));
    waiters.splice(0).forEach((w) => w());
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const next = (key) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const m = said.find((x) => key in x);
        if (m) resolve(m[key]);
        else waiters.push(check);
      };
      exited.then(() => reject(new Error(`syncer exited before ${key}: ${err}`)));
      check();
    });
  return { next, go: () => child.stdin.write('go\n'), exited };
}

/** Every file under `dir` but sync's own, relative → its bytes' hash. */
function tree(dir) {
  const out = {};
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const rel = relative(dir, join(e.parentPath, e.name));
    if (rel.startsWith('.cloud-')) continue;
    out[rel] = sha(readFileSync(join(dir, rel)));
  }
  return out;
}

test('two processes syncing one directory with downloads take turns: no failure, no conflict, one consistent result', async () => {
  const ws = await newWorkspace();
  const { cs } = await user();
  const src = workdir();
  for (let i = 0; i < 150; i++) put(src, `docs/n${i}.md`, `note ${i}`);
  for (let i = 0; i < 4; i++) put(src, `data/blob${i}.bin`, randomBytes(2 * 1024 * 1024));
  await cs.fileSync.syncFiles(ws, src);

  const dir = workdir();
  const both = [syncer(ws, dir), syncer(ws, dir)];
  await Promise.all(both.map((s) => s.next('ready')));
  both.forEach((s) => s.go());
  const results = await Promise.all(both.map((s) => s.next('result')));
  await Promise.all(both.map((s) => s.exited));
  for (const r of results) {
    assert.equal(r.error, undefined, r.error);
    assert.deepEqual([r.failed, r.conflicts, r.skipped, r.deletedLocal, r.deletedRemote, r.uploaded], [[], [], [], [], [], []]);
  }
  // One of them downloaded everything; the other found it in sync.
  const downloaded = results.map((r) => r.downloaded.length).sort((a, b) => a - b);
  assert.deepEqual(downloaded, [0, 154]);
  assert.deepEqual(tree(dir), tree(src));
  const again = await cs.fileSync.syncFiles(ws, dir);
  assert.deepEqual(
    [again.uploaded, again.downloaded, again.deletedLocal, again.deletedRemote, again.conflicts, again.failed, again.inSync],
    [[], [], [], [], [], [], 154],
  );
  assert.equal((await cs.fileSync.listFiles(ws)).length, 154);
});

/** Another process's file sync of `dir`, as flock(1) takes the lock a sync takes (flock(2)
 *  on Linux), until `release()`. */
async function heldElsewhere(dir) {
  const holder = spawn('/usr/bin/flock', [join(dir, '.cloud-sync-manifest.json.lock'), '-c', 'echo locked; exec sleep 600'], {
    detached: true,
  });
  const exited = new Promise((r) => holder.once('exit', r));
  await new Promise((resolve, reject) => {
    holder.stdout.once('data', resolve);
    exited.then((code) => reject(new Error(`flock exited ${code}`)));
  });
  return async () => {
    // The shell's sleep holds the lock too (an inherited descriptor): the whole group goes.
    process.kill(-holder.pid, 'SIGKILL');
    await exited;
  };
}

test('the engine does not wait for another process\'s file sync: its other steps go on, and the files sync once it is over', { skip: !existsSync('/usr/bin/flock') && 'needs flock(1)' }, async () => {
  const ws = await newWorkspace();
  const dir = workdir();
  put(dir, 'engine/a.txt', 'synced once the directory is free');
  writeFileSync(join(dir, '.cloud-link.json'), JSON.stringify({
    version: 1, cloudWorkspaceId: ws, cloudWorkspaceName: 'files', linkedAt: new Date().toISOString(), lastSyncAt: null,
    conversations: {},
    syncConfig: { autoSync: true, syncIntervalMs: 3_600_000, syncConversations: true, syncWorkspaceState: true, syncFiles: true },
  }));
  const release = await heldElsewhere(dir);
  try {
    const { cs, bus } = await loggedIn(suite.cloud, 'alice', { dir, syncDebounceMs: 200, syncInterval: 300 });
    suite.track(cs);
    await waitFor(bus, 'cloud:sync:completed', (p) => p.type === 'workspace');
    // From now on only a look at the files (or a change) starts a cycle: no polling.
    await waitFor(bus, 'cloud:realtime:connected');
    // The engine takes this change and pushes it in its next cycle, not after the other run.
    assert.equal(await cs.pushWorkspaceState({ task_goal: 'pushed while another process syncs files' }), null);
    await waitFor(bus, 'cloud:workspace:pushed');
    // Its files are not taken as done: it keeps coming back to them (each cycle starts with
    // its workspace step), and nothing was reported as an error.
    const isWs = (p) => p.type === 'workspace';
    for (let i = 0; i < 3; i++) await waitFor(bus, 'cloud:sync:started', isWs, 20_000, bus.events.length);
    assert.deepEqual(await cs.fileSync.listFiles(ws), []);
    assert.deepEqual(bus.events.filter((e) => e.name === 'cloud:sync:error'), []);
  } finally {
    await release();
  }
  const { cs } = await user();
  let rows = [];
  for (let i = 0; i < 200 && rows.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    rows = await cs.fileSync.listFiles(ws);
  }
  assert.deepEqual(rows.map((r) => r.file_path), ['engine/a.txt']);
});

test('computeDelta writes no manifest while another process holds the directory, and only its hash cache after', { skip: !existsSync('/usr/bin/flock') && 'needs flock(1)' }, async () => {
  const ws = await newWorkspace();
  const { cs } = await user();
  const dir = workdir();
  put(dir, 'a.txt', 'a');
  await cs.fileSync.syncFiles(ws, dir);
  const manifest = join(dir, '.cloud-sync-manifest.json');
  const synced = readFileSync(manifest, 'utf8');
  put(dir, 'b.txt', 'b');
  // Another process's sync, as flock(1) takes the lock a sync takes (flock(2) on Linux).
  const holder = spawn('/usr/bin/flock', [join(dir, '.cloud-sync-manifest.json.lock'), '-c', 'echo locked; exec sleep 60'], {
    detached: true,
  });
  await new Promise((resolve, reject) => {
    holder.stdout.once('data', resolve);
    holder.once('exit', (code) => reject(new Error(`flock exited ${code}`)));
  });
  try {
    const delta = await cs.fileSync.computeDelta(ws, dir);
    assert.deepEqual(delta.toUpload, ['b.txt']);
    assert.equal(delta.hashed, 2, 'a.txt was written just before its sync, so it is read again');
    assert.equal(readFileSync(manifest, 'utf8'), synced, 'the manifest is the running sync\'s to write');
  } finally {
    // The shell's sleep holds the lock too (an inherited descriptor): the whole group goes.
    process.kill(-holder.pid, 'SIGKILL');
  }
  await new Promise((r) => holder.once('exit', r));
  await cs.fileSync.computeDelta(ws, dir);
  const after = JSON.parse(readFileSync(manifest, 'utf8'));
  assert.deepEqual(after.files, JSON.parse(synced).files, 'the bases are left as the sync wrote them');
  assert.deepEqual(Object.keys(after.hashes).sort(), ['a.txt', 'b.txt']);
});
