// File sync (cloudSync.fileSync) against the local cloud: streamed upload and download,
// versions, safe paths, deletes, and two-way sync between two machines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { join, relative } from 'node:path';
import { fileSuite, put, sha } from './helpers/files.mjs';
import { workdir, waitFor } from './helpers/sync.mjs';

const suite = fileSuite();
const { user, newWorkspace } = suite;
// Events cross to JS on their own queue, in order: a call can resolve before the events it
// emitted arrive, so a test waits for the last one it looks at (a fixed pause may end first
// on a busy event loop).
// Longer than the 2 s within which a file's time stamps cannot prove it unchanged.
const quiet = () => new Promise((r) => setTimeout(r, 2_100));
const totalRequests = async () => Object.values((await suite.cloud.stats()).requests).reduce((a, b) => a + b, 0);

/** Every file under `dir` (sync's own files left out) → its bytes' hash. */
function tree(dir) {
  const out = {};
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (['.cloud-link.json', '.cloud-sync-manifest.json', '.cloud-sync-manifest.json.lock', '.cloud-sync-tmp'].includes(e.name)) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[relative(dir, p)] = sha(readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

test('an upload twice upserts: one row, version 2, the new bytes', async () => {
  const ws = await newWorkspace();
  const { cs, bus } = await user();
  const dir = workdir();
  put(dir, 'notes.txt', 'one');
  const first = await cs.fileSync.uploadFile(ws, dir, 'notes.txt');
  assert.deepEqual(
    [first.filePath, first.storagePath, first.size, first.checksum, first.version],
    ['notes.txt', `${ws}/notes.txt`, 3, sha('one'), 1],
  );
  put(dir, 'notes.txt', 'second');
  const second = await cs.fileSync.uploadFile(ws, dir, 'notes.txt');
  assert.equal(second.version, 2);
  assert.equal(second.size, 6);
  const rows = await cs.fileSync.listFiles(ws);
  assert.equal(rows.length, 1);
  assert.deepEqual([rows[0].file_path, rows[0].version, rows[0].file_size, rows[0].checksum], ['notes.txt', 2, 6, sha('second')]);
  await waitFor(bus, 'cloud:file:uploaded', (p) => p.size === 6);
  const uploaded = bus.events.filter((e) => e.name === 'cloud:file:uploaded').map((e) => e.payload);
  assert.deepEqual(uploaded.at(-1), { filePath: 'notes.txt', cloudPath: `${ws}/notes.txt`, size: 6, timestamp: uploaded.at(-1).timestamp });
  const out = workdir();
  const got = await cs.fileSync.downloadFile(ws, out, 'notes.txt');
  assert.equal(got.size, 6);
  assert.equal(readFileSync(join(out, 'notes.txt'), 'utf8'), 'second');
});

test('JSON, binary, empty and subfolder files round-trip byte for byte', async () => {
  const ws = await newWorkspace();
  const { cs, bus } = await user();
  const dir = workdir();
  const json = '{"b":  1,\n  "a" : [1,2,  3], "u":"\\u00e9"}\n\n';
  const binary = Buffer.concat([Buffer.from([0, 255, 0, 13, 10]), randomBytes(3 * 1024 * 1024 + 7)]);
  const files = {
    'config.json': json,
    'image.bin': binary,
    'empty.txt': '',
    'docs/sub dir/a b#1?.md': '# nested\n',
    'ünï/ф.txt': 'unicode',
  };
  for (const [rel, data] of Object.entries(files)) put(dir, rel, data);
  for (const rel of Object.keys(files)) await cs.fileSync.uploadFile(ws, dir, rel);
  const rows = await cs.fileSync.listFiles(ws);
  assert.deepEqual(rows.map((r) => r.file_path).sort(), Object.keys(files).sort(), 'rows hold the plain relative path');
  const out = workdir();
  for (const [rel, data] of Object.entries(files)) {
    const got = await cs.fileSync.downloadFile(ws, out, rel);
    const bytes = readFileSync(join(out, rel));
    assert.ok(bytes.equals(Buffer.from(data)), `${rel} is byte-identical`);
    assert.equal(got.size, Buffer.byteLength(data));
    assert.equal(got.storagePath, `${ws}/${rel}`);
  }
  await waitFor(bus, 'cloud:file:downloaded', (p) => p.filePath === Object.keys(files).at(-1));
  assert.equal(existsSync(join(out, '.cloud-sync-tmp')), false, 'no temporary files are left');
  const progress = bus.events.filter((e) => e.name === 'cloud:file:progress' && e.payload.filePath === 'image.bin');
  assert.ok(progress.length >= 2, 'progress up and down');
  assert.ok(progress.length < 100, 'rate-limited');
  assert.deepEqual([progress.at(-1).payload.bytes, progress.at(-1).payload.total], [binary.length, binary.length]);
  const downloaded = bus.events.find((e) => e.name === 'cloud:file:downloaded' && e.payload.filePath === 'image.bin');
  assert.equal(downloaded.payload.size, binary.length);
});

test('unsafe paths are rejected before any request or write', async () => {
  const ws = await newWorkspace();
  const { cs } = await user();
  const base = workdir();
  const dir = join(base, 'root');
  mkdirSync(dir);
  mkdirSync(join(base, 'outside'));
  writeFileSync(join(base, 'outside', 'secret.txt'), 'secret');
  symlinkSync(join(base, 'outside'), join(dir, 'link'));
  await cs.fileSync.listFiles(ws);
  const before = await totalRequests();
  for (const bad of ['../x', 'a/../../x', '/etc/passwd', 'C:\\x', 'a\0b']) {
    for (const call of [
      () => cs.fileSync.uploadFile(ws, dir, bad),
      () => cs.fileSync.downloadFile(ws, dir, bad),
      () => cs.fileSync.deleteFile(ws, bad),
    ]) {
      await assert.rejects(call, (e) => e.code === 'INVALID_ARGUMENT' && e.message.includes(bad.includes('\0') ? 'Invalid file path' : JSON.stringify(bad)), bad);
    }
  }
  await assert.rejects(cs.fileSync.uploadFile(ws, dir, 'link/secret.txt'), { code: 'INVALID_ARGUMENT' });
  await assert.rejects(cs.fileSync.downloadFile(ws, dir, 'link/secret.txt'), { code: 'INVALID_ARGUMENT' });
  assert.equal(await totalRequests(), before, 'no request was sent');
  assert.equal(readFileSync(join(base, 'outside', 'secret.txt'), 'utf8'), 'secret');
  assert.deepEqual(readdirSync(base).sort(), ['outside', 'root']);
});

test('deleteFile removes the object and soft-deletes the row at version + 1', async () => {
  const ws = await newWorkspace();
  const { cs, bus } = await user();
  const dir = workdir();
  put(dir, 'gone/soon.txt', 'bye');
  await cs.fileSync.uploadFile(ws, dir, 'gone/soon.txt');
  assert.deepEqual(await cs.fileSync.deleteFile(ws, 'gone/soon.txt'), { filePath: 'gone/soon.txt', deleted: true });
  assert.deepEqual(await cs.fileSync.listFiles(ws), []);
  const [row] = await suite.cloud.serviceRest(`workspace_files?workspace_id=eq.${ws}&select=is_deleted,version`);
  assert.deepEqual(row, { is_deleted: true, version: 2 });
  await assert.rejects(cs.fileSync.downloadFile(ws, workdir(), 'gone/soon.txt'), { code: 'INVALID_ARGUMENT' });
  const r = await fetch(`${suite.cloud.url}/storage/v1/object/workspace-files/${ws}/gone/soon.txt`, {
    headers: { apikey: suite.cloud.serviceRoleKey, Authorization: `Bearer ${suite.cloud.serviceRoleKey}` },
  });
  assert.notEqual(r.status, 200, 'the object is gone');
  await waitFor(bus, 'cloud:file:deleted', (p) => p.filePath === 'gone/soon.txt');
  assert.deepEqual(await cs.fileSync.deleteFile(ws, 'gone/soon.txt'), { filePath: 'gone/soon.txt', deleted: false });
  // Uploading again revives the row at the next version.
  assert.equal((await cs.fileSync.uploadFile(ws, dir, 'gone/soon.txt')).version, 3);
});

test('a first sync of new files writes their rows in batches, not one request per file', async () => {
  const ws = await newWorkspace();
  const { cs } = await user();
  const dir = workdir();
  for (let i = 0; i < 60; i++) put(dir, `d${i % 3}/f${i}.txt`, `file ${i}`);
  await suite.cloud.resetStats();
  const r = await cs.fileSync.syncFiles(ws, dir);
  assert.equal(r.uploaded.length, 60);
  assert.deepEqual(r.failed, []);
  const { requests } = await suite.cloud.stats();
  const count = (prefix) => Object.entries(requests).filter(([k]) => k.startsWith(prefix)).reduce((a, [, n]) => a + n, 0);
  assert.equal(count('POST /storage/v1/object/workspace-files/'), 60, 'one object upload per file');
  assert.equal(count('POST /rest/v1/workspace_files') + count('PATCH /rest/v1/workspace_files'), 1, 'one row write for the lot');
  const rows = await cs.fileSync.listFiles(ws);
  assert.equal(rows.length, 60);
  for (const row of rows) {
    const n = row.file_path.match(/f(\d+)\.txt$/)[1];
    assert.equal(row.version, 1);
    assert.equal(row.checksum, sha(Buffer.from(`file ${n}`)));
  }
  // The other machine sees every file.
  const other = workdir();
  const { cs: bob } = await user('bob');
  const down = await bob.fileSync.syncFiles(ws, other);
  assert.equal(down.downloaded.length, 60);
  assert.deepEqual(tree(other), tree(dir));
});

test('a new file whose path has a deleted row revives that row at version + 1 (its batched insert does not apply)', async () => {
  const ws = await newWorkspace();
  const { cs } = await user();
  const dir = workdir();
  put(dir, 'gone.txt', 'old');
  await cs.fileSync.uploadFile(ws, dir, 'gone.txt');
  await cs.fileSync.deleteFile(ws, 'gone.txt');
  const fresh = workdir();
  put(fresh, 'gone.txt', 'new');
  put(fresh, 'mine.txt', 'mine');
  const r = await cs.fileSync.syncFiles(ws, fresh);
  assert.deepEqual(r.failed, []);
  assert.deepEqual(r.uploaded.sort(), ['gone.txt', 'mine.txt']);
  const rows = Object.fromEntries((await cs.fileSync.listFiles(ws)).map((x) => [x.file_path, x]));
  assert.equal(rows['gone.txt'].version, 3, 'the deleted row (version 2) is revived at version 3');
  assert.equal(rows['gone.txt'].checksum, sha(Buffer.from('new')));
  assert.equal(rows['mine.txt'].version, 1);
});

test('computeDelta honours ignore files and re-scans without reading contents', async () => {
  const ws = await newWorkspace();
  const { cs } = await user();
  const dir = workdir();
  put(dir, '.gitignore', 'dist/\n*.log\n');
  put(dir, '.obotoignore', 'private.md\n');
  put(dir, 'src/main.rs', 'fn main() {}');
  put(dir, 'dist/bundle.js', 'x');
  put(dir, 'debug.log', 'x');
  put(dir, 'private.md', 'x');
  put(dir, 'node_modules/pkg/index.js', 'x');
  put(dir, '.git/HEAD', 'ref');
  writeFileSync(join(dir, '.cloud-link.json'), '{}');
  // A file changed less than 2 s before it is hashed is read again next time (an edit since
  // could have kept its time stamps); this tree is older than that.
  await quiet();
  const delta = await cs.fileSync.computeDelta(ws, dir);
  assert.deepEqual(delta.toUpload, ['.gitignore', '.obotoignore', 'src/main.rs']);
  assert.deepEqual([delta.toDownload, delta.synced, delta.conflicts], [[], [], []]);
  assert.equal(delta.hashed, 3);
  const again = await cs.fileSync.computeDelta(ws, dir);
  assert.equal(again.hashed, 0, 'cached by stat');
  assert.deepEqual(again.toUpload, delta.toUpload);
});

test('two machines converge: create, modify, delete, rename on both sides; a concurrent edit keeps both', async () => {
  const ws = await newWorkspace();
  const a = workdir('oboto-alice-');
  const b = workdir('oboto-bob-');
  const { cs: alice, bus: aliceBus } = await user('alice');
  const { cs: bob } = await user('bob');
  const sync = async () => {
    await alice.fileSync.syncFiles(ws, a);
    await bob.fileSync.syncFiles(ws, b);
    await alice.fileSync.syncFiles(ws, a);
  };

  put(a, 'readme.md', 'hello');
  put(a, 'src/app.js', 'console.log(1)');
  put(a, 'data/blob.bin', randomBytes(300_000));
  put(b, 'bob-only.txt', 'from bob');
  const first = await alice.fileSync.syncFiles(ws, a);
  assert.deepEqual(first.uploaded.sort(), ['data/blob.bin', 'readme.md', 'src/app.js'], 'local-only files are uploaded');
  await sync();
  assert.deepEqual(tree(a), tree(b));
  assert.equal(Object.keys(tree(a)).length, 4);

  // Modify on one side, delete on the other, rename on both.
  put(a, 'readme.md', 'hello v2');
  rmSync(join(b, 'bob-only.txt'));
  rmSync(join(a, 'src/app.js'));
  put(a, 'lib/app.js', 'console.log(1)');
  put(b, 'data/renamed.bin', readFileSync(join(b, 'data/blob.bin')));
  rmSync(join(b, 'data/blob.bin'));
  await sync();
  assert.deepEqual(tree(a), tree(b));
  assert.deepEqual(Object.keys(tree(a)).sort(), ['data/renamed.bin', 'lib/app.js', 'readme.md']);
  assert.equal(readFileSync(join(b, 'readme.md'), 'utf8'), 'hello v2');
  assert.equal(existsSync(join(b, 'src')), false, 'a folder emptied by the sync goes too');
  const rows = await alice.fileSync.listFiles(ws);
  assert.deepEqual(rows.map((r) => r.file_path), ['data/renamed.bin', 'lib/app.js', 'readme.md']);

  // A concurrent edit of the same file.
  put(a, 'readme.md', 'alice edit');
  put(b, 'readme.md', 'bob edit');
  await bob.fileSync.syncFiles(ws, b);
  const res = await alice.fileSync.syncFiles(ws, a);
  assert.deepEqual(res.conflicts, [{ filePath: 'readme.md', conflictPath: 'readme (cloud conflict).md' }]);
  const conflict = await waitFor(aliceBus, 'cloud:sync:conflict', (p) => p.type === 'file');
  assert.equal(conflict.filePath, 'readme.md');
  assert.equal(readFileSync(join(a, 'readme.md'), 'utf8'), 'alice edit');
  assert.equal(readFileSync(join(a, 'readme (cloud conflict).md'), 'utf8'), 'bob edit');
  await sync();
  assert.deepEqual(tree(a), tree(b));
  assert.equal(readFileSync(join(b, 'readme (cloud conflict).md'), 'utf8'), 'bob edit');

  // In step: nothing to do, and, once the files just written have been read again after a
  // quiet moment, nothing is read again.
  await quiet();
  await alice.fileSync.computeDelta(ws, a);
  const idle = await alice.fileSync.computeDelta(ws, a);
  assert.deepEqual([idle.toUpload, idle.toDownload, idle.toDeleteLocal, idle.toDeleteRemote, idle.conflicts], [[], [], [], [], []]);
  assert.equal(idle.hashed, 0);
});

test('an interrupted download leaves no partial file, and the next sync completes', async () => {
  const ws = await newWorkspace();
  const { cs } = await user();
  const src = workdir();
  put(src, 'big.bin', randomBytes(8 * 1024 * 1024));
  await cs.fileSync.uploadFile(ws, src, 'big.bin');
  const dst = workdir();
  // What a killed run leaves: a temporary file in the sync's own directory.
  put(dst, '.cloud-sync-tmp/0000.part', randomBytes(1000));
  const res = await cs.fileSync.syncFiles(ws, dst);
  assert.deepEqual(res.downloaded, ['big.bin']);
  assert.equal(existsSync(join(dst, '.cloud-sync-tmp')), false);
  assert.equal(sha(readFileSync(join(dst, 'big.bin'))), sha(readFileSync(join(src, 'big.bin'))));
  assert.equal(statSync(join(dst, 'big.bin')).size, 8 * 1024 * 1024);
});

test('carol cannot list, read or write Acme files', async () => {
  const ws = await newWorkspace();
  const { cs: alice } = await user('alice');
  const dir = workdir();
  put(dir, 'plan.txt', 'acme only');
  await alice.fileSync.uploadFile(ws, dir, 'plan.txt');
  const { cs: carol } = await user('carol');
  assert.deepEqual(await carol.fileSync.listFiles(ws), []);
  await assert.rejects(carol.fileSync.downloadFile(ws, workdir(), 'plan.txt'));
  put(dir, 'evil.txt', 'x');
  await assert.rejects(carol.fileSync.uploadFile(ws, dir, 'evil.txt'));
  assert.deepEqual((await alice.fileSync.listFiles(ws)).map((r) => r.file_path), ['plan.txt']);
  assert.deepEqual(await carol.fileSync.deleteFile(ws, 'plan.txt'), { filePath: 'plan.txt', deleted: false });
});

test('fileSync is null before login', async () => {
  const { cloudSyncFor } = await import('./helpers/client.mjs');
  const { cs } = await cloudSyncFor(suite.cloud);
  suite.track(cs);
  assert.equal(cs.fileSync, null);
});

test('with syncConfig.syncFiles the sync engine syncs the working directory', async () => {
  const ws = await newWorkspace();
  const dir = workdir();
  put(dir, 'engine/hello.txt', 'synced by the engine');
  writeFileSync(join(dir, '.cloud-link.json'), JSON.stringify({
    version: 1, cloudWorkspaceId: ws, cloudWorkspaceName: 'files', linkedAt: new Date().toISOString(), lastSyncAt: null,
    conversations: {},
    syncConfig: { autoSync: true, syncIntervalMs: 3_600_000, syncConversations: true, syncWorkspaceState: true, syncFiles: true },
  }));
  const { cs } = await user('alice', dir);
  let rows = [];
  for (let i = 0; i < 100 && rows.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    rows = await cs.fileSync.listFiles(ws);
  }
  assert.deepEqual(rows.map((r) => r.file_path), ['engine/hello.txt']);
  assert.ok(existsSync(join(dir, '.cloud-sync-manifest.json')));
});

test('with syncConfig.syncFiles, another machine\'s upload arrives through realtime, without polling', async () => {
  const ws = await newWorkspace();
  const dir = workdir();
  writeFileSync(join(dir, '.cloud-link.json'), JSON.stringify({
    version: 1, cloudWorkspaceId: ws, cloudWorkspaceName: 'files', linkedAt: new Date().toISOString(), lastSyncAt: null,
    conversations: {},
    syncConfig: { autoSync: true, syncIntervalMs: 3_600_000, syncConversations: true, syncWorkspaceState: true, syncFiles: true },
  }));
  const { bus } = await user('bob', dir);
  await waitFor(bus, 'cloud:realtime:connected');
  await waitFor(bus, 'cloud:sync:completed', (p) => p.type === 'workspace');
  const src = workdir();
  put(src, 'live/plan.md', 'uploaded on another machine');
  const { cs: alice } = await user('alice');
  await alice.fileSync.uploadFile(ws, src, 'live/plan.md');
  // The interval is an hour: only the socket can have started this sync.
  for (let i = 0; i < 100 && !existsSync(join(dir, 'live/plan.md')); i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(readFileSync(join(dir, 'live/plan.md'), 'utf8'), 'uploaded on another machine');
});

test('a cloud row with an unsafe path is never written locally, and the rest still syncs', async () => {
  const ws = await newWorkspace();
  const { cs } = await user();
  const src = workdir();
  put(src, 'fine.txt', 'ok');
  await cs.fileSync.uploadFile(ws, src, 'fine.txt');
  for (const file_path of ['../escape.txt', '/etc/evil', 'a\\b.txt', 'x/./y.txt']) {
    await suite.cloud.serviceRest('workspace_files', {
      method: 'POST',
      body: { workspace_id: ws, file_path, file_size: 2, checksum: sha('ok'), version: 1 },
    });
  }
  const base = workdir();
  const dst = join(base, 'dst');
  mkdirSync(dst);
  const res = await cs.fileSync.syncFiles(ws, dst);
  assert.deepEqual(res.downloaded, ['fine.txt']);
  assert.deepEqual(res.failed, []);
  assert.deepEqual(readdirSync(base), ['dst']);
  assert.deepEqual(Object.keys(tree(dst)), ['fine.txt']);
  await assert.rejects(cs.fileSync.downloadFile(ws, dst, '../escape.txt'), { code: 'INVALID_ARGUMENT' });
});

test('listFiles pages through more rows than one response holds', async () => {
  const ws = await newWorkspace();
  const { cs } = await user();
  const paths = Array.from({ length: 2100 }, (_, i) => `dir ${i % 7}/f,(${i}).txt`);
  await suite.cloud.serviceRest('workspace_files', {
    method: 'POST',
    body: paths.map((file_path) => ({ workspace_id: ws, file_path, file_size: 1, checksum: sha('x'), version: 1 })),
    headers: { Prefer: 'return=minimal' },
  });
  const rows = await cs.fileSync.listFiles(ws);
  assert.equal(rows.length, 2100);
  assert.deepEqual(new Set(rows.map((r) => r.file_path)), new Set(paths));
});
