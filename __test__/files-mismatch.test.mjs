// A cloud object whose bytes are not those its row describes (two machines created one path
// at once, or a client wrote the object without its row): a sync refuses the download, and
// does not fetch the same row's object again, on every run, in every process, until the row
// changes; nor does it fail the engine's cycle, which would retry it on the backoff.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileSuite, put } from './helpers/files.mjs';
import { loggedIn, workdir } from './helpers/sync.mjs';

const suite = fileSuite();
const { user, newWorkspace } = suite;

/** Replaces the object of `file_path` with `data`, leaving its row as it is (the service
 *  key, as a client that writes objects and no rows would). */
async function overwriteObject(ws, file_path, data) {
  const r = await fetch(`${suite.cloud.url}/storage/v1/object/workspace-files/${ws}/${file_path}`, {
    method: 'POST',
    headers: {
      apikey: suite.cloud.serviceRoleKey,
      Authorization: `Bearer ${suite.cloud.serviceRoleKey}`,
      'content-type': 'text/plain',
      'x-upsert': 'true',
    },
    body: data,
  });
  assert.equal(r.status, 200, `${file_path}: ${await r.text()}`);
}

/** Object downloads of `ws` since the last reset, by path. */
async function objectGets(ws) {
  const prefix = `GET /storage/v1/object/workspace-files/${ws}/`;
  const out = {};
  for (const [k, n] of Object.entries((await suite.cloud.stats()).requests)) {
    if (k.startsWith(prefix)) out[k.slice(prefix.length)] = n;
  }
  return out;
}

const BAD = ['longer.txt', 'same-size.txt', 'shorter.txt'];

/** `BAD`'s objects no longer match their rows; `ok.txt` does. */
async function mismatched() {
  const ws = await newWorkspace();
  const { cs } = await user();
  const src = workdir();
  put(src, 'longer.txt', 'short');
  put(src, 'same-size.txt', 'row bytes');
  put(src, 'shorter.txt', 'a rather longer original');
  put(src, 'ok.txt', 'fine');
  assert.deepEqual((await cs.fileSync.syncFiles(ws, src)).uploaded.sort(), [...BAD, 'ok.txt'].sort());
  await overwriteObject(ws, 'longer.txt', 'a good deal longer than its row says');
  await overwriteObject(ws, 'same-size.txt', 'ROW BYTES');
  await overwriteObject(ws, 'shorter.txt', 'tiny');
  return { ws, cs, src };
}

function assertRefused(res, paths = BAD) {
  assert.deepEqual(res.failed.map((f) => f.filePath).sort(), paths);
  for (const f of res.failed) {
    assert.equal(f.code, 'CONTENT_MISMATCH', JSON.stringify(f));
    assert.match(f.error, /does not match its record/);
  }
  assert.deepEqual([res.conflicts, res.uploaded, res.deletedLocal, res.deletedRemote], [[], [], [], []]);
}

test('a download that does not match its row is refused once, and tried again only when the row changes', async () => {
  const { ws, cs, src } = await mismatched();
  const dir = workdir();

  await suite.cloud.resetStats();
  const first = await cs.fileSync.syncFiles(ws, dir);
  assert.deepEqual(first.downloaded, ['ok.txt']);
  assertRefused(first);
  assert.deepEqual(await objectGets(ws), { 'longer.txt': 1, 'ok.txt': 1, 'same-size.txt': 1, 'shorter.txt': 1 });
  for (const p of BAD) assert.equal(existsSync(join(dir, p)), false, `${p} is not written`);

  // Reported again, but not fetched again.
  await suite.cloud.resetStats();
  const second = await cs.fileSync.syncFiles(ws, dir);
  assertRefused(second);
  assert.deepEqual(second.downloaded, []);
  assert.deepEqual(await objectGets(ws), {});

  // Nor by another process on the same directory.
  const { cs: fresh } = await user();
  await suite.cloud.resetStats();
  const third = await fresh.fileSync.syncFiles(ws, dir);
  assertRefused(third);
  assert.deepEqual(await objectGets(ws), {});
  for (const p of BAD) assert.equal(existsSync(join(dir, p)), false, `${p} is not written`);

  // `computeDelta` says the same: not to download, but failed, and why.
  const delta = await fresh.fileSync.computeDelta(ws, dir);
  assert.deepEqual([delta.toDownload, delta.conflicts], [[], []]);
  assertRefused({ ...delta, uploaded: [], deletedLocal: [], deletedRemote: [] });

  // `downloadFile` refuses it with the same code.
  await assert.rejects(cs.fileSync.downloadFile(ws, workdir(), 'same-size.txt'), { code: 'CONTENT_MISMATCH' });

  // A local edit where the row was synced still goes up, which changes the row: that path
  // is downloaded once more, and arrives.
  put(src, 'same-size.txt', 'row bytes, edited');
  assert.deepEqual((await cs.fileSync.syncFiles(ws, src)).uploaded, ['same-size.txt']);
  await suite.cloud.resetStats();
  const fixed = await fresh.fileSync.syncFiles(ws, dir);
  assert.deepEqual(fixed.downloaded, ['same-size.txt']);
  assertRefused(fixed, ['longer.txt', 'shorter.txt']);
  assert.deepEqual(await objectGets(ws), { 'same-size.txt': 1 });
  assert.equal(readFileSync(join(dir, 'same-size.txt'), 'utf8'), 'row bytes, edited');

  // A new version whose object is still wrong is refused again, once.
  put(src, 'shorter.txt', 'a rather longer original, edited');
  assert.deepEqual((await cs.fileSync.syncFiles(ws, src)).uploaded, ['shorter.txt']);
  await overwriteObject(ws, 'shorter.txt', 'tiny again');
  await suite.cloud.resetStats();
  assertRefused(await fresh.fileSync.syncFiles(ws, dir), ['longer.txt', 'shorter.txt']);
  assertRefused(await fresh.fileSync.syncFiles(ws, dir), ['longer.txt', 'shorter.txt']);
  assert.deepEqual(await objectGets(ws), { 'shorter.txt': 1 });
});

