// A server that is down, silent, or answers garbage: clear errors, bounded time, and reads
// retried while writes are not.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import net from 'node:net';
import { CloudSync } from '../cloud-sync.mjs';
import { freePort } from './helpers/sync.mjs';

const servers = [];
after(() => servers.forEach((s) => s.close()));

function listen(server) {
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`)));
}

async function clientFor(baseUrl, extra = {}) {
  const cs = new CloudSync(null, null);
  await cs.initialize({ baseUrl, anonKey: 'anon', tokenStore: 'memory', ...extra });
  return cs;
}

test('an unreachable server fails fast with a clear message', async () => {
  // Not a port just freed by a listen(0): the kernel may hand that one to another socket
  // (the test file running alongside) before the client connects.
  const closed = `http://127.0.0.1:${await freePort()}`;
  const cs = await clientFor(closed);
  const started = Date.now();
  await assert.rejects(cs.login('a@b.c', 'secret-pw'), (e) => {
    assert.equal(e.code, 'NETWORK_ERROR');
    assert.match(e.message, /Cannot reach Oboto Cloud at .*connection failed/);
    assert.ok(!e.message.includes('secret-pw'));
    return true;
  });
  assert.ok(Date.now() - started < 2000);
  await cs.destroy();
});

test('a server that never answers fails within the request timeout', async () => {
  const silent = await listen(net.createServer(() => {}));
  const cs = await clientFor(silent, { requestTimeoutMs: 800 });
  const started = Date.now();
  await assert.rejects(cs.client.get('/rest/v1/workspaces'), (e) => {
    assert.equal(e.code, 'NETWORK_TIMEOUT');
    assert.match(e.message, /timed out/);
    return true;
  });
  const took = Date.now() - started;
  assert.ok(took >= 700 && took < 3000, `took ${took} ms`);
  await cs.destroy();
});

test('garbage instead of JSON is an INVALID_RESPONSE, not a crash', async () => {
  const url = await listen(
    createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"access_token": oops');
    }),
  );
  const cs = await clientFor(url);
  await assert.rejects(cs.client.get('/rest/v1/x'), { code: 'INVALID_RESPONSE', status: 200 });
  await assert.rejects(cs.login('a@b.c', 'pw'), { code: 'INVALID_RESPONSE' });
  await cs.destroy();
});

test('a token response missing fields is refused', async () => {
  const url = await listen(
    createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ hello: 'world' }));
    }),
  );
  const cs = await clientFor(url);
  await assert.rejects(cs.login('a@b.c', 'pw'), { code: 'INVALID_RESPONSE' });
  assert.equal(cs.isLoggedIn(), false);
  await cs.destroy();
});

test('GETs are retried on 502/503/504 at most 3 times; writes never', async () => {
  const hits = { GET: 0, POST: 0 };
  let failUntil = 2;
  const url = await listen(
    createServer((req, res) => {
      hits[req.method]++;
      if (req.method === 'GET' && hits.GET <= failUntil) {
        res.writeHead(503).end();
        return;
      }
      if (req.method === 'POST') {
        res.writeHead(502, { 'content-type': 'text/html' }).end('<html>bad gateway</html>');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('[1]');
    }),
  );
  const cs = await clientFor(url);
  assert.deepEqual(await cs.client.get('/rest/v1/x'), [1]);
  assert.equal(hits.GET, 3, 'two failures then success');
  hits.GET = 0;
  failUntil = 100;
  await assert.rejects(cs.client.get('/rest/v1/x'), { status: 503, code: 'HTTP_503' });
  assert.equal(hits.GET, 4, 'one try and three retries');
  await assert.rejects(cs.client.post('/rest/v1/x', { a: 1 }), (e) => {
    assert.equal(e.status, 502);
    assert.match(e.message, /Bad Gateway/);
    return true;
  });
  assert.equal(hits.POST, 1, 'a write is not retried');
  await cs.destroy();
});

test('JSON in, text and 204 out', async () => {
  let received;
  const url = await listen(
    createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        received = { body, apikey: req.headers.apikey, type: req.headers['content-type'], auth: req.headers.authorization };
        if (req.url.startsWith('/text')) res.writeHead(200, { 'content-type': 'text/plain' }).end('plain words');
        else res.writeHead(204).end();
      });
    }),
  );
  const cs = await clientFor(url);
  assert.equal(await cs.client.post('/none', { q: 'x&org_id=neq.0' }), null);
  assert.deepEqual(JSON.parse(received.body), { q: 'x&org_id=neq.0' });
  assert.equal(received.apikey, 'anon');
  assert.match(received.type, /application\/json/);
  assert.equal(received.auth, undefined, 'no bearer when logged out');
  assert.equal(await cs.client.get('/text'), 'plain words');
  await cs.destroy();
});
