// `aiProxyStream` against the way the old JavaScript module read the same stream (the
// baseline): an async generator over Node `fetch` + `TextDecoder` + line splitting +
// `JSON.parse`, consumed with the same `for await` loop, in alternating rounds of one run.
//
// - Unpaced: the local model writes 10,000 chunks as fast as it can; chunks per second.
// - Paced: a second local cloud types about 100 chunks a second (DEVCLOUD_AI_CHUNK_DELAY_MS=10),
//   as a real model does; the CPU this process spends per chunk (process.cpuUsage, user +
//   system, every thread; the clouds run in processes of their own) and the time to the
//   first chunk.
//
//   node bench/ai-stream.mjs [--chunks 10000] [--rounds 7] [--paced-chunks 300] [--paced-rounds 3]
//
// Targets: unpaced throughput ≥ 1× the baseline's; paced CPU per chunk ≤ 0.75× the
// baseline's; first chunk no later.
import { benchSession } from './session.mjs';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const CHUNKS = arg('chunks', 10_000);
const ROUNDS = arg('rounds', 7);
const PACED_CHUNKS = arg('paced-chunks', 300);
const PACED_ROUNDS = arg('paced-rounds', 3);
const MODEL = 'oboto/echo-1';
const messages = [{ role: 'user', content: 'stream me a long answer please' }];

/** Times one stream: chunks, first-chunk and total wall time (ms), CPU of this process (µs). */
async function measure(chunks) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let first = 0;
  let n = 0;
  for await (const chunk of chunks) {
    if (n++ === 0) first = performance.now() - t0;
    if (!chunk.choices) throw new Error('bad chunk');
  }
  const total = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { n, first, total, cpu: cpu.user + cpu.system };
}

const addon = (session, max) => measure(session.cs.aiProxyStream(MODEL, messages, { max_tokens: max }));

// The old module's `async *stream(path, body)`: fetch, decode, split lines, parse, yield.
async function* oldStream({ cloud, headers }, body) {
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

const baseline = (session, max) =>
  measure(oldStream(session, { provider: 'auto', model: MODEL, messages, stream: true, max_tokens: max }));

/** Warm-up, then alternating rounds of both. */
async function compare(session, max, rounds) {
  await addon(session, max);
  await baseline(session, max);
  const results = { addon: [], baseline: [] };
  for (let i = 0; i < rounds; i++) {
    results.addon.push(await addon(session, max));
    results.baseline.push(await baseline(session, max));
  }
  return { addon: summary(results.addon), baseline: summary(results.baseline) };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const summary = (runs) => ({
  n: runs[0].n,
  rate: median(runs.map((r) => r.n / (r.total / 1000))),
  first: median(runs.map((r) => r.first)),
  cpu: median(runs.map((r) => r.cpu / r.n)),
});
const line = (name, s) =>
  `  ${name.padEnd(34)}: ${Math.round(s.rate).toLocaleString().padStart(7)} chunks/s, CPU ${s.cpu.toFixed(1).padStart(5)} µs/chunk, first chunk ${s.first.toFixed(2)} ms (${s.n} chunks)`;

const unpacedSession = await benchSession();
const unpaced = await compare(unpacedSession, CHUNKS, ROUNDS);
await unpacedSession.close();

const pacedSession = await benchSession({ env: { DEVCLOUD_AI_CHUNK_DELAY_MS: '10' } });
const paced = await compare(pacedSession, PACED_CHUNKS, PACED_ROUNDS);
await pacedSession.close();

console.log(`unpaced: ${CHUNKS} chunks, median of ${ROUNDS} rounds`);
console.log(line('baseline old JS generator (fetch)', unpaced.baseline));
console.log(line('addon aiProxyStream', unpaced.addon));
console.log(
  `  throughput ${(unpaced.addon.rate / unpaced.baseline.rate).toFixed(2)}× the baseline's (target ≥ 1×); ` +
    `CPU per chunk ${(unpaced.addon.cpu / unpaced.baseline.cpu).toFixed(2)}×`,
);
console.log(`paced (DEVCLOUD_AI_CHUNK_DELAY_MS=10): ${PACED_CHUNKS} chunks, median of ${PACED_ROUNDS} rounds`);
console.log(line('baseline old JS generator (fetch)', paced.baseline));
console.log(line('addon aiProxyStream', paced.addon));
console.log(
  `  CPU per chunk ${(paced.addon.cpu / paced.baseline.cpu).toFixed(2)}× the baseline's (target ≤ 0.75×); ` +
    `first chunk ${(paced.addon.first / paced.baseline.first).toFixed(2)}× (${(paced.addon.first - paced.baseline.first).toFixed(2)} ms; target no later)`,
);
