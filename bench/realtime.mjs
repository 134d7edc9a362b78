// Realtime delivery of database changes: the addon's socket against the official supabase-js
// realtime client (the `ws` transport), in one run against the same local cloud.
//
//   node bench/realtime.mjs [--latency 1000] [--sustained 20000] [--fanout-subs 100]
//                           [--fanout-seconds 2] [--no-fanout] [--sb-first]
//   (--sb-first runs supabase-js's process first; the figures should not change)
//   (or REALTIME_BENCH_LATENCY, _SUSTAINED, _FANOUT_SUBS, _FANOUT_SECONDS; _FANOUT=0)
//
// 1. Latency: single-row INSERTs into `messages` (by bob, with the service key), one at a time;
//    the time from just before the request is sent (a stamp in the row's content) to the JS
//    callback, from the row's `created_at` (the transaction's start, so an upper bound of
//    commit → callback, in microseconds of the same clock) to the callback, and from the
//    INSERT's HTTP response (the commit is done by then) to the callback.
//    The addon is alice's CloudSync linked to Website Revamp (`cloud:message:received`);
//    supabase-js is alice on `postgres_changes` INSERT with `conversation_id=eq.X`.
//    CPU per event: this process's CPU time (all threads) over the phase, less what the same
//    INSERTs cost with nobody listening, per event: each client's cost at a real pace.
// 2. Sustained: bursts of rows committed in one transaction each (one INSERT of --burst rows),
//    so the changes reach JS as fast as the server emits them, not as fast as this machine
//    inserts: events per second from a burst's first callback to its last (the median burst),
//    and the RSS growth of this process over all of them (--sustained events; after a GC,
//    before and after).
// 3. Fan-out: 100 subscribers (alice and bob alternately, a session each; the cloud evaluates
//    RLS once per batch for each distinct identity, here two)
//    of one conversation, one row offered per millisecond (the rows due since the last tick in
//    one INSERT); frames per second, latency p99 and this process's CPU per frame: the addon's
//    CloudSync instances (their sockets share the addon's runtime), then supabase-js clients,
//    on conversations of their own.
// Each client is measured in a fresh Node process of its own (this script, `--client addon|sb`,
// against the same cloud), on conversations of its own: figures that depend on a process's
// history (its heap's size, what the JIT has compiled) do not depend on which client ran first.
// Targets (issue #11): p50 ≤ 3 ms, p99 ≤ 15 ms, ≥ 20,000 events/s, RSS growth ≤ 20 MB, and no
// worse than supabase-js on any figure.
import { fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { startDevcloud, SEED, DEMO_PASSWORD } from '../scripts/devcloud-process.mjs';
import { loggedIn, workdir, newConversation } from '../__test__/helpers/sync.mjs';

const argv = process.argv.slice(2);
const arg = (name, env, dflt) => {
  if (argv.includes(name)) return Number(argv[argv.indexOf(name) + 1]) || dflt;
  return Number(process.env[env]) || dflt;
};
const N_LAT = arg('--latency', 'REALTIME_BENCH_LATENCY', 1000);
const N_SUS = arg('--sustained', 'REALTIME_BENCH_SUSTAINED', 100_000);
const BURST = arg('--burst', 'REALTIME_BENCH_BURST', 20_000);
const FAN_SUBS = arg('--fanout-subs', 'REALTIME_BENCH_FANOUT_SUBS', 100);
const FAN_SECONDS = arg('--fanout-seconds', 'REALTIME_BENCH_FANOUT_SECONDS', 2);
const FANOUT = !argv.includes('--no-fanout') && process.env.REALTIME_BENCH_FANOUT !== '0';
const SB_FIRST = argv.includes('--sb-first');
/** Set in a client's own process: `addon` or `sb`. */
const CLIENT = argv.includes('--client') ? argv[argv.indexOf('--client') + 1] : null;
const WS = SEED.workspaces.websiteRevamp;
const BOB = SEED.users.bob.id;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const now = () => performance.now();
const rssMb = async () => {
  gc();
  await sleep(50);
  gc();
  return process.memoryUsage().rss / 2 ** 20;
};
const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
/** `until` resolves when `pred()` holds, or after `ms` (then false). */
async function until(pred, ms) {
  const end = now() + ms;
  while (!pred()) {
    if (now() > end) return false;
    await sleep(1);
  }
  return true;
}

// A whole-run watchdog: a stuck phase must not leave the process (and its cloud) behind.
const WATCHDOG_MS = 15 * 60_000;
const cleanups = [];
const watchdog = setTimeout(async () => {
  console.error(`bench/realtime: not done after ${WATCHDOG_MS / 60_000} min, giving up`);
  await shutdown();
  process.exit(1);
}, WATCHDOG_MS);
let cloud;
async function shutdown() {
  for (const c of cleanups.splice(0).reverse()) {
    try {
      await c();
    } catch (e) {
      console.error(`cleanup: ${e.message}`);
    }
  }
}


async function tokenOf(who) {
  const r = await fetch(`${cloud.url}/auth/v1/token?grant_type=password`, {
    method: 'POST',
    headers: { apikey: cloud.anonKey, 'content-type': 'application/json' },
    body: JSON.stringify({ email: SEED.users[who].email, password: DEMO_PASSWORD }),
  });
  if (!r.ok) throw new Error(`token for ${who}: ${r.status}`);
  return (await r.json()).access_token;
}

// INSERTs go through a child process (see inserter.mjs), so that this process's CPU is spent
// on receiving only.
const pending = new Map();
let nextId = 0;
let inserter = null;
function startInserter() {
  inserter = fork(new URL('./inserter.mjs', import.meta.url));
  inserter.on('error', () => {});
  inserter.on('message', ({ id, error }) => {
    const p = pending.get(id);
    pending.delete(id);
    if (error) p?.reject(new Error(error));
    else p?.resolve();
  });
}
/** `rows`: the rows, or `{conv, role, sender, from, count}` for rows `sus <from + i>` that the
 *  child builds itself. */
function insert(rows) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    inserter.send({
      id,
      url: `${cloud.url}/rest/v1/messages`,
      headers: {
        apikey: cloud.serviceRoleKey,
        Authorization: `Bearer ${cloud.serviceRoleKey}`,
        'content-type': 'application/json',
        Prefer: 'return=minimal',
      },
      ...(Array.isArray(rows) ? { body: JSON.stringify(rows) } : { burst: rows }),
    });
  });
}
const row = (conv, content) => ({ conversation_id: conv, role: 'user', content, sender_user_id: BOB });
/** The content carries the send stamp: `rt <seq> <performance.now()>`. */
const stamp = (seq) => `rt ${seq} ${now()}`;
const parse = (content) => {
  const [, seq, t] = String(content).split(' ');
  return { seq: Number(seq), t: Number(t) };
};

