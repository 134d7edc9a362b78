// A CloudSync in a process of its own, for suites that must kill, freeze or watch the exit
// of a realtime client: `node realtime-child.mjs` with URL, KEY, EMAIL, PASSWORD, DIR, WS
// (and optional HEARTBEAT_MS) in its environment. It logs in, links WS and prints one JSON
// line per event (`{event, payload}`); on stdin it takes `presence`, `status` (answered as
// `{presence}` / `{status}` lines) and `destroy` (then it prints `{destroyed}` and must exit
// by itself: nothing else holds the event loop once stdin is closed).
import { createInterface } from 'node:readline';
import { CloudSync } from '../../cloud-sync.mjs';

const print = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const bus = { emitTyped: (event, payload) => print({ event, payload }) };
const cs = new CloudSync(bus, null);
const env = process.env;
const config = { baseUrl: env.URL, anonKey: env.KEY, tokenStore: 'memory', syncDebounceMs: 0 };
if (env.HEARTBEAT_MS) config.realtimeHeartbeatMs = Number(env.HEARTBEAT_MS);
await cs.initialize(config);
cs.setWorkingDir(env.DIR);
await cs.login(env.EMAIL, env.PASSWORD);
await cs.linkWorkspace(env.WS);
print({ linked: true });

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line === 'presence') print({ presence: cs.getPresence() });
  else if (line === 'status') print({ status: cs.getStatus() });
  else if (line === 'destroy') {
    const t = Date.now();
    await cs.destroy();
    print({ destroyed: Date.now() - t });
    lines.close();
    process.stdin.destroy();
    break;
  }
}
