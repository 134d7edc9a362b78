// File sync against a cloud whose listing or rows could make a sync destroy local data: a
// server that pages below the requested limit, rows for paths this machine never syncs, and
// local files the scan cannot read. Nothing local is overwritten, nothing is taken for
// deleted, and the cloud keeps its files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileSuite, put } from './helpers/files.mjs';
import { workdir, waitFor } from './helpers/sync.mjs';

// PostgREST's `db-max-rows` below the 1,000 rows a client asks for, as a Supabase project
// may set it.
const MAX_ROWS = 500;
const suite = fileSuite(['--db-max-rows', String(MAX_ROWS)]);
const { user, newWorkspace } = suite;

test('a cloud that returns fewer rows than asked for is paged to the end: nothing is taken for deleted', async () => {
  const ws = await newWorkspace();
  const { cs } = await user();
  const dir = workdir();
  const n = MAX_ROWS + 100;
  const name = (i) => `f${String(i).padStart(4, '0')}.txt`;
  for (let i = 0; i < n; i++) put(dir, name(i), `file ${i}`);
  const first = await cs.fileSync.syncFiles(ws, dir);
  assert.equal(first.uploaded.length, n);
  assert.equal((await cs.fileSync.listFiles(ws)).length, n);
  const again = await cs.fileSync.syncFiles(ws, dir);
  assert.deepEqual([again.deletedLocal, again.uploaded, again.failed], [[], [], []]);
  assert.equal(again.inSync, n);
  assert.equal(readFileSync(join(dir, name(n - 1)), 'utf8'), `file ${n - 1}`);
});

test('cloud rows for paths this machine does not sync never overwrite local files, and are not deleted', async () => {
  const ws = await newWorkspace();
  const { cs } = await user();
  // Another machine, where none of these paths is ignored, uploads them.
  const other = workdir();
  const excluded = {
    '.git/config': '[core]\n\tfsmonitor = touch /tmp/pwned\n',
    'node_modules/pkg/index.js': 'evil()',
    '.cloud-outbox.jsonl': '',
    '.cloud-link.json': '{"workspaceId":"x"}',
    '.env': 'SECRET=cloud',
    'build/out.js': 'cloud build',
    'linked/notes.md': 'through the link',
  };
  for (const [rel, data] of Object.entries(excluded)) {
    put(other, rel, data);
    await cs.fileSync.uploadFile(ws, other, rel);
  }
  put(other, 'shared.md', 'synced');
  await cs.fileSync.uploadFile(ws, other, 'shared.md');

  const dir = workdir();
  put(dir, '.gitignore', '.env\nbuild/\n');
  put(dir, '.git/config', '[core]\n');
  put(dir, 'node_modules/pkg/index.js', 'mine()');
  put(dir, '.env', 'SECRET=local');
  put(dir, 'real/notes.md', 'my notes');
  symlinkSync(join(dir, 'real'), join(dir, 'linked'));
  const before = {};
  for (const rel of ['.git/config', 'node_modules/pkg/index.js', '.env', 'real/notes.md']) before[rel] = readFileSync(join(dir, rel), 'utf8');

  const res = await cs.fileSync.syncFiles(ws, dir);
  assert.deepEqual(res.downloaded, ['shared.md']);
  assert.deepEqual(res.uploaded.sort(), ['.gitignore', 'real/notes.md']);
  assert.deepEqual(res.failed, []);
  for (const [rel, data] of Object.entries(before)) assert.equal(readFileSync(join(dir, rel), 'utf8'), data, rel);
  for (const rel of ['.cloud-outbox.jsonl', '.cloud-link.json', 'build/out.js']) {
    assert.throws(() => readFileSync(join(dir, rel)), { code: 'ENOENT' }, rel);
  }

  // Nor does a second run take them for deleted here and delete them from the cloud.
  const again = await cs.fileSync.syncFiles(ws, dir);
  assert.deepEqual([again.deletedRemote, again.downloaded, again.uploaded], [[], [], []]);
  const listed = (await cs.fileSync.listFiles(ws)).map((r) => r.file_path).sort();
  assert.deepEqual(listed, [...Object.keys(excluded), 'shared.md', '.gitignore', 'real/notes.md'].sort());
});