/** A receiver: `hook(onRow)` subscribes, returns nothing; rows arrive as `onRow(row)`. */
function receiver() {
  const r = { onRow: () => {} };
  r.deliver = (row) => r.onRow(row, now());
  return r;
}

/** Microseconds since the epoch of an ISO timestamp as PostgreSQL writes it (`…:SS.ffffff+00:00`). */
function epochUs(iso) {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:?\d\d)?$/.exec(String(iso));
  if (!m) return NaN;
  return Date.parse(m[1] + (m[3] ?? 'Z')) * 1000 + Number((m[2] ?? '').padEnd(6, '0'));
}
/** `performance.now()` as wall-clock microseconds (the clock PostgreSQL stamps rows with). */
const wallUs = (at) => (performance.timeOrigin + at) * 1000;

/** N sequential single-row INSERTs; each waits for its callback (or 2 s). The process's CPU
 *  time over them (every thread: the addon's runtime too) is measured with the waits driven
 *  by the callbacks themselves, so that no polling adds to it. */
async function latency(conv, rx, n, warm = 20) {
  const fromSend = [];
  const fromCommit = [];
  const fromResp = [];
  let resp = 0;
  let got = -1;
  let arrived = () => {};
  rx.onRow = (r, at) => {
    const { seq, t } = parse(r.content);
    if (r.conversation_id !== conv || !Number.isFinite(seq)) return;
    got = seq;
    if (seq >= warm) {
      fromSend.push(at - t);
      fromCommit.push((wallUs(at) - epochUs(r.created_at)) / 1000);
      fromResp.push(at - resp);
    }
    arrived();
  };
  const arrival = (seq) =>
    new Promise((resolve) => {
      if (got >= seq) return resolve(true);
      const timer = setTimeout(() => resolve(false), 2_000);
      arrived = () => {
        if (got < seq) return;
        clearTimeout(timer);
        resolve(true);
      };
    });
  let lost = 0;
  let cpu = 0;
  for (let seq = 0; seq < n + warm; seq++) {
    const before = seq === warm ? process.cpuUsage() : null;
    if (before) cpu = before;
    await insert([row(conv, stamp(seq))]);
    resp = now();
    if (!(await arrival(seq))) lost++;
  }
  const used = process.cpuUsage(cpu);
  rx.onRow = () => {};
  return { fromSend, fromCommit, fromResp, lost, cpuUs: (used.user + used.system) / n };
}

