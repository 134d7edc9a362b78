// A wrong argument type to any promise-returning method is a rejection with
// `INVALID_ARGUMENT` naming the argument, never a synchronous throw that `.catch()` misses.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDevcloud } from './helpers/devcloud.mjs';
import { loggedIn, workdir } from './helpers/sync.mjs';
import { CloudSync } from '../cloud-sync.mjs';

let cloud;
let cs;
before(async () => {
  cloud = await startDevcloud();
  ({ cs } = await loggedIn(cloud, 'alice', { dir: workdir(), realtime: false }));
});
after(async () => {
  await cs?.destroy();
  await cloud?.stop();
});

const WS = '00000000-0000-4000-8000-000000000000';
const fn = () => {};

// [label, call, argument the message must name]
function cases() {
  const c = cs.client;
  const fs = cs.fileSync;
  const ws = cs.workspaceSync;
  return [
    ['initialize(42)', () => new CloudSync().initialize(42), 'config'],
    ["initialize({ baseUrl: 1 })", () => new CloudSync().initialize({ baseUrl: 1, anonKey: 'k' }), 'config'],
    ['login(null, pw)', () => cs.login(null, 'pw'), 'email'],
    ["login('a@b.c', 42)", () => cs.login('a@b.c', 42), 'password'],
    ['linkWorkspace(null)', () => cs.linkWorkspace(null), 'id'],
    ['linkWorkspace(id, 42)', () => cs.linkWorkspace(WS, 42), 'name'],
    ['pushWorkspaceState(42)', () => cs.pushWorkspaceState(42), 'localState'],
    ["pushWorkspaceState('x')", () => cs.pushWorkspaceState('x'), 'localState'],
    ['pushConversation(42, [])', () => cs.pushConversation(42, []), 'cloudConvId'],
    ["pushConversation(id, 'x')", () => cs.pushConversation(WS, 'x'), 'messages'],
    ['pushConversation(id, [], 42)', () => cs.pushConversation(WS, [], 42), 'lastSyncAt'],
    ['pullConversation({})', () => cs.pullConversation({}), 'cloudConvId'],
    ['pullConversation(id, 42)', () => cs.pullConversation(WS, 42), 'since'],
    ["invokeAgent(1, 'hi')", () => cs.invokeAgent(1, 'hi'), 'slug'],
    ["invokeAgent('a', null)", () => cs.invokeAgent('a', null), 'message'],
    ["invokeAgent('a', 'hi', 'x')", () => cs.invokeAgent('a', 'hi', 'x'), 'history'],
    ["invokeAgent('a', 'hi', [], 7)", () => cs.invokeAgent('a', 'hi', [], 7), 'options'],
    ["aiProxyRequest(1, 'm', [])", () => cs.aiProxyRequest(1, 'm', []), 'provider'],
    ["aiProxyRequest('p', fn, [])", () => cs.aiProxyRequest('p', fn, []), 'model'],
    ["aiProxyRequest('p', 'm', {})", () => cs.aiProxyRequest('p', 'm', {}), 'messages'],
    ["aiProxyRequest('p', 'm', [], 'x')", () => cs.aiProxyRequest('p', 'm', [], 'x'), 'options'],
    ["aiProxyStream(1, [])", () => cs.aiProxyStream(1, []).next(), 'model'],
    ["aiProxyStream('m', null)", () => cs.aiProxyStream('m', null).next(), 'messages'],
    ["aiProxyStream('m', [], 3)", () => cs.aiProxyStream('m', [], 3).next(), 'options'],
    ['broadcast(1, {})', () => cs.broadcast(1, {}), 'event'],
    ["broadcast('e', 'x')", () => cs.broadcast('e', 'x'), 'payload'],
    ['client.get(42)', () => c.get(42), 'path'],
    ["client.get('/x', 'h')", () => c.get('/rest/v1/x', 'h'), 'headers'],
    ["client.get('/x', { a: 1 })", () => c.get('/rest/v1/x', { a: 1 }), 'headers.a'],
    ['client.post(null)', () => c.post(null, {}), 'path'],
    ["client.post('/x', fn)", () => c.post('/rest/v1/x', fn), 'body'],
    ["client.post('/x', {}, 1)", () => c.post('/rest/v1/x', {}, 1), 'headers'],
    ['client.patch(1)', () => c.patch(1, {}), 'path'],
    ["client.patch('/x', {}, 'h')", () => c.patch('/rest/v1/x', {}, 'h'), 'headers'],
    ['client.delete(undefined)', () => c.delete(undefined), 'path'],
    ["client.delete('/x', 5)", () => c.delete('/rest/v1/x', 5), 'headers'],
    ['client.request(1)', () => c.request(1), 'path'],
    ["client.request('/x', 'GET')", () => c.request('/rest/v1/x', 'GET'), 'options'],
    ["client.request('/x', { method: 1 })", () => c.request('/rest/v1/x', { method: 1 }), 'options'],
    ["workspaceSync.createConversation(1)", () => ws.createConversation(1), 'name'],
    ["workspaceSync.createConversation('n', 2)", () => ws.createConversation('n', 2), 'conversationType'],
    ['fileSync.listFiles(1)', () => fs.listFiles(1), 'wsId'],
    ["fileSync.uploadFile(null, '/d', 'a')", () => fs.uploadFile(null, '/d', 'a'), 'wsId'],
    ["fileSync.uploadFile(ws, 1, 'a')", () => fs.uploadFile(WS, 1, 'a'), 'localDir'],
    ["fileSync.uploadFile(ws, '/d', {})", () => fs.uploadFile(WS, '/d', {}), 'relPath'],
    ["fileSync.downloadFile(ws, '/d')", () => fs.downloadFile(WS, '/d'), 'relPath'],
    ["fileSync.downloadFile(1, '/d', 'a')", () => fs.downloadFile(1, '/d', 'a'), 'wsId'],
    ['fileSync.deleteFile(ws, 1)', () => fs.deleteFile(WS, 1), 'relPath'],
    ["fileSync.deleteFile([], 'a')", () => fs.deleteFile([], 'a'), 'wsId'],
    ['fileSync.computeDelta(ws, null)', () => fs.computeDelta(WS, null), 'localDir'],
    ['fileSync.syncFiles(1)', () => fs.syncFiles(1), 'wsId'],
    ['fileSync.syncFiles(ws, 2)', () => fs.syncFiles(WS, 2), 'localDir'],
  ];
}

