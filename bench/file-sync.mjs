// File sync against the old module's way (one sequential `fetch` per file, whole-file
// buffers), in one run against the local cloud.
//
//   node bench/file-sync.mjs [--small 2000] [--large 5] [--large-mb 50]
//
// Syncs a generated tree (small files, then large files) into an empty workspace and back
// into an empty directory, then times a no-change re-scan. Prints MB/s, files/s, peak RSS
// and the requests the re-scan sent. Targets: ≥ 5× the baseline on small files, ≥ 90% of
// its bandwidth on large files with flat memory, re-scan of 2,000 files < 200 ms.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { readdirSync } from 'node:fs';
import { SEED } from '../scripts/devcloud-process.mjs';
import { benchSession } from './session.mjs';

const argv = process.argv.slice(2);
const arg = (name, dflt) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) || dflt : dflt);
const SMALL = arg('--small', 2000);
const LARGE = arg('--large', 5);
const LARGE_MB = arg('--large-mb', 50);
const MB = 1024 * 1024;

const { cloud, cs, headers, close } = await benchSession({ config: { syncInterval: 3_600_000 } });
const root = mkdtempSync(join(tmpdir(), 'oboto-file-bench-'));
const ms = (t) => Number(process.hrtime.bigint() - t) / 1e6;
const newWorkspace = async () =>
  (await cloud.serviceRest('workspaces', {
    method: 'POST',
    body: { name: `bench-${randomUUID().slice(0, 8)}`, slug: `bench-${randomUUID()}`, org_id: SEED.orgs.acme },
  }))[0].id;

let peak = 0;
const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
const measure = async (fn) => {
  peak = process.memoryUsage().rss;
  const base = peak;
  const t = process.hrtime.bigint();
  const out = await fn();
  return { ms: ms(t), rssGrowthMb: (peak - base) / MB, out };
};

function makeTree(dir, kind) {
  let bytes = 0;
  if (kind === 'small') {
    for (let i = 0; i < SMALL; i++) {
      const p = join(dir, `d${i % 40}`, `f${i}.txt`);
      mkdirSync(dirname(p), { recursive: true });
      const data = randomBytes(512 + (i % 8) * 512);
      writeFileSync(p, data);
      bytes += data.length;
    }
  } else {
    const chunk = randomBytes(MB);
    for (let i = 0; i < LARGE; i++) {
      const fd = openSync(join(dir, `large-${i}.bin`), 'w');
      for (let j = 0; j < LARGE_MB; j++) {
        chunk[0] = j;
        chunk[1] = i;
        writeSync(fd, chunk);
      }
      closeSync(fd);
      bytes += LARGE_MB * MB;
    }
  }
  return bytes;
}

function files(dir) {
  const out = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith('.cloud-')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out;
}

/** The old module: per file, read it whole, POST the object, upsert the row; sequentially. */
async function baselineUpload(ws, dir) {
  for (const rel of files(dir)) {
    const data = readFileSync(join(dir, rel));
    const key = `${ws}/${rel.split('/').map(encodeURIComponent).join('/')}`;
    let r = await fetch(`${cloud.url}/storage/v1/object/workspace-files/${key}`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/octet-stream', 'x-upsert': 'true' },
      body: data,
    });
    if (!r.ok) throw new Error(`baseline upload: ${r.status} ${await r.text()}`);
    r = await fetch(`${cloud.url}/rest/v1/workspace_files?on_conflict=workspace_id,file_path`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json', Prefer: 'return=representation,resolution=merge-duplicates' },
      body: JSON.stringify({
        workspace_id: ws, file_path: rel, file_size: data.length, storage_path: `${ws}/${rel}`,
        checksum: createHash('sha256').update(data).digest('hex'), version: 1,
      }),
    });
    if (!r.ok) throw new Error(`baseline row: ${r.status} ${await r.text()}`);
  }
}

/** The old module: list the rows, then GET each object whole and write it; sequentially. */
async function baselineDownload(ws, dir) {
  // The cloud returns at most 1,000 rows per request: page, so the baseline fetches every file.
  const rows = [];
  for (;;) {
    const page = await (await fetch(`${cloud.url}/rest/v1/workspace_files?workspace_id=eq.${ws}&select=file_path&order=file_path.asc&limit=1000&offset=${rows.length}`, { headers })).json();
    rows.push(...page);
    if (page.length < 1000) break;
  }
  for (const { file_path: rel } of rows) {
    const key = `${ws}/${rel.split('/').map(encodeURIComponent).join('/')}`;
    const r = await fetch(`${cloud.url}/storage/v1/object/workspace-files/${key}`, { headers });
    if (!r.ok) throw new Error(`baseline download: ${r.status}`);
    const p = join(dir, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, Buffer.from(await r.arrayBuffer()));
  }
}

const report = {};
for (const kind of ['small', 'large']) {
  const src = join(root, `${kind}-src`);
  mkdirSync(src);
  const bytes = makeTree(src, kind);
  const n = kind === 'small' ? SMALL : LARGE;

  const bws = await newWorkspace();
  const bUp = await measure(() => baselineUpload(bws, src));
  const bDst = join(root, `${kind}-baseline-dst`);
  mkdirSync(bDst);
  const bDown = await measure(() => baselineDownload(bws, bDst));
  if (files(bDst).length !== n) throw new Error(`baseline downloaded ${files(bDst).length} of ${n}`);

  const ws = await newWorkspace();
  const up = await measure(() => cs.fileSync.syncFiles(ws, src));
  if (up.out.failed.length) throw new Error(`upload failures: ${JSON.stringify(up.out.failed.slice(0, 3))}`);
  const dst = join(root, `${kind}-dst`);
  mkdirSync(dst);
  const down = await measure(() => cs.fileSync.syncFiles(ws, dst));
  if (down.out.downloaded.length !== n) throw new Error(`downloaded ${down.out.downloaded.length} of ${n}`);

  const rate = (m) => ({
    ms: Math.round(m.ms),
    mbPerS: +(bytes / MB / (m.ms / 1000)).toFixed(1),
    filesPerS: +(n / (m.ms / 1000)).toFixed(1),
    rssGrowthMb: +m.rssGrowthMb.toFixed(1),
  });
  report[kind] = {
    files: n,
    mb: +(bytes / MB).toFixed(1),
    baseline: { upload: rate(bUp), download: rate(bDown) },
    addon: { upload: rate(up), download: rate(down) },
    speedup: {
      upload: +(bUp.ms / up.ms).toFixed(2),
      download: +(bDown.ms / down.ms).toFixed(2),
    },
  };
  if (kind === 'small') {
    await cs.fileSync.computeDelta(ws, src); // warm
    await cloud.resetStats();
    const t = process.hrtime.bigint();
    const d = await cs.fileSync.computeDelta(ws, src);
    const rescanMs = ms(t);
    const stats = await cloud.stats();
    // The listing alone, to tell the server's share of the re-scan from the local walk.
    const tl = process.hrtime.bigint();
    await cs.fileSync.listFiles(ws);
    const listMs = ms(tl);
    report.rescan = {
      files: SMALL,
      ms: Math.round(rescanMs),
      listFilesMs: Math.round(listMs),
      hashed: d.hashed,
      changes: d.toUpload.length + d.toDownload.length + d.conflicts.length,
      requests: Object.values(stats.requests).reduce((a, b) => a + b, 0),
    };
  }
}
clearInterval(sampler);
console.log(JSON.stringify(report, null, 2));
rmSync(root, { recursive: true, force: true });
await close();
