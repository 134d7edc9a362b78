// Helpers for the workspace/conversation sync suites.
import { chmodSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { SEED, DEMO_PASSWORD } from './devcloud.mjs';
import { cloudSyncFor } from './client.mjs';

/** A fresh working directory (readable by the devcloud's postgres user, for data dirs). */
export function workdir(prefix = 'oboto-sync-') {
  const d = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(d, 0o755);
  return d;
}

/** A logged-in CloudSync for a seed user, with `dir` as working directory. */
export async function loggedIn(cloud, who = 'alice', { dir = null, ...config } = {}) {
  const { cs, bus } = await cloudSyncFor(cloud, config);
  if (dir) cs.setWorkingDir(dir);
  await cs.login(SEED.users[who].email, DEMO_PASSWORD);
  return { cs, bus };
}

/** A new conversation in Website Revamp (service role), so suites never share one. */
export async function newConversation(cloud, name = `conv-${randomUUID().slice(0, 8)}`) {
  const [row] = await cloud.serviceRest('conversations', {
    method: 'POST',
    body: { workspace_id: SEED.workspaces.websiteRevamp, name, conversation_type: 'chat' },
  });
  return row.id;
}

/** Every row of a conversation, as the service role sees it, oldest first. */
export async function rowsOf(cloud, convId) {
  const all = [];
  for (;;) {
    // The cloud returns at most 1,000 rows per request, fewer with `--db-max-rows`: only an
    // empty page ends the listing.
    const page = await cloud.serviceRest(
      `messages?conversation_id=eq.${convId}&select=id,role,content,sender_user_id,created_at&order=created_at.asc,id.asc&limit=1000&offset=${all.length}`,
    );
    if (page.length === 0) return all;
    all.push(...page);
  }
}

/** A local history of `n` user/assistant turns. */
export function history(n, prefix = 'm') {
  return Array.from({ length: n }, (_, i) => ({
    role: i % 2 === 0 ? 'user' : 'assistant',
    content: `${prefix} ${i}`,
  }));
}

/** Requests of one kind counted by the devcloud since the last reset. */
export async function requests(cloud, key) {
  return (await cloud.stats()).requests[key] ?? 0;
}

/** Resolves when `pred(payload)` holds for an event `name` emitted at index `from` or later
 * of `bus.events` (by default, any time). */
export function waitFor(bus, name, pred = () => true, timeoutMs = 20_000, from = 0) {
  const seen = bus.events.slice(from).find((e) => e.name === name && pred(e.payload));
  if (seen) return Promise.resolve(seen.payload);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      bus.off(name, on);
      reject(new Error(`no ${name} matching within ${timeoutMs} ms; saw ${bus.names().join(', ')}`));
    }, timeoutMs);
    const on = (p) => {
      if (!pred(p)) return;
      clearTimeout(t);
      bus.off(name, on);
      resolve(p);
    };
    bus.on(name, on);
  });
}

/**
 * A TCP port free right now, for a cloud that must come back where its clients expect it, or
 * for a server that must stay absent. Taken outside the kernel's ephemeral range: ports of
 * that range go to any socket that asks for none in particular (each outgoing connection,
 * each `listen(0)` of the test file running alongside), so one freed there may be taken
 * before the cloud binds it again; a port outside it is only ever taken by its number.
 */
export async function freePort() {
  const [low, high] = ephemeralRange();
  const span = low > 10_000 ? [10_000, low] : high < 60_000 ? [high + 1, 65_536] : null;
  if (!span) return listening(0);
  for (let i = 0; i < 100; i++) {
    const port = span[0] + Math.floor(Math.random() * (span[1] - span[0]));
    const free = await listening(port).catch(() => null);
    if (free) return free;
  }
  throw new Error(`no free port in ${span[0]}..${span[1] - 1}`);
}

/** Linux says; elsewhere, the IANA range that macOS and Windows use. */
function ephemeralRange() {
  try {
    return readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  } catch {
    return [49_152, 65_535];
  }
}

/** Listens on `port` (0: any) and closes again: the port, or a rejection if it is taken. */
async function listening(port) {
  const srv = createServer();
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', resolve);
  });
  const bound = srv.address().port;
  await new Promise((r) => srv.close(r));
  return bound;
}

/** Alice, linked to Website Revamp (with `conv`, if given, mapped as `chat`) and an engine
 *  fast enough to see a returning cloud soon: the set-up of the offline outbox suites. */
export async function linkedAlice(cloud, conv = null, config = {}) {
  const dir = workdir();
  const { cs, bus } = await loggedIn(cloud, 'alice', {
    dir,
    syncInterval: 500,
    connectTimeoutMs: 1000,
    requestTimeoutMs: 10_000,
    ...config,
  });
  await cs.linkWorkspace(SEED.workspaces.websiteRevamp);
  if (conv) cs.workspaceSync.linkConversation('chat', conv);
  return { cs, bus, dir };
}
