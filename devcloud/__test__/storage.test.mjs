// Storage conformance of devcloud (`/storage/v1`): what @supabase/supabase-js's storage
// client sees, plus the raw wire where supabase-js cannot go (`..` keys, missing apikey).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@supabase/supabase-js';

import { DEMO_PASSWORD, SEED, startDevcloud } from '../../__test__/helpers/devcloud.mjs';
import { SUPABASE_OPTIONS } from '../../__test__/helpers/supabase.mjs';

const opts = SUPABASE_OPTIONS;
const BUCKET = 'workspace-files';
const ACME_WS = SEED.workspaces.websiteRevamp;
const GLOBEX_WS = SEED.workspaces.secretPlans;
const run = `${process.pid}-${Date.now()}`;

async function signIn(cloud, email) {
  const client = createClient(cloud.url, cloud.anonKey, opts);
  const { data, error } = await client.auth.signInWithPassword({ email, password: DEMO_PASSWORD });
  assert.equal(error, null, `sign in ${email}`);
  client.testToken = data.session.access_token;
  return client;
}

const bytesOf = async (blob) => Buffer.from(await blob.arrayBuffer());

/** A raw HTTP request whose path is sent exactly as given (fetch would normalise `..`). */
function rawRequest(url, { method = 'GET', path, headers = {}, body }) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, method, path, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** VmRSS and VmHWM (peak) of a process, in bytes. */
function memoryOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key) => Number(status.match(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm'))[1]) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

describe('devcloud storage', () => {
  let cloud;
  let alice;
  let bob;
  let carol;
  let anon;
  const files = () => alice.storage.from(BUCKET);

  before(async () => {
    cloud = await startDevcloud();
    [alice, bob, carol] = await Promise.all(
      [SEED.users.alice, SEED.users.bob, SEED.users.carol].map((u) => signIn(cloud, u.email)),
    );
    anon = createClient(cloud.url, cloud.anonKey, opts);
  });
  after(async () => {
    await cloud?.stop();
  });

  test('upload a Buffer and a Blob, download the same bytes', async () => {
    const path = `${ACME_WS}/${run}/notes/readme.md`;
    const text = Buffer.from('# Website revamp\n\nHero: lighter.\n');
    const up = await files().upload(path, text, { contentType: 'text/markdown' });
    assert.equal(up.error, null);
    assert.equal(up.data.path, path);
    assert.equal(up.data.fullPath, `${BUCKET}/${path}`);
    assert.match(up.data.id, /^[0-9a-f-]{36}$/);

    const down = await files().download(path);
    assert.equal(down.error, null);
    assert.equal(down.data.type, 'text/markdown');
    assert.deepEqual(await bytesOf(down.data), text);

    // A Blob goes as multipart/form-data, as storage-js sends it (larger than axum's 2 MB default).
    const binary = randomBytes(3_000_000);
    const blobPath = `${ACME_WS}/${run}/bin/data.bin`;
    const upBlob = await files().upload(blobPath, new Blob([binary], { type: 'application/x-test' }));
    assert.equal(upBlob.error, null);
    const downBlob = await bob.storage.from(BUCKET).download(blobPath);
    assert.equal(downBlob.error, null, 'bob, a member of Acme, reads it too');
    assert.equal(downBlob.data.type, 'application/x-test');
    assert.deepEqual(await bytesOf(downBlob.data), binary);

    // Raw responses carry the object headers.
    const r = await fetch(`${cloud.url}/storage/v1/object/authenticated/${BUCKET}/${path}`, {
      headers: { apikey: cloud.anonKey, Authorization: `Bearer ${alice.testToken}` },
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-length'), String(text.length));
    assert.equal(r.headers.get('cache-control'), 'max-age=3600');
    assert.match(r.headers.get('etag'), /^"[0-9a-f]{64}"$/);
    assert.ok(!Number.isNaN(Date.parse(r.headers.get('last-modified'))));
    const again = await fetch(r.url, {
      headers: { apikey: cloud.anonKey, Authorization: `Bearer ${alice.testToken}`, 'If-None-Match': r.headers.get('etag') },
    });
    assert.equal(again.status, 304);

    const info = await files().info(path);
    assert.equal(info.error, null);
    assert.equal(info.data.size, text.length);
    assert.equal(info.data.contentType, 'text/markdown');
    const exists = await files().exists(`${ACME_WS}/${run}/notes/missing.md`);
    assert.equal(exists.data, false);
  });

  test('list shows one level: folders (null id) and files', async () => {
    const base = `${ACME_WS}/${run}/tree`;
    for (const p of ['b.txt', 'a.txt', 'docs/readme.md', 'docs/deep/x.txt', 'assets/logo.svg']) {
      const { error } = await files().upload(`${base}/${p}`, Buffer.from(p), { contentType: 'text/plain' });
      assert.equal(error, null, p);
    }
    const { data, error } = await files().list(base);
    assert.equal(error, null);
    assert.deepEqual(
      data.map((e) => e.name),
      ['assets', 'docs', 'a.txt', 'b.txt'],
    );
    const folder = data.find((e) => e.name === 'docs');
    assert.equal(folder.id, null);
    assert.equal(folder.metadata, null);
    const file = data.find((e) => e.name === 'a.txt');
    assert.match(file.id, /^[0-9a-f-]{36}$/);
    assert.equal(file.metadata.size, 5);
    assert.equal(file.metadata.mimetype, 'text/plain');
    assert.ok(file.created_at && file.updated_at && file.last_accessed_at);

    const docs = await files().list(`${base}/docs`);
    assert.deepEqual(
      docs.data.map((e) => e.name),
      ['deep', 'readme.md'],
    );
    const page = await files().list(base, { limit: 2, offset: 1 });
    assert.deepEqual(
      page.data.map((e) => e.name),
      ['docs', 'a.txt'],
    );
    const search = await files().list(base, { search: 'b' });
    assert.deepEqual(
      search.data.map((e) => e.name),
      ['b.txt'],
    );
    const desc = await files().list(base, { sortBy: { column: 'name', order: 'desc' } });
    assert.deepEqual(
      desc.data.map((e) => e.name),
      ['docs', 'assets', 'b.txt', 'a.txt'],
    );
  });

  test('a second upload is a Duplicate unless upsert', async () => {
    const path = `${ACME_WS}/${run}/dup.txt`;
    assert.equal((await files().upload(path, Buffer.from('one'))).error, null);
    const dup = await files().upload(path, Buffer.from('two'));
    assert.equal(dup.data, null);
    assert.equal(dup.error.statusCode, '409');
    assert.equal(dup.error.message, 'The resource already exists');
    assert.equal((await files().download(path)).data.size, 3);

    const upsert = await files().upload(path, Buffer.from('three'), { upsert: true });
    assert.equal(upsert.error, null);
    assert.equal(await (await files().download(path)).data.text(), 'three');
    const update = await bob.storage.from(BUCKET).update(path, Buffer.from('four!'));
    assert.equal(update.error, null);
    assert.equal(update.data.id, upsert.data.id, 'the object keeps its id');
    assert.equal(await (await files().download(path)).data.text(), 'four!');
  });

  test('remove deletes several objects and returns their rows', async () => {
    const paths = [`${ACME_WS}/${run}/rm/1.txt`, `${ACME_WS}/${run}/rm/2.txt`];
    for (const p of paths) assert.equal((await files().upload(p, Buffer.from(p))).error, null);
    const { data, error } = await files().remove([...paths, `${ACME_WS}/${run}/rm/never.txt`]);
    assert.equal(error, null);
    assert.deepEqual(data.map((o) => o.name).sort(), paths);
    assert.equal(data[0].bucket_id, BUCKET);
    const gone = await files().download(paths[0]);
    assert.equal(gone.data, null);
    assert.equal(gone.error.statusCode, '404');
    assert.equal((await files().remove(paths)).data.length, 0);

    // The single-object route.
    const one = `${ACME_WS}/${run}/rm/3.txt`;
    await files().upload(one, Buffer.from('x'));
    const auth = { apikey: cloud.anonKey, Authorization: `Bearer ${alice.testToken}` };
    const r = await fetch(`${cloud.url}/storage/v1/object/${BUCKET}/${one}`, { method: 'DELETE', headers: auth });
    assert.deepEqual(await r.json(), { message: 'Successfully deleted' });
    const r2 = await fetch(`${cloud.url}/storage/v1/object/${BUCKET}/${one}`, { method: 'DELETE', headers: auth });
    assert.equal(r2.status, 400);
    assert.deepEqual(await r2.json(), {
      statusCode: '404',
      code: 'NoSuchKey',
      error: 'not_found',
      message: 'Object not found',
    });
  });

  test('move and copy', async () => {
    const from = `${ACME_WS}/${run}/mv/a.txt`;
    await files().upload(from, Buffer.from('moving'));
    assert.equal((await files().copy(from, `${ACME_WS}/${run}/mv/copy.txt`)).error, null);
    assert.equal((await files().move(from, `${ACME_WS}/${run}/mv/b.txt`)).error, null);
    assert.equal((await files().download(from)).error.statusCode, '404');
    assert.equal(await (await files().download(`${ACME_WS}/${run}/mv/b.txt`)).data.text(), 'moving');
    assert.equal(await (await files().download(`${ACME_WS}/${run}/mv/copy.txt`)).data.text(), 'moving');
    const sneaky = await carol.storage.from(BUCKET).move(`${ACME_WS}/${run}/mv/b.txt`, `${GLOBEX_WS}/stolen.txt`);
    assert.equal(sneaky.error.statusCode, '404');
  });

  test('carol (Globex) can neither read nor write Acme objects', async () => {
    const path = `${ACME_WS}/${run}/private.txt`;
    await files().upload(path, Buffer.from('acme only'));
    const mine = carol.storage.from(BUCKET);

    const read = await mine.download(path);
    assert.equal(read.data, null);
    assert.equal(read.error.statusCode, '404', 'hidden by RLS: not found');
    assert.deepEqual((await mine.list(`${ACME_WS}/${run}`)).data, []);

    const write = await mine.upload(`${ACME_WS}/${run}/evil.txt`, Buffer.from('x'));
    assert.equal(write.data, null);
    assert.equal(write.error.statusCode, '403');
    assert.equal(write.error.message, 'new row violates row-level security policy');
    const overwrite = await mine.upload(path, Buffer.from('x'), { upsert: true });
    assert.equal(overwrite.error.statusCode, '403');
    assert.deepEqual((await mine.remove([path])).data, []);
    assert.equal(await (await files().download(path)).data.text(), 'acme only', 'still intact');

    // Her own workspace works, and Acme cannot see it.
    const own = `${GLOBEX_WS}/${run}/plan.txt`;
    assert.equal((await mine.upload(own, Buffer.from('step 2'))).error, null);
    assert.equal(await (await mine.download(own)).data.text(), 'step 2');
    assert.equal((await files().download(own)).error.statusCode, '404');
    // The anon role sees nothing at all.
    assert.equal((await anon.storage.from(BUCKET).download(own)).error.statusCode, '404');
  });

  test('bad keys are InvalidKey; `..` never escapes', async () => {
    const headers = { apikey: cloud.anonKey, Authorization: `Bearer ${alice.testToken}`, 'content-type': 'text/plain' };
    for (const key of [`${ACME_WS}/../${GLOBEX_WS}/x.txt`, `${ACME_WS}/a/../../x.txt`, `${ACME_WS}/%2E%2E/x.txt`, `${ACME_WS}%2F..%2Fx.txt`, `${ACME_WS}/nul%00.txt`]) {
      const r = await rawRequest(cloud.url, { method: 'POST', path: `/storage/v1/object/${BUCKET}/${key}`, headers, body: 'x' });
      assert.equal(r.status, 400, key);
      assert.equal(r.body.statusCode, '400', key);
      assert.equal(r.body.code, 'InvalidKey', key);
    }
    const get = await rawRequest(cloud.url, { path: `/storage/v1/object/${BUCKET}/${ACME_WS}/../${GLOBEX_WS}/plan.txt`, headers });
    assert.equal(get.body.code, 'InvalidKey');
    // supabase-js (fetch) resolves `..` before sending; the result is still refused by RLS.
    const viaJs = await files().upload(`${ACME_WS}/../x.txt`, Buffer.from('x'));
    assert.notEqual(viaJs.error, null);
  });

  test('gateway and JWT errors', async () => {
    const url = `${cloud.url}/storage/v1/object/list/${BUCKET}`;
    const noKey = await fetch(url, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(noKey.status, 401);
    assert.equal((await noKey.json()).message, 'No API key found in request');
    const bad = await fetch(url, {
      method: 'POST',
      body: '{}',
      headers: { apikey: cloud.anonKey, Authorization: 'Bearer not.a.jwt', 'content-type': 'application/json' },
    });
    assert.equal(bad.status, 400);
    const body = await bad.json();
    assert.equal(body.statusCode, '403');
    assert.equal(body.error, 'Unauthorized');
    const malformed = await fetch(url, {
      method: 'POST',
      body: '{nope',
      headers: { apikey: cloud.anonKey, Authorization: `Bearer ${alice.testToken}`, 'content-type': 'application/json' },
    });
    assert.equal(malformed.status, 400);
    assert.equal((await malformed.json()).statusCode, '400');
    const unknown = await fetch(`${cloud.url}/storage/v1/nope`, { headers: { apikey: cloud.anonKey } });
    assert.equal(unknown.status, 404);
    assert.equal((await unknown.json()).statusCode, '404');
    const buckets = await alice.storage.listBuckets();
    assert.equal(buckets.error, null);
    assert.deepEqual(
      buckets.data.map((b) => b.id),
      [BUCKET],
    );
  });

  test('a 50 MB file streams both ways without growing the server', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'devcloud-storage-'));
    try {
      const file = join(dir, 'big.bin');
      const size = 50 * 1024 * 1024;
      const hash = createHash('sha256');
      await new Promise((resolve, reject) => {
        const out = createWriteStream(file);
        out.on('error', reject);
        out.on('finish', resolve);
        const block = randomBytes(1024 * 1024);
        for (let i = 0; i < 50; i++) {
          block[0] = i; // every megabyte differs
          hash.update(block);
          out.write(Buffer.from(block));
        }
        out.end();
      });
      const expected = hash.digest('hex');
      const pid = cloud.child.pid;
      const before = memoryOf(pid);

      const path = `${ACME_WS}/${run}/big.bin`;
      const up = await files().upload(path, createReadStream(file), {
        contentType: 'application/octet-stream',
        duplex: 'half',
      });
      assert.equal(up.error, null);

      const r = await fetch(`${cloud.url}/storage/v1/object/${BUCKET}/${path}`, {
        headers: { apikey: cloud.anonKey, Authorization: `Bearer ${alice.testToken}` },
      });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('content-length'), String(size));
      const got = createHash('sha256');
      let received = 0;
      for await (const chunk of r.body) {
        got.update(chunk);
        received += chunk.length;
      }
      assert.equal(received, size);
      assert.equal(got.digest('hex'), expected);

      const afterwards = memoryOf(pid);
      const growth = afterwards.peak - before.peak;
      t.diagnostic(`devcloud RSS ${(before.rss / 1048576).toFixed(1)} -> ${(afterwards.rss / 1048576).toFixed(1)} MB, peak +${(growth / 1048576).toFixed(1)} MB`);
      assert.ok(growth < 30 * 1024 * 1024, `peak RSS grew by ${(growth / 1048576).toFixed(1)} MB`);
      const listed = (await files().list(`${ACME_WS}/${run}`, { search: 'big' })).data;
      assert.equal(listed[0].metadata.size, size);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('devcloud storage size limit', () => {
  let cloud;
  let alice;
  before(async () => {
    cloud = await startDevcloud(['--max-upload-bytes', '1000']);
    alice = await signIn(cloud, SEED.users.alice.email);
  });
  after(async () => {
    await cloud?.stop();
  });

  test('an upload over --max-upload-bytes is EntityTooLarge, and nothing is stored', async () => {
    const files = alice.storage.from(BUCKET);
    const path = `${ACME_WS}/too-big.bin`;
    const { error } = await files.upload(path, Buffer.alloc(5000));
    assert.equal(error.statusCode, '413');
    // Without a Content-Length the limit applies while streaming.
    async function* chunks() {
      for (let i = 0; i < 5; i++) yield Buffer.alloc(500);
    }
    const streamed = await fetch(`${cloud.url}/storage/v1/object/${BUCKET}/${path}`, {
      method: 'POST',
      body: chunks(),
      duplex: 'half',
      headers: { apikey: cloud.anonKey, Authorization: `Bearer ${alice.testToken}`, 'content-type': 'application/octet-stream' },
    });
    assert.equal(streamed.status, 400);
    assert.equal((await streamed.json()).code, 'EntityTooLarge');
    assert.equal((await files.download(path)).error.statusCode, '404');
    assert.equal((await files.upload(path, Buffer.alloc(1000))).error, null, 'exactly the limit is fine');
  });
});
