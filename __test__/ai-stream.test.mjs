// What aiProxyStream yields must be exactly what JSON.parse makes of each `data:` payload; a
// stream that is not whole (no `[DONE]`, not an event stream, cut off, endless, ended by
// logout or destroy) must reject, never end as if the answer were complete; a consumer that
// stops pulling must stop the reading.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDevcloud, DEMO_PASSWORD } from './helpers/devcloud.mjs';
import { cloudSyncFor } from './helpers/client.mjs';
import { waitFor } from './helpers/sync.mjs';
import { until } from './helpers/wait.mjs';

const MODEL = 'oboto/echo-1';
const ask = (content) => [{ role: 'user', content }];

/** An OpenAI-compatible upstream streaming the given `data:` payloads verbatim. */
async function upstreamStreaming(payloads) {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const p of payloads) {
        // Multi-line payloads travel as several `data:` lines, joined again with LF.
        res.write(p.split('\n').map((line) => `data: ${line}\n`).join('') + '\n');
      }
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    },
  };
}

/** Streams `payloads` through a local cloud relaying to an upstream, as `aiProxyStream` yields them. */
async function relayed(payloads) {
  const upstream = await upstreamStreaming(payloads);
  const relay = await startDevcloud([], { env: { DEVCLOUD_AI_UPSTREAM: upstream.url } });
  try {
    const { cs } = await cloudSyncFor(relay);
    await cs.login('alice@acme.test', DEMO_PASSWORD);
    const chunks = [];
    for await (const c of cs.aiProxyStream(MODEL, ask('relay'))) chunks.push(c);
    await cs.destroy();
    return chunks;
  } finally {
    await relay.stop();
    await upstream.close();
  }
}

/** Same values, same key order at every level, same prototypes, -0 kept apart from 0. */
function assertIdentical(actual, expected, where) {
  assert.deepStrictEqual(actual, expected, where);
  const order = (v) =>
    v && typeof v === 'object'
      ? Array.isArray(v)
        ? v.map(order)
        : Reflect.ownKeys(v).map((k) => [k, order(v[k])])
      : v;
  assert.deepStrictEqual(order(actual), order(expected), `${where}: key order`);
}

// A small deterministic generator, so that a failure names a reproducible case.
function prng(seed) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

test('tricky chunks come out exactly as JSON.parse makes them', async () => {
  const base = (content, extra = {}) => ({
    id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 1795720550, model: MODEL,
    choices: [{ index: 0, delta: { content }, finish_reason: null }], ...extra,
  });
  const payloads = [];
  for (const content of ['one', ' two', ' three', '', ' four']) payloads.push(JSON.stringify(base(content)));
  // Raw texts, each at least three times with a varying part, so that they are first carried
  // whole, then as a shape, then as a shape that learned another slot.
  const raws = (make) => [0, 1, 2, 3].map(make);
  payloads.push(
    ...raws((i) => `{"__proto__":{"polluted":${i}},"choices":[{"delta":{"content":"p${i}"}}]}`),
    ...raws((i) => `{"a":1,"b":2,"a":${i},"2":"two","1":"one","b":"${i}"}`),
    ...raws((i) => `{"n":[1e400,-0,-0.0,1.5e-7,12345678901234567890,${i}e-2,-${i}],"k":${i % 2 ? 'true' : 'null'}}`),
    ...raws((i) => `{"s":"\\u2028 \u2028 \\" \\\\ \\/ \\u0000 \\ud83d\\ude00 😀 \\ud800 é${i}","t":"\\t${i}"}`),
    ...raws((i) => `{"\\u0061":${i},"a":"esc","":{},"e":[],"deep":[[[{"x":[${i}]}]]]}`),
    ...raws((i) => JSON.stringify({ pretty: { i, list: [i, i + 1] }, note: 'multi-line data' }, null, 2)),
    ...raws((i) => `[${i},"top-level array",{"k":${i}}]`),
    ...raws((i) => (i % 2 ? `"a string chunk ${i}"` : `${i}`)),
    ...raws(() => '{"same":"every time","n":1}'),
  );
  const chunks = await relayed(payloads);
  assert.equal(chunks.length, payloads.length);
  chunks.forEach((c, i) => assertIdentical(c, JSON.parse(payloads[i]), `chunk ${i}: ${payloads[i]}`));
  const proto = chunks.find((c) => c && Object.hasOwn(c, '__proto__'));
  assert.ok(proto, '__proto__ is an own property, as JSON.parse makes it');
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.equal({}.polluted, undefined, 'nothing reached Object.prototype');
  chunks[1].choices[0].delta.content = 'changed';
  assert.equal(chunks[2].choices[0].delta.content, ' three', 'chunks share no objects');
});

