// A conversation deleted elsewhere, against the local cloud's realtime: Supabase evaluates a
// DELETE's filters on the old row's primary key only, so the workspace_id filter of the
// conversations binding never matches one; the addon must subscribe to the deletion of the
// conversations it knows by their ids, and tell the host once.
import { before, after, afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDevcloud, SEED } from './helpers/devcloud.mjs';
import { loggedIn, workdir, newConversation, waitFor } from './helpers/sync.mjs';

const WS = SEED.workspaces.websiteRevamp;
let cloud;
const instances = [];
before(async () => {
  cloud = await startDevcloud();
});
afterEach(async () => {
  for (const c of instances.splice(0)) await c.destroy();
});
after(async () => {
  await cloud?.stop();
});

/** A conversation in another workspace of Acme (alice may read it, but is not linked to it). */
async function conversationElsewhere() {
  const [row] = await cloud.serviceRest('conversations', {
    method: 'POST',
    body: { workspace_id: SEED.workspaces.dataPipeline, name: 'elsewhere', conversation_type: 'chat' },
  });
  return row.id;
}

const deleteConversation = (id) => cloud.serviceRest(`conversations?id=eq.${id}`, { method: 'DELETE' });

test('a conversation of the linked workspace deleted elsewhere is announced live, once; one of another workspace is not', async () => {
  const [first, second] = [await newConversation(cloud), await newConversation(cloud)];
  const other = await conversationElsewhere();
  const dir = workdir('oboto-rtconv-');
  const alice = await loggedIn(cloud, 'alice', { dir, syncDebounceMs: 0 });
  instances.push(alice.cs);
  await alice.cs.linkWorkspace(WS);
  await waitFor(alice.bus, 'cloud:realtime:connected');

  await deleteConversation(other);
  await deleteConversation(first);
  const gone = await waitFor(alice.bus, 'cloud:conversation:deleted', (p) => p.conversationId === first);
  assert.equal(gone.workspaceId, WS);

  // Changes reach a socket in commit order: once the second deletion is announced, anything
  // the first two would have brought has arrived.
  await deleteConversation(second);
  await waitFor(alice.bus, 'cloud:conversation:deleted', (p) => p.conversationId === second);
  const announced = alice.bus.events
    .filter((e) => e.name === 'cloud:conversation:deleted')
    .map((e) => e.payload.conversationId);
  assert.deepEqual(announced, [first, second], 'each once, and nothing of the other workspace');
});
