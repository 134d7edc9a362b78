// File sync never loses a file for a cloud it cannot see: an absent row is no deletion (only
// a tombstone is), a workspace the session cannot see causes neither deletes nor uploads, and
// with realtime live a local edit still goes up without the workspace polling the cloud.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileSuite, put } from './helpers/files.mjs';
import { loggedIn, workdir, waitFor } from './helpers/sync.mjs';
import { startProxy } from './helpers/proxy.mjs';

const suite = fileSuite();
const { user, newWorkspace } = suite;
const FILES = { 'a.txt': 'alpha', 'docs/b.md': '# beta', 'c.json': '{"c": 3}' };

/** A directory alice synced with `FILES` into a fresh workspace. */
async function synced() {
  const ws = await newWorkspace();
  const dir = workdir();
  for (const [rel, data] of Object.entries(FILES)) put(dir, rel, data);
  const { cs } = await user('alice');
  const res = await cs.fileSync.syncFiles(ws, dir);
  assert.deepEqual(res.uploaded.sort(), Object.keys(FILES).sort());
  return { ws, dir, alice: cs };
}

function assertAllThere(dir) {
  for (const [rel, data] of Object.entries(FILES)) {
    assert.ok(existsSync(join(dir, rel)), `${rel} still exists`);
    assert.equal(readFileSync(join(dir, rel), 'utf8'), data);
  }
}

function link(dir, ws, syncConfig = {}) {
  writeFileSync(join(dir, '.cloud-link.json'), JSON.stringify({
    version: 1, cloudWorkspaceId: ws, cloudWorkspaceName: 'files', linkedAt: new Date().toISOString(), lastSyncAt: null,
    conversations: {},
    syncConfig: {
      autoSync: true, syncIntervalMs: 3_600_000, syncConversations: true, syncWorkspaceState: true, syncFiles: true,
      ...syncConfig,
    },
  }));
}

test('a workspace another org cannot see deletes and uploads nothing of its directory', async () => {
  const { ws, dir, alice } = await synced();
  put(dir, 'new.txt', 'written after the sync');
  const { cs: carol } = await user('carol');
  await assert.rejects(carol.fileSync.syncFiles(ws, dir), { code: 'INVALID_ARGUMENT' });
  await assert.rejects(carol.fileSync.computeDelta(ws, dir), { code: 'INVALID_ARGUMENT' });
  assertAllThere(dir);
  assert.ok(existsSync(join(dir, 'new.txt')));
  assert.deepEqual((await alice.fileSync.listFiles(ws)).map((r) => r.file_path).sort(), Object.keys(FILES).sort());
});

test('the engine of a user who cannot see the linked workspace leaves its files alone', async () => {
  const { ws, dir } = await synced();
  link(dir, ws);
  const { cs, bus } = await user('carol', dir);
  // The second failed workspace step comes from the retry, so the first cycle is over.
  const isWs = (p) => p.type === 'workspace';
  await waitFor(bus, 'cloud:sync:error', isWs);
  const at = bus.events.findIndex((e) => e.name === 'cloud:sync:error' && isWs(e.payload));
  await waitFor(bus, 'cloud:sync:error', isWs, 20_000, at + 1);
  assertAllThere(dir);
  assert.deepEqual(bus.events.filter((e) => e.name === 'cloud:file:deleted'), []);
  // A cycle whose workspace step failed does not go on to the files.
  assert.deepEqual(bus.events.filter((e) => e.name === 'cloud:sync:error' && e.payload.type === 'files'), []);
  // Its retries would poll the cloud under the later tests.
  await cs.destroy();
});

test('rows removed without a tombstone leave the local files, which are not uploaded again', async () => {
  const { ws, dir, alice } = await synced();
  await suite.cloud.serviceRest(`workspace_files?workspace_id=eq.${ws}`, { method: 'DELETE' });
  const delta = await alice.fileSync.computeDelta(ws, dir);
  assert.deepEqual(delta.toDeleteLocal, []);
  assert.deepEqual(delta.toUpload, []);
  assert.deepEqual(delta.keptLocal.sort(), Object.keys(FILES).sort());
  const res = await alice.fileSync.syncFiles(ws, dir);
  assert.deepEqual([res.deletedLocal, res.uploaded], [[], []]);
  assert.deepEqual(res.keptLocal.sort(), Object.keys(FILES).sort());
  assertAllThere(dir);
  assert.deepEqual(await alice.fileSync.listFiles(ws), []);
  // An edit of a kept file is the user's: it goes up.
  put(dir, 'a.txt', 'alpha, edited');
  assert.deepEqual((await alice.fileSync.syncFiles(ws, dir)).uploaded, ['a.txt']);
});

test('a workspace deleted in the cloud leaves its synced files where they are', async () => {
  const { ws, dir, alice } = await synced();
  await suite.cloud.serviceRest(`workspaces?id=eq.${ws}`, { method: 'DELETE' });
  await assert.rejects(alice.fileSync.syncFiles(ws, dir), { code: 'INVALID_ARGUMENT' });
  assertAllThere(dir);
});