test('a file created here where the cloud object does not match its row is neither uploaded nor given a conflict copy', async () => {
  const { ws, cs } = await mismatched();
  const dir = workdir();
  assertRefused(await cs.fileSync.syncFiles(ws, dir));
  // The user creates one of the paths here: both sides are new, and the cloud copy cannot be
  // read, so nothing is decided for them.
  put(dir, 'longer.txt', 'mine');
  const delta = await cs.fileSync.computeDelta(ws, dir);
  assert.equal(delta.conflicts.includes('longer.txt'), false, 'no conflict announced');
  assertRefused({ ...delta, conflicts: [], uploaded: [], deletedLocal: [], deletedRemote: [] });
  await suite.cloud.resetStats();
  const res = await cs.fileSync.syncFiles(ws, dir);
  assertRefused(res);
  assert.deepEqual(await objectGets(ws), {});
  assert.equal(readFileSync(join(dir, 'longer.txt'), 'utf8'), 'mine');
  assert.equal(existsSync(join(dir, 'longer (cloud conflict).txt')), false);
  const row = (await cs.fileSync.listFiles(ws)).find((r) => r.file_path === 'longer.txt');
  assert.equal(row.version, 1, 'the row is left as it is');
});

test("the engine's cycle does not fail for a refused download, so its backoff does not fetch it again", async () => {
  const { ws } = await mismatched();
  const dir = workdir();
  writeFileSync(join(dir, '.cloud-link.json'), JSON.stringify({
    version: 1, cloudWorkspaceId: ws, cloudWorkspaceName: 'files', linkedAt: new Date().toISOString(), lastSyncAt: null,
    conversations: {},
    syncConfig: { autoSync: true, syncIntervalMs: 3_600_000, syncConversations: true, syncWorkspaceState: true, syncFiles: true },
  }));
  const { cs } = await user('alice', dir);
  // The engine's first file sync writes the manifest at its end.
  const manifest = join(dir, '.cloud-sync-manifest.json');
  for (let i = 0; i < 400 && !existsSync(manifest); i++) await sleep(50);
  assert.ok(existsSync(manifest), 'the first file sync ran');
  // This run waits for the engine's to release the directory, after which that cycle is
  // counted at once.
  assertRefused(await cs.fileSync.syncFiles(ws, dir));
  assert.equal(readFileSync(join(dir, 'ok.txt'), 'utf8'), 'fine');
  assert.equal(cs.getStatus().syncEngineStatus.consecutiveFailures, 0);
  await cs.destroy();
});

/** A stand-in in front of the cloud whose object at `objectPath` never ends (chunked, no
 *  `Content-Length`); everything else goes through. `stats`: bytes it wrote for that object,
 *  and how often it was asked for. */
async function endlessObject(objectPath) {
  const upstream = new URL(suite.cloud.url);
  const stats = { written: 0, requests: 0 };
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url.split('?')[0] === objectPath) {
      stats.requests++;
      req.resume();
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 7);
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) {
          stats.written += chunk.length;
          if (stats.written > 1024 ** 3) return res.destroy();
        }
        if (!res.destroyed) res.once('drain', pump);
      };
      return pump();
    }
    const out = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode, up.headers);
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const close = () => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  };
  return { url: `http://127.0.0.1:${server.address().port}`, stats, close };
}

test('an object larger than its row is read no further than the row says, and refused as the others', async () => {
  const ws = await newWorkspace();
  const { cs } = await user();
  const src = workdir();
  put(src, 'endless.bin', 'sixteen bytes!!!');
  await cs.fileSync.syncFiles(ws, src);
  const front = await endlessObject(`/storage/v1/object/workspace-files/${ws}/endless.bin`);
  try {
    const { cs: via } = await loggedIn(suite.cloud, 'alice', { baseUrl: front.url, syncDebounceMs: 0, syncInterval: 3_600_000 });
    suite.track(via);
    const dir = workdir();
    assertRefused(await via.fileSync.syncFiles(ws, dir), ['endless.bin']);
    // The socket buffers some megabytes beyond what was read, no more.
    assert.ok(front.stats.written < 32 * 1024 * 1024, `the server wrote ${front.stats.written} bytes`);
    assertRefused(await via.fileSync.syncFiles(ws, dir), ['endless.bin']);
    assert.equal(front.stats.requests, 1, 'not asked for again');
    assert.equal(existsSync(join(dir, 'endless.bin')), false);
  } finally {
    await front.close();
  }
});
