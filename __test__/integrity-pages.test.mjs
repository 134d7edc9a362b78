// A cloud that returns fewer rows than a request asks for (PostgREST's `db-max-rows` set
// below the client's page size, as a Supabase project may): every pull still reads to the
// end.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDevcloud, SEED } from './helpers/devcloud.mjs';
import { loggedIn, newConversation } from './helpers/sync.mjs';

const MAX_ROWS = 300;
let cloud;
let cs;
before(async () => {
  cloud = await startDevcloud(['--db-max-rows', String(MAX_ROWS)]);
  ({ cs } = await loggedIn(cloud, 'alice', { syncInterval: 3_600_000 }));
});
after(async () => {
  await cs?.destroy();
  await cloud?.stop();
});

test('pullConversation reads past pages the cloud cut short', async () => {
  const conv = await newConversation(cloud);
  const n = 2 * MAX_ROWS + 50;
  await cloud.serviceRest('messages', {
    method: 'POST',
    body: Array.from({ length: n }, (_, i) => ({ conversation_id: conv, role: 'user', content: `m ${i}`, sender_user_id: SEED.users.bob.id })),
    headers: { Prefer: 'return=minimal' },
  });
  const pulled = await cs.pullConversation(conv);
  assert.equal(pulled.messages.length, n);
  assert.deepEqual(new Set(pulled.messages.map((m) => m.content)).size, n);
});
