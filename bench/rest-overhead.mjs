// REST overhead of the addon against Node's own fetch (the baseline), in one run against
// the local cloud: 500 sequential `client.get('/rest/v1/workspaces?select=id')` calls each,
// in alternating blocks so both see the same server and machine state.
//
//   node bench/rest-overhead.mjs [--calls 500]
//
// Prints median and p99 latency for both and their ratio (target: addon ≤ 1.10 × fetch).
import { benchSession } from './session.mjs';

const argv = process.argv.slice(2);
const calls = Number(argv[argv.indexOf('--calls') + 1]) || 500;
const BLOCK = 50;
const PATH = '/rest/v1/workspaces?select=id';

// The same request fetch-side: same headers, same keep-alive pool semantics (undici's).
const { cloud, cs, headers, close } = await benchSession();

const runners = {
  addon: () => cs.client.get(PATH),
  fetch: async () => {
    const r = await fetch(`${cloud.url}${PATH}`, { headers });
    if (!r.ok) throw new Error(`fetch: ${r.status}`);
    return r.json();
  },
};

for (const run of Object.values(runners)) for (let i = 0; i < 50; i++) await run(); // warm-up

const samples = { addon: [], fetch: [] };
for (let done = 0; done < calls; done += BLOCK) {
  for (const [name, run] of Object.entries(runners)) {
    for (let i = 0; i < Math.min(BLOCK, calls - done); i++) {
      const t = process.hrtime.bigint();
      const rows = await run();
      samples[name].push(Number(process.hrtime.bigint() - t) / 1e6);
      if (rows.length !== 2) throw new Error(`${name} returned ${rows.length} rows`);
    }
  }
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const row = (name) => ({ name, median: pct(samples[name], 50), p99: pct(samples[name], 99) });
const a = row('addon');
const f = row('fetch');
console.log(`${calls} sequential GET ${PATH}`);
console.log(`  baseline fetch : median ${f.median.toFixed(3)} ms   p99 ${f.p99.toFixed(3)} ms`);
console.log(`  addon          : median ${a.median.toFixed(3)} ms   p99 ${a.p99.toFixed(3)} ms`);
console.log(`  ratio addon/fetch: median ${(a.median / f.median).toFixed(3)}×   p99 ${(a.p99 / f.p99).toFixed(3)}×   (target ≤ 1.10×)`);

await close();