test('a file deleted in the cloud (a tombstone) is still deleted locally', async () => {
  const { ws, dir, alice } = await synced();
  // A name that an unquoted `in.(…)` list would split.
  const odd = 'odd, (1) "q".txt';
  put(dir, odd, 'odd');
  assert.deepEqual((await alice.fileSync.syncFiles(ws, dir)).uploaded, [odd]);
  await alice.fileSync.deleteFile(ws, 'docs/b.md');
  await alice.fileSync.deleteFile(ws, odd);
  const res = await alice.fileSync.syncFiles(ws, dir);
  assert.deepEqual(res.deletedLocal.sort(), ['docs/b.md', odd].sort());
  assert.equal(existsSync(join(dir, 'docs/b.md')), false);
  assert.equal(existsSync(join(dir, odd)), false);
  assert.ok(existsSync(join(dir, 'a.txt')));
});

/** Alice's engine on `dir`, polling every 300 ms when it polls, once its socket is live. */
async function liveEngine(dir, config = {}) {
  const r = await loggedIn(suite.cloud, 'alice', { dir, syncDebounceMs: 0, syncInterval: 300, ...config });
  suite.track(r.cs);
  await waitFor(r.bus, 'cloud:realtime:connected');
  return r;
}

test('with realtime live, a local edit goes up within about the sync interval', async () => {
  const ws = await newWorkspace();
  const dir = workdir();
  link(dir, ws);
  const { cs } = await liveEngine(dir);
  // The first cycle's file step writes the manifest at its end; after it, and once what that
  // cycle set off has settled, nothing but a local edit has anything to sync.
  for (let i = 0; i < 200 && !existsSync(join(dir, '.cloud-sync-manifest.json')); i++) await sleep(50);
  assert.ok(existsSync(join(dir, '.cloud-sync-manifest.json')), 'the first file sync ran');
  await sleep(1_000);
  put(dir, 'x.txt', 'written while live');
  let rows = [];
  for (let i = 0; i < 200 && rows.length === 0; i++) {
    await sleep(100);
    rows = await cs.fileSync.listFiles(ws);
  }
  assert.deepEqual(rows.map((row) => row.file_path), ['x.txt']);
  await cs.destroy();
});

test('with realtime live, a local edit whose upload failed goes up on a retry', async () => {
  const ws = await newWorkspace();
  const dir = workdir();
  link(dir, ws);
  // The first upload of the file fails, as a storage server's hiccup would; later ones pass.
  let refused = 0;
  const proxy = await startProxy(suite.cloud.url, {
    intercept: (req) => {
      if (refused > 0 || req.method !== 'POST' || !req.url.startsWith('/storage/v1/object/') || !req.url.includes('retried.txt')) return null;
      refused++;
      return {
        status: 500,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ statusCode: '500', error: 'Internal Server Error', message: 'refused once by the test' }),
      };
    },
  });
  try {
    const { cs } = await liveEngine(dir, { baseUrl: proxy.url });
    for (let i = 0; i < 200 && !existsSync(join(dir, '.cloud-sync-manifest.json')); i++) await sleep(50);
    assert.ok(existsSync(join(dir, '.cloud-sync-manifest.json')), 'the first file sync ran');
    await sleep(1_000);
    put(dir, 'retried.txt', 'refused once, then taken');
    let rows = [];
    for (let i = 0; i < 300 && rows.length === 0; i++) {
      await sleep(100);
      rows = await cs.fileSync.listFiles(ws);
    }
    assert.equal(refused, 1, 'the first upload was refused');
    assert.deepEqual(rows.map((row) => row.file_path), ['retried.txt']);
    await cs.destroy();
  } finally {
    await proxy.close();
  }
});

test('with realtime live and syncFiles on, an idle linked workspace sends no REST request', async () => {
  const { ws, dir } = await synced();
  link(dir, ws);
  const manifest = join(dir, '.cloud-sync-manifest.json');
  const before = statSync(manifest).mtimeMs;
  const { cs } = await liveEngine(dir);
  // The first cycle's file step rewrites the manifest at its end; let what it set off
  // settle, then count. The files were hashed within 2 s of being written, so the walk does
  // not trust the cache for them and starts one more cycle, which hashes them again; after
  // that the tree is acted on, settled or not, and nothing else runs.
  for (let i = 0; i < 200 && statSync(manifest).mtimeMs === before; i++) await sleep(50);
  assert.notEqual(statSync(manifest).mtimeMs, before, 'the first file sync ran');
  await sleep(2_500);
  await suite.cloud.resetStats();
  await sleep(2_000);
  const { requests } = await suite.cloud.stats();
  const rest = Object.keys(requests).filter((k) => / \/(rest|storage|functions)\/v1\//.test(k));
  assert.deepEqual(rest, [], 'no polling while live');
  assert.equal(cs.getStatus().syncEngineStatus.running, true);
  assertAllThere(dir);
});