test('random chunk streams come out exactly as JSON.parse makes them', async () => {
  const rnd = prng(20261126);
  const pick = (xs) => xs[Math.floor(rnd() * xs.length)];
  const strings = ['', 'a', 'é', '世界', '😀', '"', '\\', '\n', '\u2028', '\u0000', ']:s[i]', '}),alert(1),({', '${x}'];
  const leaf = () => pick([null, true, false, 0, -1, 3.25, 1e21, pick(strings), pick(strings) + pick(strings)]);
  const tree = (depth) => {
    if (depth === 0 || rnd() < 0.3) return leaf();
    if (rnd() < 0.4) return Array.from({ length: Math.floor(rnd() * 4) }, () => tree(depth - 1));
    const o = {};
    for (let k = Math.floor(rnd() * 5); k > 0; k--) o[pick(['a', 'b', '__proto__', '1', 'constructor', 'x y'])] = tree(depth - 1);
    return o;
  };
  const mutate = (v) => {
    if (v === null || typeof v !== 'object') return rnd() < 0.5 ? leaf() : v;
    const c = Array.isArray(v) ? [...v] : { ...v };
    for (const k of Object.keys(c)) c[k] = mutate(c[k]);
    return c;
  };
  const bases = Array.from({ length: 6 }, () => tree(4));
  const payloads = Array.from({ length: 400 }, () => JSON.stringify(mutate(pick(bases)), null, rnd() < 0.2 ? 1 : 0));
  const chunks = await relayed(payloads);
  assert.equal(chunks.length, payloads.length);
  chunks.forEach((c, i) => assertIdentical(c, JSON.parse(payloads[i]), `chunk ${i}: ${payloads[i]}`));
});

let cloud;
before(async () => {
  cloud = await startDevcloud();
});
after(async () => {
  await cloud?.stop();
});