/** The same INSERTs with nobody listening: the CPU this process spends sending them, which
 *  the latency phases subtract to leave each client's CPU per event. */
async function insertsAlone(conv, n) {
  const before = process.cpuUsage();
  for (let seq = 0; seq < n; seq++) {
    await insert([row(conv, stamp(seq))]);
    await new Promise((resolve) => setImmediate(resolve));
  }
  const used = process.cpuUsage(before);
  return (used.user + used.system) / n;
}

/** `n` rows in bursts of `BURST`, each one INSERT (one commit), the next once the last burst
 *  has arrived; the median burst's events/s (first → last callback) and RSS growth. */
async function sustained(conv, rx, n) {
  let count = 0;
  let first = 0;
  let last = 0;
  rx.onRow = (r, at) => {
    if (r.conversation_id !== conv) return;
    if (count++ === 0) first = at;
    last = at;
  };
  const before = await rssMb();
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss / 2 ** 20)), 10);
  const rates = [];
  const fromCommit = [];
  let delivered = 0;
  const cpu = process.cpuUsage();
  for (let done = 0; done < n; done += BURST) {
    const size = Math.min(BURST, n - done);
    count = 0;
    // The child builds the burst itself: its 20,000 rows never pass through this process.
    await insert({ conv, role: 'user', sender: BOB, from: done, count: size });
    const committed = now();
    await until(() => count >= size, 60_000 + size);
    delivered += count;
    if (count > 1) rates.push((count - 1) / ((last - first) / 1000));
    fromCommit.push(last - committed);
  }
  const used = process.cpuUsage(cpu);
  clearInterval(sampler);
  const after = await rssMb();
  rx.onRow = () => {};
  return {
    count: delivered,
    cpu: (used.user + used.system) / delivered,
    rate: pct(rates, 50),
    drain: pct(fromCommit, 50),
    rssPeak: peak - before,
    rssAfter: after - before,
  };
}

/** One row offered per millisecond for FAN_SECONDS to `rx`'s subscribers (the rows due since
 *  the last tick in one INSERT, so the offered rate holds when one takes longer than 1 ms);
 *  every subscriber's frames per second and latency. The rows have no sender, so no
 *  subscriber takes them for its own. */
