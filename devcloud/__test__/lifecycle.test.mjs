// The local cloud as a process: the ready line, two instances side by side, and a clean stop
// that leaves no postgres process and no temporary directory behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { startDevcloud } from '../../__test__/helpers/devcloud.mjs';

/** Descendant pids of `pid`, from /proc. */
function descendants(pid) {
  const children = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  const out = [];
  const walk = (p) => (children.get(p) ?? []).forEach((c) => (out.push(c), walk(c)));
  walk(pid);
  return out;
}

function cmdline(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

test('two instances run side by side and stop without leftovers', async () => {
  const [a, b] = await Promise.all([startDevcloud(), startDevcloud()]);
  assert.notEqual(a.url, b.url);
  for (const c of [a, b]) {
    assert.match(c.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(c.anonKey.split('.').length, 3);
    assert.notEqual(c.anonKey, c.serviceRoleKey);
    const r = await fetch(`${c.url}/auth/v1/health`, { headers: { apikey: c.anonKey } });
    assert.equal(r.status, 200);
  }
  assert.notEqual(a.anonKey, b.anonKey, 'each instance signs with its own secret');
  const postgres = descendants(a.child.pid).filter((p) => cmdline(p)[0]?.endsWith('postgres'));
  assert.ok(postgres.length > 0, 'a private postgres runs under the devcloud');
  const dataDir = cmdline(postgres[0])[cmdline(postgres[0]).indexOf('-D') + 1];
  assert.ok(existsSync(dataDir));

  a.child.kill('SIGINT');
  const code = await new Promise((resolve) => a.child.once('exit', (c) => resolve(c)));
  assert.equal(code, 0);
  assert.deepEqual(postgres.filter((p) => existsSync(`/proc/${p}`) && !readFileSync(`/proc/${p}/stat`, 'utf8').includes(') Z ')), []);
  assert.equal(existsSync(dataDir), false, 'the temporary cluster was removed');

  const r = await fetch(`${b.url}/auth/v1/health`, { headers: { apikey: b.anonKey } });
  assert.equal(r.status, 200, 'stopping one leaves the other running');
  await b.stop();
});

test('unknown routes get a JSON 404', async () => {
  const c = await startDevcloud(['--seed', 'none']);
  const r = await fetch(`${c.url}/nope/v9/x`, { headers: { apikey: c.anonKey } });
  assert.equal(r.status, 404);
  assert.match(r.headers.get('content-type'), /json/);
  await c.stop();
});

test('the stats hooks count requests and grants, for the service role only', async () => {
  const c = await startDevcloud();
  const anon = { apikey: c.anonKey, Authorization: `Bearer ${c.anonKey}` };
  assert.equal((await fetch(`${c.url}/devcloud/v1/stats`, { headers: anon })).status, 403);
  assert.equal((await fetch(`${c.url}/devcloud/v1/stats/reset`, { method: 'POST', headers: anon })).status, 403);
  await c.resetStats();
  const login = await fetch(`${c.url}/auth/v1/token?grant_type=password`, {
    method: 'POST',
    headers: { apikey: c.anonKey, 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'bob@acme.test', password: 'oboto-demo-pass' }),
  });
  assert.equal(login.status, 200);
  await fetch(`${c.url}/rest/v1/workspaces?select=id`, { headers: anon });
  const stats = await c.stats();
  assert.equal(stats.grants.password, 1);
  assert.equal(stats.requests['POST /auth/v1/token'], 1);
  assert.equal(stats.requests['GET /rest/v1/workspaces'], 1);
  await c.resetStats();
  assert.deepEqual((await c.stats()).requests, {});
  await c.stop();
});
