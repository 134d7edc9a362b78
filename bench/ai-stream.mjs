// Streaming throughput of `aiProxyStream` against the way the old JavaScript module read the
// same stream (the baseline): an async generator over Node `fetch` + `TextDecoder` + line
// splitting + `JSON.parse`, consumed with the same `for await` loop.
// One run, one local cloud, both reading 10,000 chunks of its deterministic model, in
// alternating rounds.
//
//   node bench/ai-stream.mjs [--chunks 10000] [--rounds 7]
//
// Prints chunks per second and time to first chunk for each, and their ratios (targets:
// ≥ 1.5× the baseline's throughput; first-chunk overhead within 1 ms of the baseline).
import { benchSession } from './session.mjs';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const CHUNKS = arg('chunks', 10_000);
const ROUNDS = arg('rounds', 7);
const MODEL = 'oboto/echo-1';
const messages = [{ role: 'user', content: 'stream me a long answer please' }];

const { cloud, cs, headers, close } = await benchSession();

async function addon() {
  const t0 = performance.now();
  let first = 0;
  let n = 0;
  for await (const chunk of cs.aiProxyStream(MODEL, messages, { max_tokens: CHUNKS })) {
    if (n++ === 0) first = performance.now() - t0;
    if (!chunk.choices) throw new Error('bad chunk');
  }
  return { n, first, total: performance.now() - t0 };
}

// The old module's `async *stream(path, body)`: fetch, decode, split lines, parse, yield.
async function* oldStream(body) {
  const r = await fetch(`${cloud.url}/functions/v1/ai-proxy`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const bytes of r.body) {
    buffer += decoder.decode(bytes, { stream: true });
    const lines = buffer.split('\n');
    buffer = lines.pop();
    for (const line of lines) {
      if (!line.startsWith('data: ')) continue;
      const data = line.slice(6);
      if (data === '[DONE]') return;
      yield JSON.parse(data);
    }
  }
}

async function baseline() {
  const t0 = performance.now();
  let first = 0;
  let n = 0;
  for await (const chunk of oldStream({ provider: 'auto', model: MODEL, messages, stream: true, max_tokens: CHUNKS })) {
    if (n++ === 0) first = performance.now() - t0;
    if (!chunk.choices) throw new Error('bad chunk');
  }
  return { n, first, total: performance.now() - t0 };
}

await addon();
await baseline(); // warm-up
const results = { addon: [], baseline: [] };
for (let i = 0; i < ROUNDS; i++) {
  results.addon.push(await addon());
  results.baseline.push(await baseline());
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const summary = (runs) => ({
  n: runs[0].n,
  rate: median(runs.map((r) => r.n / (r.total / 1000))),
  first: median(runs.map((r) => r.first)),
});
const a = summary(results.addon);
const b = summary(results.baseline);
console.log(`${CHUNKS} streamed chunks, median of ${ROUNDS} rounds`);
console.log(`  baseline old JS generator (fetch)     : ${Math.round(b.rate).toLocaleString()} chunks/s, first chunk ${b.first.toFixed(2)} ms (${b.n} chunks)`);
console.log(`  addon aiProxyStream                   : ${Math.round(a.rate).toLocaleString()} chunks/s, first chunk ${a.first.toFixed(2)} ms (${a.n} chunks)`);
console.log(`  throughput ratio ${(a.rate / b.rate).toFixed(2)}× (target ≥ 1.5×); first-chunk difference ${(a.first - b.first).toFixed(2)} ms (target ≤ 1 ms)`);

await close();