async function fanout(conv, rx) {
  const offered = FAN_SECONDS * 1000;
  const lats = new Float64Array(FAN_SUBS * offered);
  let frames = 0;
  let last = 0;
  rx.onRow = (r, at) => {
    if (r.conversation_id !== conv) return;
    lats[frames++] = at - parse(r.content).t;
    last = at;
  };
  await sleep(500);
  let sent = 0;
  let inflight = 0;
  let failed = 0;
  // The server's own commit → frame-queued latency (the newest change's, sampled), to tell
  // the cloud's share of the figure from the client's.
  const server = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const ms = (await cloud.stats()).realtime?.lastChangeLatencyMs;
      if (Number.isFinite(ms) && ms > 0) server.push(ms);
      await sleep(5);
    }
  })();
  const cpu0 = process.cpuUsage();
  const t0 = now();
  while (now() - t0 < offered) {
    const due = Math.min(offered, Math.floor(now() - t0) + 1);
    if (sent < due && inflight < 16) {
      const rows = [];
      while (sent < due) rows.push({ ...row(conv, stamp(sent++)), sender_user_id: null });
      inflight++;
      insert(rows)
        .catch(() => (failed += rows.length))
        .finally(() => inflight--);
    }
    await sleep(1);
  }
  await until(() => inflight === 0, 30_000);
  const insertedAt = now();
  sampling = false;
  await sampler;
  await until(() => frames >= sent * FAN_SUBS, 60_000);
  const cpu = process.cpuUsage(cpu0);
  rx.onRow = () => {};
  const xs = lats.subarray(0, frames);
  return {
    sent,
    failed,
    changeRate: sent / ((insertedAt - t0) / 1000),
    frames,
    expected: sent * FAN_SUBS,
    rate: frames / ((last - t0) / 1000),
    p50: pct(xs, 50),
    p99: pct(xs, 99),
    serverP50: pct(server, 50),
    serverP99: pct(server, 99),
    cpuPerFrame: (cpu.user + cpu.system) / frames,
  };
}

/** This process's client (`CLIENT`): the latency and sustained phases, then fan-out. */
async function runClient(conv) {
  const alice = await tokenOf('alice');
  const result = {};
  // Warmed as long as a measured phase, so that JIT compilation is not counted against it.
  await insertsAlone(conv.alone, N_LAT);
  const alone = [await insertsAlone(conv.alone, N_LAT)];

  // ---- supabase-js: alice on postgres_changes, filtered on one conversation ----
  const clients = [];
  cleanups.push(async () => {
    for (const sb of clients) await sb.removeAllChannels();
  });
  const subscribe = async (token, convId, onRow) => {
    const sb = createClient(cloud.url, cloud.anonKey, {
      auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
      realtime: { transport: WebSocket },
    });
    clients.push(sb);
    sb.realtime.setAuth(token);
    const channel = sb
      .channel(`bench-${clients.length}`)
      .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages', filter: `conversation_id=eq.${convId}` }, (p) =>
        onRow(p.new),
      );
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('supabase-js did not subscribe in 20 s')), 20_000);
      channel.subscribe((status, err) => {
        if (status === 'SUBSCRIBED') resolve(clearTimeout(t));
        else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') reject(err ?? new Error(status));
      });
    });
    return sb;
  };
  // ---- the addon: alice's CloudSync, linked ----
  const runAddon = async () => {
    const rx = receiver();
    // A bus that keeps nothing, so the RSS figure is the addon's, not a recorder's.
    const bus = { emitTyped: (name, payload) => name === 'cloud:message:received' && rx.deliver(payload) };
    let connected = false;
    const watch = { emitTyped: (name, p) => ((connected ||= name === 'cloud:realtime:connected'), bus.emitTyped(name, p)) };
    const { cs } = await loggedIn(cloud, 'alice', { dir: workdir('oboto-bench-rt-'), bus: watch, syncInterval: 3_600_000 });
    cleanups.push(() => cs.destroy());
    await cs.linkWorkspace(WS);
    if (!(await until(() => connected, 20_000))) throw new Error('the addon never connected its realtime socket');
    await sleep(500);
    Object.assign(result, { lat: await latency(conv.addonLat, rx, N_LAT), sus: await sustained(conv.addonSus, rx, N_SUS) });
    await cs.unlinkWorkspace();
    await cs.destroy();
    cleanups.pop();
  };

  const runSb = async () => {
    const rx = receiver();
    const lat = await subscribe(alice, conv.sbLat, rx.deliver);
    const sus = await subscribe(alice, conv.sbSus, rx.deliver);
    Object.assign(result, { lat: await latency(conv.sbLat, rx, N_LAT), sus: await sustained(conv.sbSus, rx, N_SUS) });
    await lat.removeAllChannels();
    await sus.removeAllChannels();
  };
  await (CLIENT === 'addon' ? runAddon() : runSb());

  // ---- fan-out: 100 subscribers of one conversation, one INSERT per millisecond ----
  if (FANOUT && CLIENT === 'addon') {
    const rx = receiver();
    const instances = [];
    let connected = 0;
    cleanups.push(async () => {
      for (const cs of instances) await cs.destroy();
    });
    const bus = {
      emitTyped: (name, p) => {
        if (name === 'cloud:realtime:connected') connected++;
        else if (name === 'cloud:message:received') rx.deliver(p);
      },
    };
    for (let i = 0; i < FAN_SUBS; i++) {
      const { cs } = await loggedIn(cloud, i % 2 ? 'bob' : 'alice', { dir: workdir('oboto-bench-fan-'), bus, syncInterval: 3_600_000 });
      instances.push(cs);
      await cs.linkWorkspace(WS);
    }
    if (!(await until(() => connected >= FAN_SUBS, 60_000))) throw new Error(`only ${connected} of ${FAN_SUBS} addon sockets connected`);
    result.fan = await fanout(conv.fanAddon, rx);
    for (const cs of instances.splice(0)) await cs.destroy();
    cleanups.pop();
  } else if (FANOUT) {
    const rx = receiver();
    const subs = [];
    // A session each, as the addon's instances have.
    for (let i = 0; i < FAN_SUBS; i++) subs.push(await subscribe(await tokenOf(i % 2 ? 'bob' : 'alice'), conv.fanSb, rx.deliver));
    result.fan = await fanout(conv.fanSb, rx);
    for (const sb of subs) await sb.removeAllChannels();
  }
  alone.push(await insertsAlone(conv.alone, N_LAT));
  result.insertCpuUs = Math.min(...alone);
  return result;
}