test('wrong argument types reject with INVALID_ARGUMENT naming the argument', async () => {
  assert.ok(cs.fileSync && cs.workspaceSync, 'logged in');
  for (const [label, call, name] of cases()) {
    let promise;
    assert.doesNotThrow(() => (promise = call()), `${label} threw synchronously`);
    assert.ok(promise instanceof Promise, `${label} returns a promise`);
    await assert.rejects(
      promise,
      (e) => {
        assert.equal(e.code, 'INVALID_ARGUMENT', `${label}: ${e.code} ${e.message}`);
        assert.ok(e.message.includes(`\`${name}\``), `${label} names ${name}: ${e.message}`);
        return true;
      },
      label,
    );
  }
});

test('sync methods throw INVALID_ARGUMENT for a wrong type', () => {
  assert.throws(() => cs.setWorkingDir(42), { code: 'INVALID_ARGUMENT', message: /`dir`/ });
  assert.throws(() => cs.workspaceSync.linkConversation(1, 'x'), { code: 'INVALID_ARGUMENT', message: /`localName`/ });
  assert.throws(() => cs.workspaceSync.linkConversation('a', null), {
    code: 'INVALID_ARGUMENT',
    message: /`cloudConvId`/,
  });
});

test('right argument types still work', async () => {
  assert.ok(Array.isArray(await cs.listCloudWorkspaces()));
  assert.ok(Array.isArray(await cs.client.get('/rest/v1/workspaces?select=id', { Accept: 'application/json' })));
  assert.ok(Array.isArray(await cs.client.request('/rest/v1/workspaces?select=id', { method: 'get' })));
  await assert.rejects(cs.client.request('/rest/v1/x', { method: 'TRACE' }), { code: 'INVALID_ARGUMENT' });
});
