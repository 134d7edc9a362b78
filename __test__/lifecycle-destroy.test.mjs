// destroy() cancels what is in flight: a call the server never answers rejects DESTROYED at
// once, and nothing is left to keep the process running.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { CloudSync } from '../cloud-sync.mjs';

const servers = [];
after(() => servers.forEach((s) => s.close()));

/** Accepts connections and never answers (the sockets are kept so they stay open). */
function silentServer() {
  const sockets = [];
  const server = net.createServer((s) => sockets.push(s));
  servers.push(server);
  server.on('close', () => sockets.forEach((s) => s.destroy()));
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`)));
}

test('calls in flight reject DESTROYED right after destroy()', async () => {
  const url = await silentServer();
  const cs = new CloudSync(null, null);
  await cs.initialize({ baseUrl: url, anonKey: 'anon', tokenStore: 'memory', requestTimeoutMs: 30_000 });
  const pending = [
    cs.client.get('/rest/v1/workspaces'),
    cs.client.post('/rest/v1/things', { a: 1 }),
    cs.client.request('/rest/v1/things', { method: 'DELETE' }),
    cs.login('a@b.c', 'secret-pw'),
  ];
  const settled = pending.map((p) => p.then(() => 'resolved', (e) => e.code));
  await new Promise((r) => setTimeout(r, 200));
  const started = Date.now();
  await cs.destroy();
  assert.deepEqual(await Promise.all(settled), ['DESTROYED', 'DESTROYED', 'DESTROYED', 'DESTROYED']);
  assert.ok(Date.now() - started < 1000, `took ${Date.now() - started} ms`);
  await assert.rejects(cs.client.get('/rest/v1/workspaces'), { code: 'DESTROYED' });
  assert.equal(await cs.tryAutoLogin(), false);
});

test('a process with a call in flight exits by itself after destroy()', async () => {
  const url = await silentServer();
  const entry = fileURLToPath(new URL('../cloud-sync.js', import.meta.url));
  const script = `
    const { CloudSync } = require(${JSON.stringify(entry)});
    (async () => {
      const cs = new CloudSync(null, null);
      await cs.initialize({ baseUrl: ${JSON.stringify(url)}, anonKey: 'anon', tokenStore: 'memory' });
      const call = cs.client.get('/rest/v1/workspaces').catch((e) => console.log(e.code));
      setTimeout(() => cs.destroy(), 200);
      await call;
    })();
  `;
  const started = Date.now();
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const code = await new Promise((resolve) => child.on('exit', (c, sig) => resolve(c ?? sig)));
  clearTimeout(killer);
  const took = Date.now() - started;
  assert.equal(code, 0, `exit ${code}`);
  assert.equal(out.trim(), 'DESTROYED');
  assert.ok(took < 5000, `exited after ${took} ms`);
});
