// File sync with large files: memory stays flat, and a process killed mid-download leaves
// no partial file behind.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { startDevcloud, SEED, ROOT } from './helpers/devcloud.mjs';
import { loggedIn, workdir } from './helpers/sync.mjs';

const MB = 1024 * 1024;
let cloud;
const instances = [];
before(async () => {
  cloud = await startDevcloud();
});
after(async () => {
  for (const cs of instances) await cs.destroy();
  await cloud?.stop();
});

async function alice() {
  const r = await loggedIn(cloud, 'alice', { syncDebounceMs: 0, syncInterval: 3_600_000 });
  instances.push(r.cs);
  return r;
}

async function newWorkspace() {
  const [row] = await cloud.serviceRest('workspaces', {
    method: 'POST',
    body: { name: `large-${randomUUID().slice(0, 8)}`, slug: `large-${randomUUID()}`, org_id: SEED.orgs.acme },
  });
  return row.id;
}

/** Writes `mb` MiB of random bytes without holding them all; returns their SHA-256. */
function bigFile(path, mb) {
  const h = createHash('sha256');
  const fd = openSync(path, 'w');
  const chunk = randomBytes(MB);
  for (let i = 0; i < mb; i++) {
    chunk[0] = i & 0xff;
    chunk[1] = i >> 8;
    writeSync(fd, chunk);
    h.update(chunk);
  }
  closeSync(fd);
  return h.digest('hex');
}

function hashOf(path) {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  const buf = Buffer.alloc(MB);
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

test('a 200 MB file goes up and down with flat memory', async () => {
  const ws = await newWorkspace();
  const { cs } = await alice();
  const src = workdir();
  const digest = bigFile(join(src, 'big.bin'), 200);
  globalThis.gc?.();
  const base = process.memoryUsage().rss;
  let peak = base;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  try {
    const up = await cs.fileSync.uploadFile(ws, src, 'big.bin');
    assert.equal(up.size, 200 * MB);
    assert.equal(up.checksum, digest);
    const dst = workdir();
    const down = await cs.fileSync.downloadFile(ws, dst, 'big.bin');
    assert.equal(down.size, 200 * MB);
    assert.equal(statSync(join(dst, 'big.bin')).size, 200 * MB);
    assert.equal(hashOf(join(dst, 'big.bin')), digest);
  } finally {
    clearInterval(sampler);
  }
  const growth = (peak - base) / MB;
  assert.ok(growth < 50, `RSS grew by ${growth.toFixed(1)} MB`);
});

test('a process killed mid-download leaves no partial file; the next sync completes', async () => {
  const ws = await newWorkspace();
  const { cs } = await alice();
  const src = workdir();
  const digest = bigFile(join(src, 'movie.bin'), 120);
  await cs.fileSync.uploadFile(ws, src, 'movie.bin');
  const dst = workdir();
  const helpers = pathToFileURL(join(ROOT, '__test__', 'helpers', 'sync.mjs')).href;
  const script = `
    import { loggedIn } from ${JSON.stringify(helpers)};
    const { cs, bus } = await loggedIn({ url: process.env.URL, anonKey: process.env.KEY }, 'alice', { syncInterval: 3600000 });
    bus.on('cloud:file:progress', (p) => { if (p.bytes > 0) process.stdout.write('progress\\n'); });
    await cs.fileSync.syncFiles(process.env.WS, process.env.DIR);
    process.stdout.write('finished\\n');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, URL: cloud.url, KEY: cloud.anonKey, WS: ws, DIR: dst },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const seen = await new Promise((resolve) => {
    child.stdout.on('data', (d) => {
      const text = String(d);
      if (text.includes('progress')) {
        child.kill('SIGKILL');
        resolve('progress');
      } else if (text.includes('finished')) resolve('finished');
    });
    child.once('exit', () => resolve('exit'));
  });
  await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', r)));
  assert.equal(seen, 'progress', 'killed while the download was running');
  assert.equal(existsSync(join(dst, 'movie.bin')), false, 'no partial file in place');
  const left = readdirSync(dst).filter((n) => n !== '.cloud-sync-tmp' && !n.startsWith('.cloud-sync-manifest'));
  assert.deepEqual(left, []);

  const res = await cs.fileSync.syncFiles(ws, dst);
  assert.deepEqual(res.downloaded, ['movie.bin']);
  assert.equal(existsSync(join(dst, '.cloud-sync-tmp')), false, 'the leftover temporary file is gone');
  assert.equal(statSync(join(dst, 'movie.bin')).size, 120 * MB);
  assert.equal(hashOf(join(dst, 'movie.bin')), digest);
  assert.ok(readFileSync(join(dst, '.cloud-sync-manifest.json'), 'utf8').includes('movie.bin'));
});