test('streaming works where code generation is disallowed', async () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const script = `
    const { CloudSync } = require(${JSON.stringify(root + 'cloud-sync.js')});
    (async () => {
      const cs = new CloudSync(null, null);
      await cs.initialize({ baseUrl: process.env.URL, anonKey: process.env.KEY, tokenStore: 'memory' });
      await cs.login('bob@acme.test', process.env.PASSWORD);
      const chunks = [];
      for await (const c of cs.aiProxyStream('${MODEL}', [{ role: 'user', content: 'no eval here' }], { max_tokens: 30 })) chunks.push(c);
      await cs.destroy();
      process.stdout.write(JSON.stringify(chunks));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const chunks = await new Promise((resolve, reject) =>
    execFile(process.execPath, ['--disallow-code-generation-from-strings', '-e', script],
      { env: { ...process.env, URL: cloud.url, KEY: cloud.anonKey, PASSWORD: DEMO_PASSWORD } },
      (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(JSON.parse(stdout)))),
  );
  assert.equal(chunks.length, 31);
  assert.match(chunks.map((c) => c.choices[0].delta.content ?? '').join(''), /^Echo: no eval here/);
});

test('the stream emits cloud:usage-update once, at its end, with the usage figures', async () => {
  const { cs, bus } = await cloudSyncFor(cloud);
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  let last;
  for await (const c of cs.aiProxyStream(MODEL, ask('count my tokens'), { max_tokens: 12 })) {
    assert.ok(!bus.names().includes('cloud:usage-update'), 'not before the end');
    last = c;
  }
  // Announced on the last pull, the event crosses to JS on the event queue, after the loop
  // has ended: a timer may fire first on a busy event loop.
  await waitFor(bus, 'cloud:usage-update');
  const updates = () => bus.events.filter((e) => e.name === 'cloud:usage-update');
  assert.equal(updates().length, 1);
  const { timestamp, ...figures } = updates()[0].payload;
  assert.ok(timestamp);
  assert.deepStrictEqual(figures, last._cloud_usage);
  assert.ok(figures.tokens_used_today > 0);
  // Once: nothing more came by the time the instance is gone.
  await cs.destroy();
  assert.equal(updates().length, 1);
});

/**
 * A front for the local cloud: everything goes through to it but the AI proxy, which
 * `answer(req, res)` answers. `stats.written`: bytes `answer` wrote; `stats.closed`: AI proxy
 * responses closed (by either side).
 */
async function frontWithAiProxy(answer) {
  const target = new URL(cloud.url);
  const stats = { written: 0, closed: 0 };
  const server = createServer((req, res) => {
    if (req.url.startsWith('/functions/v1/ai-proxy')) {
      req.resume();
      res.on('close', () => stats.closed++);
      const write = res.write.bind(res);
      res.write = (chunk, ...rest) => {
        stats.written += chunk.length;
        return write(chunk, ...rest);
      };
      return answer(req, res);
    }
    const out = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode, up.headers);
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  const { cs } = await cloudSyncFor({ ...cloud, url });
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  return {
    cs,
    stats,
    close: async () => {
      await cs.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

const event = (content) =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`;

/** Resolves once the front saw `n` AI proxy responses closed: the server learns of a close
 * the client made when its event loop gets to it. */
const closed = (front, n) => until(() => front.stats.closed >= n, 20_000, () => `${n} closed responses (saw ${front.stats.closed})`);

/** Reads the stream to its end: the chunks, and how it ended (`null` when it ended normally). */
async function drain(stream) {
  const chunks = [];
  try {
    for await (const c of stream) chunks.push(c);
    return { chunks, error: null };
  } catch (error) {
    return { chunks, error };
  }
}

test('an answer that is not a whole event stream rejects instead of ending', async () => {
  const answers = {
    'an event stream without [DONE]': [200, { 'content-type': 'text/event-stream' }, event('one') + event('two')],
    'an empty event stream': [200, { 'content-type': 'text/event-stream' }, ''],
    'HTML': [200, { 'content-type': 'text/html' }, '<!doctype html><html><body>Gateway</body></html>'],
    'JSON': [200, { 'content-type': 'application/json' }, JSON.stringify({ choices: [{ message: { content: 'hi' } }] })],
    'an empty body': [200, {}, ''],
    'an event stream that lies about its type': [200, { 'content-type': 'text/plain' }, event('one') + 'data: [DONE]\n\n'],
  };
  let current;
  const front = await frontWithAiProxy((req, res) => {
    const [status, headers, body] = answers[current];
    res.writeHead(status, headers);
    res.end(body);
  });
  try {
    for (current of Object.keys(answers)) {
      const { chunks, error } = await drain(front.cs.aiProxyStream(MODEL, ask('hi')));
      assert.ok(error, `${current}: rejects (got ${chunks.length} chunks and a normal end)`);
      assert.equal(error.code, 'INVALID_RESPONSE', `${current}: ${error.message}`);
      assert.equal(error.status, 200, current);
    }
  } finally {
    await front.close();
  }
});

test('a stream cut off mid-way rejects with NETWORK_ERROR after the chunks that arrived', async () => {
  const front = await frontWithAiProxy((req, res) => {
    // Chunked transfer, then the connection drops without the terminating chunk.
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(event('one') + event('two'));
    setTimeout(() => res.socket.destroy(), 50);
  });
  try {
    const { chunks, error } = await drain(front.cs.aiProxyStream(MODEL, ask('hi')));
    assert.deepStrictEqual(chunks.map((c) => c.choices[0].delta.content), ['one', 'two']);
    assert.equal(error?.code, 'NETWORK_ERROR', String(error));
  } finally {
    await front.close();
  }
});

test('a line that never ends fails fast with RESPONSE_TOO_LARGE, and memory stays flat', async () => {
  const block = Buffer.alloc(64 * 1024, 'x');
  const front = await frontWithAiProxy((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(event('one') + 'data: "');
    const more = () => {
      while (!res.destroyed && res.write(block));
      if (!res.destroyed) res.once('drain', more);
    };
    more();
  });
  try {
    const rss = process.memoryUsage().rss;
    const t0 = performance.now();
    const { chunks, error } = await drain(front.cs.aiProxyStream(MODEL, ask('hi')));
    assert.equal(chunks.length, 1, 'what came before the line is delivered');
    assert.equal(error?.code, 'RESPONSE_TOO_LARGE', String(error));
    assert.ok(performance.now() - t0 < 5000, 'it fails fast');
    assert.ok(front.stats.written < 16 * 1024 * 1024, `read ${front.stats.written} bytes for a 1 MiB limit`);
    assert.ok(process.memoryUsage().rss - rss < 64 * 1024 * 1024, 'RSS stays flat');
    await closed(front, 1);
    assert.equal(front.stats.closed, 1, 'the connection is closed');
  } finally {
    await front.close();
  }
});

test('logout and destroy fail a stream still being read (SESSION_ENDED, DESTROYED)', async () => {
  // A model that never finishes: a chunk every 20 ms.
  const typing = (req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const timer = setInterval(() => res.write(event('tok')), 20);
    res.on('close', () => clearInterval(timer));
  };
  for (const [end, code] of [['logout', 'SESSION_ENDED'], ['destroy', 'DESTROYED']]) {
    const front = await frontWithAiProxy(typing);
    try {
      // One loop waiting for the next chunk when the session ends, one between chunks.
      const waiting = front.cs.aiProxyStream(MODEL, ask('hi'));
      const between = front.cs.aiProxyStream(MODEL, ask('hi'));
      assert.ok((await waiting.next()).value.choices);
      assert.ok((await between.next()).value.choices);
      const pending = drain(waiting);
      await sleep(60);
      await front.cs[end]();
      const w = await pending;
      assert.equal(w.error?.code, code, `${end}, waiting: ${w.error} after ${w.chunks.length} chunks`);
      const b = await drain(between);
      assert.equal(b.error?.code, code, `${end}, between chunks: ${b.error} after ${b.chunks.length} chunks`);
      await closed(front, 2);
      assert.equal(front.stats.closed, 2, 'both connections are closed');
    } finally {
      await front.close();
    }
  }
});

test('a consumer that stops pulling stops the reading: memory stays bounded', async () => {
  // A model that never ends, written as fast as the connection takes it. The local model's
  // longest answer (65,536 chunks, about 14 MB) fits in loopback socket buffers grown by
  // autotuning, and then a stall proves nothing; an endless one always outgrows them.
  const batch = event(' word').repeat(256);
  const front = await frontWithAiProxy((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const more = () => {
      while (!res.destroyed && res.write(batch));
      if (!res.destroyed) res.once('drain', more);
    };
    more();
  });
  // Cleaned up even when an assertion fails: a stream left open would hold the test file.
  try {
    const stream = front.cs.aiProxyStream(MODEL, ask('a very long answer'));
    const first = await stream.next();
    assert.ok(first.value.choices, 'the stream started');
    // The buffers along the way fill, then the reading stops.
    let held = -1;
    for (let i = 0; i < 25 && front.stats.written !== held; i++) {
      held = front.stats.written;
      await sleep(300);
    }
    assert.equal(front.stats.written, held, 'nothing more is read while the consumer waits');
    // What the kernel may hold for one loopback connection (the sender's and the receiver's
    // buffers at their autotuning maximum), plus a few MiB for the addon's own buffers.
    const bound = socketBufferMax() + 4 * 1024 * 1024;
    assert.ok(held < bound, `the addon and the sockets hold a bounded amount (${held} of at most ${bound} bytes)`);
    // Pulling again resumes the reading; a chunk that never comes would mean it did not.
    let n = 1;
    while (front.stats.written <= held) {
      const next = await within(10_000, stream.next());
      assert.ok(next, `the reading resumed (stalled after ${n} chunks)`);
      assert.ok(next.value.choices);
      n++;
    }
    await stream.return();
    await closed(front, 1);
    assert.equal(front.stats.closed, 1, 'leaving the stream closed the connection');
  } finally {
    await front.close();
  }
});

/** `promise`'s value, or `null` if it takes longer than `ms`. */
async function within(ms, promise) {
  let timer;
  const late = new Promise((resolve) => (timer = setTimeout(resolve, ms, null)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The most the kernel buffers for one TCP connection: send plus receive maximum. */
function socketBufferMax() {
  const max = (name) => Number(readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8').trim().split(/\s+/)[2]);
  try {
    return max('tcp_wmem') + max('tcp_rmem');
  } catch {
    return 32 * 1024 * 1024; // not Linux: a generous guess
  }
}
