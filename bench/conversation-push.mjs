// Conversation push against the old modules' way (one `fetch` POST per message), in one run
// against the local cloud, plus a 5,000-message pull.
//
//   node bench/conversation-push.mjs [--messages 1000] [--pull 5000]
//
// Prints wall times, their ratio (target: pushConversation ≥ 20× faster) and the request
// counts from /devcloud/v1/stats (target: ≤ 3 requests for 1,000 messages).
import { SEED } from '../scripts/devcloud-process.mjs';
import { benchSession } from './session.mjs';

const argv = process.argv.slice(2);
const arg = (name, dflt) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) || dflt : dflt);
const N = arg('--messages', 1000);
const PULL = arg('--pull', 5000);
const ALICE = SEED.users.alice;

const { cloud, cs, headers: auth, close } = await benchSession({ email: ALICE.email, config: { syncInterval: 3_600_000 } });
const newConversation = async (name) =>
  (await cloud.serviceRest('conversations', {
    method: 'POST',
    body: { workspace_id: SEED.workspaces.websiteRevamp, name, conversation_type: 'chat' },
  }))[0].id;
const history = (n, tag) =>
  Array.from({ length: n }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: `${tag} message ${i}: ${'lorem ipsum '.repeat(8)}` }));
const posts = async () => (await cloud.stats()).requests['POST /rest/v1/messages'] ?? 0;
const gets = async () => (await cloud.stats()).requests['GET /rest/v1/messages'] ?? 0;
const ms = (t) => Number(process.hrtime.bigint() - t) / 1e6;

const headers = { ...auth, 'content-type': 'application/json' };

/** What the old module did: one POST per message. */
async function baselinePush(convId, messages) {
  for (const m of messages) {
    const r = await fetch(`${cloud.url}/rest/v1/messages`, {
      method: 'POST',
      headers: { ...headers, Prefer: 'return=minimal' },
      body: JSON.stringify({ conversation_id: convId, content: m.content, role: m.role, sender_user_id: m.role === 'user' ? ALICE.id : null }),
    });
    if (!r.ok) throw new Error(`baseline POST: ${r.status} ${await r.text()}`);
  }
}

// Warm-up: connections, plans, JIT, on both sides.
const warm = await newConversation('bench-warm');
await baselinePush(warm, history(20, 'warm'));
await cs.pushConversation(warm, history(20, 'warm-addon'));

const baseConv = await newConversation('bench-baseline');
await cloud.resetStats();
let t = process.hrtime.bigint();
await baselinePush(baseConv, history(N, 'baseline'));
const baseMs = ms(t);
const baseReqs = await posts();

const addonConv = await newConversation('bench-addon');
const local = history(N, 'addon');
await cloud.resetStats();
t = process.hrtime.bigint();
const res = await cs.pushConversation(addonConv, local);
const addonMs = ms(t);
const addonReqs = await posts();
if (res.pushed !== N) throw new Error(`pushed ${res.pushed}, expected ${N}`);

await cloud.resetStats();
t = process.hrtime.bigint();
const again = await cs.pushConversation(addonConv, local);
const againMs = ms(t);
const againReqs = await posts();

console.log(`push ${N} new messages`);
console.log(`  baseline (fetch POST per message): ${baseMs.toFixed(1)} ms, ${baseReqs} requests`);
console.log(`  pushConversation                 : ${addonMs.toFixed(1)} ms, ${addonReqs} requests   (target ≤ 3)`);
console.log(`  speed-up baseline/addon          : ${(baseMs / addonMs).toFixed(1)}×   (target ≥ 20×)`);
console.log(`  repeated push (nothing new)      : ${againMs.toFixed(1)} ms, ${againReqs} requests, pushed ${again.pushed}`);

// Pull: PULL rows written by bob (so none is alice's own), inserted with the service key.
const pullConv = await newConversation('bench-pull');
for (let i = 0; i < PULL; i += 1000) {
  const rows = Array.from({ length: Math.min(1000, PULL - i) }, (_, j) => ({
    conversation_id: pullConv, role: 'user', content: `pull ${i + j}`, sender_user_id: SEED.users.bob.id,
  }));
  await cloud.serviceRest('messages', { method: 'POST', body: rows, headers: { Prefer: 'return=minimal' } });
}
await cloud.resetStats();
t = process.hrtime.bigint();
const pulled = await cs.pullConversation(pullConv);
const pullMs = ms(t);
if (pulled.messages.length !== PULL) throw new Error(`pulled ${pulled.messages.length}, expected ${PULL}`);
console.log(`pull ${PULL} messages: ${pullMs.toFixed(1)} ms, ${await gets()} requests`);

await close();
