// Every server reply is untrusted input (issue #10, items 5, 6, 8, 9, 10): replies of the
// wrong shape are INVALID_RESPONSE, bodies are bounded, redirects never carry credentials to
// another host, and request paths never leave the base URL. A proxy in front of the local
// cloud answers the routes under test differently.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startDevcloud, DEMO_PASSWORD, SEED } from './helpers/devcloud.mjs';
import { cloudSyncFor } from './helpers/client.mjs';
import { startProxy } from './helpers/proxy.mjs';
import { secretsManager } from './helpers/host.mjs';
import { newConversation, rowsOf, workdir, waitFor } from './helpers/sync.mjs';

const ALICE = SEED.users.alice;
const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8' };

let cloud;
let evil;
const closers = [];
before(async () => {
  cloud = await startDevcloud();
  evil = await startRecorder();
});
after(async () => {
  for (const close of closers.reverse()) await close();
  await cloud?.stop();
});

/** Another origin that records everything it is sent. */
async function startRecorder() {
  const seen = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      res.writeHead(200, JSON_HEADERS);
      res.end(JSON.stringify({ access_token: 'x', refresh_token: 'y', user: { id: ALICE.id }, choices: [] }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise((r) => server.close(r)));
  return { url: `http://127.0.0.1:${server.address().port}`, seen };
}

/** A CloudSync whose base URL is a proxy in front of the cloud that answers `intercept`. */
async function viaProxy(intercept, config = {}) {
  const proxy = await startProxy(cloud.url, { intercept });
  closers.push(() => proxy.close());
  const { cs, bus } = await cloudSyncFor({ url: proxy.url, anonKey: cloud.anonKey }, config);
  closers.push(() => cs.destroy());
  return { cs, bus, proxy };
}

const redirect = (status, location) => ({ status, headers: { location }, body: '' });

// --- 9. Redirects ---------------------------------------------------------------------

test('a 307 on the password grant to another origin delivers nothing there', async () => {
  const before = evil.seen.length;
  const { cs } = await viaProxy((req) =>
    req.url.startsWith('/auth/v1/token') ? redirect(307, `${evil.url}/collect?grant_type=password`) : null,
  );
  await assert.rejects(cs.login(ALICE.email, DEMO_PASSWORD), (e) => {
    assert.equal(e.code, 'REDIRECT_REFUSED');
    assert.equal(e.status, 307);
    assert.ok(!e.message.includes(DEMO_PASSWORD));
    return true;
  });
  assert.equal(evil.seen.length, before, 'nothing, not even the apikey, reached the other host');
  assert.equal(cs.isLoggedIn(), false);
});

test('302/307 on REST reads, the messages POST and the AI proxy are refused, never followed', async () => {
  let armed = false;
  const { cs } = await viaProxy((req) => {
    if (!armed) return null;
    if (req.url.startsWith('/rest/v1/workspaces')) return redirect(302, `${evil.url}/rest/v1/workspaces`);
    if (req.url.startsWith('/rest/v1/messages') && req.method === 'POST') return redirect(307, `${evil.url}/rest/v1/messages`);
    if (req.url.startsWith('/functions/v1/ai-proxy')) return redirect(307, `${evil.url}/functions/v1/ai-proxy`);
    return null;
  });
  await cs.login(ALICE.email, DEMO_PASSWORD);
  const conv = await newConversation(cloud);
  armed = true;
  const before = evil.seen.length;
  await assert.rejects(cs.client.get('/rest/v1/workspaces?select=id'), { code: 'REDIRECT_REFUSED', status: 302 });
  await assert.rejects(cs.listCloudWorkspaces(), { code: 'REDIRECT_REFUSED' });
  await assert.rejects(cs.pushConversation(conv, [{ role: 'user', content: 'secret plans' }]), { code: 'REDIRECT_REFUSED' });
  await assert.rejects(cs.aiProxyRequest('auto', 'oboto/echo-1', [{ role: 'user', content: 'hi' }]), {
    code: 'REDIRECT_REFUSED',
  });
  assert.equal(evil.seen.length, before, 'no request reached the other host');
  assert.equal((await rowsOf(cloud, conv)).length, 0);
});

test('a redirect that stays under the base URL is still followed', async () => {
  const { cs } = await viaProxy((req) =>
    req.url.startsWith('/rest/v1/moved') ? redirect(307, '/rest/v1/workspaces?select=id&limit=1') : null,
  );
  await cs.login(ALICE.email, DEMO_PASSWORD);
  const rows = await cs.client.get('/rest/v1/moved');
  assert.equal(rows.length, 1);
});

// --- 10. Paths stay under the base URL -------------------------------------------------

test('with a base URL that has a path, no request path leaves it', async () => {
  const { cs, proxy } = await viaProxy(() => ({ status: 404, headers: JSON_HEADERS, body: '{"message":"nope"}' }));
  await cs.initialize({ baseUrl: `${proxy.url}/cloud`, anonKey: cloud.anonKey, tokenStore: 'memory' });
  for (const path of [
    '/../rest/v1/workspaces',
    '/rest/../../rest/v1/workspaces',
    '/%2e%2e/rest/v1/workspaces',
    '/.%2E/rest/v1/workspaces',
    '//evil.test/rest/v1/workspaces',
    'http://evil.test/rest/v1/workspaces',
    '/..\\rest/v1/workspaces',
  ]) {
    await assert.rejects(cs.client.get(path), { code: 'INVALID_ARGUMENT' }, path);
  }
  assert.equal(proxy.stats.requests, 0, 'nothing was sent');
  await assert.rejects(cs.client.get('/rest/v1/workspaces'), { status: 404 });
  assert.equal(proxy.stats.requests, 1);
});

// --- 6. Shapes ---------------------------------------------------------------------------

async function realTokenResponse() {
  const res = await fetch(`${cloud.url}/auth/v1/token?grant_type=password`, {
    method: 'POST',
    headers: { apikey: cloud.anonKey, 'content-type': 'application/json' },
    body: JSON.stringify({ email: ALICE.email, password: DEMO_PASSWORD }),
  });
  assert.equal(res.status, 200);
  return res.json();
}

test('listCloudWorkspaces refuses HTML, an empty body, null and {"data": [...]}', async () => {
  let answer = null;
  const { cs } = await viaProxy((req) => (answer && req.url.startsWith('/rest/v1/workspaces') ? answer : null));
  await cs.login(ALICE.email, DEMO_PASSWORD);
  assert.ok((await cs.listCloudWorkspaces()).length > 0);
  const real = await cs.client.get('/rest/v1/workspaces?select=id,name');
  for (const canned of [
    { status: 200, headers: { 'content-type': 'text/html' }, body: '<html>maintenance</html>' },
    { status: 200, headers: JSON_HEADERS, body: '' },
    { status: 200, headers: {}, body: '' },
    { status: 200, headers: JSON_HEADERS, body: 'null' },
    { status: 200, headers: JSON_HEADERS, body: JSON.stringify({ data: real }) },
    { status: 200, headers: JSON_HEADERS, body: JSON.stringify([{ id: 'not-a-uuid&x=1', name: 'x' }]) },
  ]) {
    answer = canned;
    await assert.rejects(
      cs.listCloudWorkspaces(),
      (e) => {
        assert.equal(e.code, 'INVALID_RESPONSE', canned.body);
        assert.equal(e.status, 200);
        assert.match(e.url, /\/rest\/v1\/workspaces$/);
        return true;
      },
      canned.body,
    );
  }
});

test('listCloudConversations and createConversation refuse replies of the wrong shape', async () => {
  let answer = null;
  const { cs } = await viaProxy((req) => (answer && req.url.startsWith('/rest/v1/conversations') ? answer : null));
  await cs.login(ALICE.email, DEMO_PASSWORD);
  cs.setWorkingDir(workdir());
  await cs.linkWorkspace(SEED.workspaces.websiteRevamp);
  assert.ok((await cs.listCloudConversations()).length > 0);
  for (const canned of [
    { status: 200, headers: { 'content-type': 'text/html' }, body: '<html>maintenance</html>' },
    { status: 200, headers: JSON_HEADERS, body: 'null' },
    { status: 200, headers: JSON_HEADERS, body: JSON.stringify({ data: [] }) },
    { status: 200, headers: JSON_HEADERS, body: JSON.stringify([{ id: 'not-a-uuid', name: 'x' }]) },
  ]) {
    answer = canned;
    await assert.rejects(cs.listCloudConversations(), { code: 'INVALID_RESPONSE' }, canned.body);
    await assert.rejects(cs.workspaceSync.createConversation('c'), { code: 'INVALID_RESPONSE' }, canned.body);
  }
  answer = { status: 201, headers: JSON_HEADERS, body: '[]' };
  await assert.rejects(cs.workspaceSync.createConversation('c'), { code: 'INVALID_RESPONSE' });
  assert.equal(cs.workspaceSync.getLinkData().conversations?.c, undefined, 'nothing is linked to a row that never came');
});

test('listAgents and invokeAgent refuse replies of the wrong shape', async () => {
  let answer = null;
  const { cs } = await viaProxy((req) =>
    answer && (req.url.startsWith('/rest/v1/cloud_agents') || req.url.startsWith('/functions/v1/agent-chat')) ? answer : null,
  );
  await cs.login(ALICE.email, DEMO_PASSWORD);
  answer = { status: 200, headers: JSON_HEADERS, body: JSON.stringify({ data: [] }) };
  await assert.rejects(cs.listAgents(), { code: 'INVALID_RESPONSE' });
  answer = { status: 200, headers: JSON_HEADERS, body: JSON.stringify({ content: 5 }) };
  await assert.rejects(cs.invokeAgent('anything', 'hi'), { code: 'INVALID_RESPONSE' });
  answer = { status: 200, headers: { 'content-type': 'text/html' }, body: '<p>hi</p>' };
  await assert.rejects(cs.invokeAgent('anything', 'hi'), { code: 'INVALID_RESPONSE' });
});

test('login refuses a token response without a user, or with a user id that is not a UUID', async () => {
  const real = await realTokenResponse();
  let token = null;
  const { cs } = await viaProxy((req) =>
    token && req.url.startsWith('/auth/v1/token') ? { status: 200, headers: JSON_HEADERS, body: JSON.stringify(token) } : null,
  );
  const { user, ...withoutUser } = real;
  for (const body of [withoutUser, { ...real, user: null }, { ...real, user: { ...user, id: 'not-a-uuid&x=1' } }]) {
    token = body;
    await assert.rejects(cs.login(ALICE.email, DEMO_PASSWORD), (e) => {
      assert.equal(e.code, 'INVALID_RESPONSE');
      assert.ok(!e.message.includes(real.access_token) && !e.message.includes(real.refresh_token));
      return true;
    });
    assert.equal(cs.isLoggedIn(), false);
    assert.equal(cs.getStatus().user, null);
  }
});

// --- 5. Lost user context ----------------------------------------------------------------

test('login fails with a code while the user context cannot be loaded, and works once it can', async () => {
  let failing = '/rest/v1/org_memberships';
  const { cs, bus } = await viaProxy((req) =>
    failing && req.url.startsWith(failing) ? { status: 500, headers: JSON_HEADERS, body: '{"message":"boom"}' } : null,
  );
  await assert.rejects(cs.login(ALICE.email, DEMO_PASSWORD), { code: 'HTTP_500', status: 500 });
  assert.equal(cs.isLoggedIn(), false);
  assert.equal(cs.getStatus().org, null);
  // Reported before the login rejected; the event crosses to JS on a queue of its own.
  await waitFor(bus, 'cloud:auth:error', (p) => /Login failed/.test(p.error), 10_000);
  assert.ok(!bus.events.some((e) => e.name === 'cloud:auth:logged-in'));
  assert.equal(await cs.tryAutoLogin(), false, 'no session was stored');

  failing = '/rest/v1/profiles';
  await assert.rejects(cs.login(ALICE.email, DEMO_PASSWORD), { code: 'HTTP_500' });
  assert.equal(cs.isLoggedIn(), false);

  failing = null;
  await cs.login(ALICE.email, DEMO_PASSWORD);
  assert.deepEqual(cs.getStatus().org, { id: SEED.orgs.acme, name: 'Acme', slug: 'acme', tier: 'pro' });
  assert.ok((await cs.listCloudWorkspaces()).length > 0);
});

test('auto-login while the context cannot be loaded reports false, keeps the rotated token, and resumes later', async () => {
  const secrets = secretsManager();
  let failing = false;
  const intercept = (req) =>
    failing && req.url.startsWith('/rest/v1/org_memberships') ? { status: 500, headers: JSON_HEADERS, body: '{}' } : null;
  const { cs: first } = await viaProxy(intercept, { secrets, tokenStore: 'secrets' });
  await first.login(ALICE.email, DEMO_PASSWORD);
  await first.destroy();
  failing = true;
  const { cs } = await viaProxy(intercept, { secrets, tokenStore: 'secrets' });
  assert.equal(await cs.tryAutoLogin(), false);
  assert.equal(cs.isLoggedIn(), false);
  failing = false;
  assert.equal(await cs.tryAutoLogin(), true, 'the refresh token rotated by the failed attempt was kept');
  assert.equal(cs.getStatus().org.id, SEED.orgs.acme);
});

test('a membership whose organization did not come along is refused, not read as "no org"', async () => {
  let answer = null;
  const { cs } = await viaProxy((req) => (answer && req.url.startsWith('/rest/v1/org_memberships') ? answer : null));
  answer = {
    status: 200,
    headers: JSON_HEADERS,
    body: JSON.stringify([{ org_id: SEED.orgs.acme, role: 'owner', organizations: null }]),
  };
  await assert.rejects(cs.login(ALICE.email, DEMO_PASSWORD), { code: 'INVALID_RESPONSE' });
  answer = { status: 200, headers: { 'content-type': 'text/html' }, body: '<html></html>' };
  await assert.rejects(cs.login(ALICE.email, DEMO_PASSWORD), { code: 'INVALID_RESPONSE' });
  assert.equal(cs.isLoggedIn(), false);
});

// --- 8. JSON body cap --------------------------------------------------------------------

/** A server whose 200 JSON body never ends; counts the bytes it managed to write. */
async function endlessJson({ contentLength } = {}) {
  const stats = { written: 0 };
  const server = createServer((req, res) => {
    res.writeHead(200, { ...JSON_HEADERS, ...(contentLength ? { 'content-length': contentLength } : {}) });
    const chunk = Buffer.alloc(64 * 1024, 'a');
    res.write('["');
    const pump = () => {
      while (!res.destroyed && res.write(chunk)) {
        stats.written += chunk.length;
        if (stats.written > 1024 ** 3) return res.destroy();
      }
      if (!res.destroyed) res.once('drain', pump);
    };
    res.on('close', () => (stats.closed = true));
    pump();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  });
  return { url: `http://127.0.0.1:${server.address().port}`, stats };
}

test('a never-ending JSON body fails fast with RESPONSE_TOO_LARGE at the configured cap', async () => {
  const endless = await endlessJson();
  const { cs } = await cloudSyncFor({ url: endless.url, anonKey: 'anon' }, { maxResponseBytes: 1024 * 1024 });
  closers.push(() => cs.destroy());
  const rss = process.memoryUsage().rss;
  await assert.rejects(cs.client.get('/rest/v1/x'), (e) => {
    assert.equal(e.code, 'RESPONSE_TOO_LARGE');
    assert.equal(e.status, 200);
    assert.match(e.url, /\/rest\/v1\/x$/);
    return true;
  });
  // The socket buffers a few MB beyond the cap at most; the old reader took 256 MB.
  assert.ok(endless.stats.written < 32 * 1024 * 1024, `the server wrote ${endless.stats.written} bytes`);
  assert.ok(process.memoryUsage().rss - rss < 64 * 1024 * 1024, 'RSS stays flat');
});

test('the default cap is a few MB, and a Content-Length beyond the cap is refused before reading', async () => {
  const endless = await endlessJson();
  const { cs } = await cloudSyncFor({ url: endless.url, anonKey: 'anon' });
  closers.push(() => cs.destroy());
  await assert.rejects(cs.client.get('/rest/v1/x'), { code: 'RESPONSE_TOO_LARGE' });
  assert.ok(endless.stats.written < 64 * 1024 * 1024, `the server wrote ${endless.stats.written} bytes`);

  const declared = await endlessJson({ contentLength: String(512 * 1024 * 1024) });
  const { cs: cs2 } = await cloudSyncFor({ url: declared.url, anonKey: 'anon' }, { maxResponseBytes: 1024 * 1024 });
  closers.push(() => cs2.destroy());
  await assert.rejects(cs2.client.get('/rest/v1/x'), { code: 'RESPONSE_TOO_LARGE' });
});

test('OBOTO_CLOUD_MAX_RESPONSE_BYTES sets the cap when the config does not', async () => {
  const endless = await endlessJson();
  process.env.OBOTO_CLOUD_MAX_RESPONSE_BYTES = String(256 * 1024);
  try {
    const { cs } = await cloudSyncFor({ url: endless.url, anonKey: 'anon' });
    closers.push(() => cs.destroy());
    await assert.rejects(cs.client.get('/rest/v1/x'), (e) => {
      assert.equal(e.code, 'RESPONSE_TOO_LARGE');
      assert.match(e.message, /262144/);
      return true;
    });
  } finally {
    delete process.env.OBOTO_CLOUD_MAX_RESPONSE_BYTES;
  }
});