/** Runs `who`'s process against this cloud; its result. */
function child(who, conv) {
  return new Promise((resolve, reject) => {
    const p = fork(fileURLToPath(import.meta.url), [...argv, '--client', who], {
      env: {
        ...process.env,
        OBOTO_DEVCLOUD_URL: cloud.url,
        OBOTO_DEVCLOUD_ANON_KEY: cloud.anonKey,
        OBOTO_DEVCLOUD_SERVICE_KEY: cloud.serviceRoleKey,
        REALTIME_BENCH_CONV: JSON.stringify(conv),
      },
    });
    let result = null;
    p.on('message', (m) => (result = m));
    p.on('error', reject);
    p.on('exit', (code) => (result ? resolve(result) : reject(new Error(`the ${who} process exited with ${code} and no result`))));
  });
}

async function main() {
  const conv = {};
  for (const k of ['alone', 'addonLat', 'addonSus', 'sbLat', 'sbSus', 'fanAddon', 'fanSb']) conv[k] = await newConversation(cloud, `bench-rt-${k}`);
  const results = {};
  for (const who of SB_FIRST ? ['sb', 'addon'] : ['addon', 'sb']) results[who] = await child(who, conv);
  report(results);
}

function report({ addon, sb }) {
  const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  const k = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
  const ratio = (a, b) => f(a / b, 2) + '×';
  const rows = [
    ['latency p50, send → callback (ms)', addon.lat.fromSend, sb.lat.fromSend, 50],
    ['latency p99, send → callback (ms)', addon.lat.fromSend, sb.lat.fromSend, 99],
    ['latency p50, commit → callback (ms)', addon.lat.fromCommit, sb.lat.fromCommit, 50],
    ['latency p99, commit → callback (ms)', addon.lat.fromCommit, sb.lat.fromCommit, 99],
    ['latency p50, response → callback (ms)', addon.lat.fromResp, sb.lat.fromResp, 50],
    ['latency p99, response → callback (ms)', addon.lat.fromResp, sb.lat.fromResp, 99],
  ];
  const w = 40;
  console.log(
    `realtime, local cloud, ${N_LAT} single-row INSERTs, ${N_SUS.toLocaleString('en-US')} in bursts of ` +
      `${BURST.toLocaleString('en-US')} (one commit each)`,
  );
  console.log(`${''.padEnd(w)}${'addon'.padStart(12)}${'supabase-js'.padStart(14)}   addon advantage`);
  for (const [label, a, b, p] of rows) {
    const [x, y] = [pct(a, p), pct(b, p)];
    console.log(`${label.padEnd(w)}${f(x).padStart(12)}${f(y).padStart(14)}   ${ratio(y, x)}`);
  }
  // Each process's CPU less what its INSERTs cost it with nobody listening.
  const own = (x) => x.lat.cpuUs - x.insertCpuUs;
  console.log(`${'CPU per event, one at a time (µs)'.padEnd(w)}${f(own(addon), 1).padStart(12)}${f(own(sb), 1).padStart(14)}   ${ratio(own(sb), own(addon))}`);
  console.log(`${'lost (no callback in 2 s)'.padEnd(w)}${String(addon.lat.lost).padStart(12)}${String(sb.lat.lost).padStart(14)}`);
  const sus = [
    ['sustained: events/s into JS (burst)', addon.sus.rate, sb.sus.rate, true],
    ['sustained: commit → burst in JS (ms)', addon.sus.drain, sb.sus.drain, false],
    ['sustained: CPU per event (µs)', addon.sus.cpu, sb.sus.cpu, false],
    ['sustained: RSS growth, peak (MB)', addon.sus.rssPeak, sb.sus.rssPeak, false],
    ['sustained: RSS growth after GC (MB)', addon.sus.rssAfter, sb.sus.rssAfter, false],
  ];
  for (const [label, a, b, higher] of sus) {
    const cell = higher ? k : (x) => f(x, 1);
    console.log(`${label.padEnd(w)}${cell(a).padStart(12)}${cell(b).padStart(14)}   ${higher ? ratio(a, b) : ratio(b, a)}`);
  }
  console.log(`${'sustained: delivered'.padEnd(w)}${k(addon.sus.count).padStart(12)}${k(sb.sus.count).padStart(14)}`);
  console.log('ratios: > 1× means the addon does better (lower latency, CPU and RSS growth, more events/s).');
  if (addon.fan && sb.fan) {
    for (const [who, x] of [['addon', addon.fan], ['supabase-js', sb.fan]]) {
      console.log(
        `fan-out, ${FAN_SUBS} ${who} subscribers (RLS on, a session each), ${k(x.sent)} rows at 1/ms offered ` +
          `(${k(x.changeRate)}/s achieved, ${x.failed} failed): ${k(x.frames)}/${k(x.expected)} frames, ` +
          `${k(x.rate)} frames/s, latency p50 ${f(x.p50)} ms, p99 ${f(x.p99)} ms, ` +
          `this process's CPU per frame ${f(x.cpuPerFrame)} µs; ` +
          `server commit → frame queued (sampled) p50 ${f(x.serverP50)} ms, p99 ${f(x.serverP99)} ms`,
      );
    }
  }
  console.log('targets: p50 ≤ 3 ms, p99 ≤ 15 ms, ≥ 20,000 events/s, RSS growth ≤ 20 MB over 100,000 events');
}

// Last: everything above is defined by the time the phases run.
try {
  if (CLIENT) {
    cloud = await startDevcloud();
    startInserter();
    const result = await runClient(JSON.parse(process.env.REALTIME_BENCH_CONV));
    await new Promise((resolve) => process.send(result, resolve));
  } else {
    // A burst is one INSERT: its JSON body must fit.
    cloud = await startDevcloud(['--max-body-bytes', String(Math.max(1 << 20, BURST * 200))]);
    cleanups.push(() => cloud.stop());
    await main();
  }
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  await shutdown();
  inserter?.disconnect();
  clearTimeout(watchdog);
  // A client's process ends once its result is sent (the channel would keep it alive).
  if (CLIENT) process.disconnect();
}