test('a synced file that becomes ignored is not deleted from the cloud', async () => {
  const ws = await newWorkspace();
  const { cs } = await user();
  const dir = workdir();
  put(dir, 'debug.log', 'kept in the cloud');
  put(dir, 'a.txt', 'a');
  await cs.fileSync.syncFiles(ws, dir);
  put(dir, '.gitignore', '*.log\n');
  const res = await cs.fileSync.syncFiles(ws, dir);
  assert.deepEqual(res.deletedRemote, []);
  assert.deepEqual(res.uploaded, ['.gitignore']);
  assert.ok((await cs.fileSync.listFiles(ws)).some((r) => r.file_path === 'debug.log'));
});

test('a synced file that the scan cannot read is not taken for deleted', async () => {
  const ws = await newWorkspace();
  const { cs } = await user();
  const dir = workdir();
  put(dir, 'a.txt', 'a');
  put(dir, 'b.txt', 'b');
  put(dir, 'elsewhere.txt', 'x');
  await cs.fileSync.syncFiles(ws, dir);
  // Still there, but not a file the scan reads: a symlink in its place.
  rmSync(join(dir, 'a.txt'));
  symlinkSync(join(dir, 'elsewhere.txt'), join(dir, 'a.txt'));
  const delta = await cs.fileSync.computeDelta(ws, dir);
  assert.deepEqual([delta.toDeleteRemote, delta.toDownload], [[], []]);
  const res = await cs.fileSync.syncFiles(ws, dir);
  assert.deepEqual([res.deletedRemote, res.downloaded], [[], []]);
  assert.ok((await cs.fileSync.listFiles(ws)).some((r) => r.file_path === 'a.txt'));
  assert.equal(readFileSync(join(dir, 'a.txt'), 'utf8'), 'x', 'the symlink is left as it is');
});

test('an upload planned before another machine changed the file does not overwrite its bytes', async () => {
  const ws = await newWorkspace();
  const { cs: a } = await user();
  const { cs: b, bus } = await user();
  const [dirA, dirB] = [workdir(), workdir()];
  // Four large files come first in path order and take every transfer slot, so `z.txt`
  // waits for a slot while A changes it.
  const large = Buffer.alloc(48 * 1024 * 1024, 1);
  for (const i of [1, 2, 3, 4]) put(dirB, `big${i}.bin`, large);
  put(dirB, 'z.txt', 'base');
  await b.fileSync.syncFiles(ws, dirB);
  await a.fileSync.syncFiles(ws, dirA);
  for (const i of [1, 2, 3, 4]) put(dirB, `big${i}.bin`, Buffer.alloc(large.length, 2 + i));
  put(dirB, 'z.txt', 'edit by B');
  put(dirA, 'z.txt', 'edit by A');

  const started = waitFor(bus, 'cloud:file:progress', (p) => p.filePath === 'big1.bin', 60_000, bus.events.length);
  const syncB = b.fileSync.syncFiles(ws, dirB);
  await started;
  await a.fileSync.uploadFile(ws, dirA, 'z.txt');
  const res = await syncB;
  assert.ok(!res.uploaded.includes('z.txt'), 'B did not record its edit over A\'s');

  // A's bytes are what the cloud serves for A's row.
  const third = workdir();
  const got = await a.fileSync.downloadFile(ws, third, 'z.txt');
  assert.equal(readFileSync(join(third, 'z.txt'), 'utf8'), 'edit by A');
  assert.equal(got.version, 2);
  // And B's next sync keeps both edits.
  const next = await b.fileSync.syncFiles(ws, dirB);
  assert.deepEqual(next.conflicts, [{ filePath: 'z.txt', conflictPath: 'z (cloud conflict).txt' }]);
  assert.equal(readFileSync(join(dirB, 'z (cloud conflict).txt'), 'utf8'), 'edit by A');
  assert.equal(readFileSync(join(dirB, 'z.txt'), 'utf8'), 'edit by B');
});
