// Cloud agents: the organization's list (cached, cleared on logout) and a turn with one.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startDevcloud, DEMO_PASSWORD, SEED } from './helpers/devcloud.mjs';
import { cloudSyncFor } from './helpers/client.mjs';
import { waitFor } from './helpers/sync.mjs';

let cloud;
before(async () => {
  cloud = await startDevcloud();
});
after(async () => {
  await cloud?.stop();
});

const agentListRequests = async () => (await cloud.stats()).requests['GET /rest/v1/cloud_agents'] ?? 0;

test('each user sees only their organization agents, ordered by name', async () => {
  const { cs: alice } = await cloudSyncFor(cloud);
  await alice.login('alice@acme.test', DEMO_PASSWORD);
  const agents = await alice.listAgents();
  assert.deepEqual(agents.map((a) => a.slug), ['code-reviewer', 'summarizer']);
  assert.deepEqual(Object.keys(agents[0]).sort(), ['agent_type', 'avatar_url', 'description', 'id', 'name', 'slug', 'status']);
  const { cs: carol } = await cloudSyncFor(cloud);
  await carol.login('carol@globex.test', DEMO_PASSWORD);
  assert.deepEqual((await carol.listAgents()).map((a) => a.name), ['Globex Bot']);
  await alice.destroy();
  await carol.destroy();
});

test('the list is cached, the cache can be cleared, and logout drops it', async () => {
  const { cs } = await cloudSyncFor(cloud);
  await cs.login('bob@acme.test', DEMO_PASSWORD);
  await cloud.resetStats();
  await cs.listAgents();
  // Each listing costs the same requests (one, while the agents fit in a page).
  const perList = await agentListRequests();
  assert.ok(perList >= 1);
  await cs.listAgents();
  assert.equal(await agentListRequests(), perList, 'the second call came from the cache');
  cs.clearAgentCache();
  await cs.listAgents();
  assert.equal(await agentListRequests(), 2 * perList);
  await cs.logout();
  assert.deepEqual(await cs.listAgents(), [], 'logged out: nothing, and no request');
  assert.equal(await agentListRequests(), 2 * perList);
  await cs.login('bob@acme.test', DEMO_PASSWORD);
  await cs.listAgents();
  assert.equal(await agentListRequests(), 3 * perList, 'a new session asks the cloud again');
  await cs.destroy();
});

test('invokeAgent returns the persona reply and emits cloud:agent:invoked', async () => {
  const { cs, bus } = await cloudSyncFor(cloud);
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  const history = Array.from({ length: 30 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: `m${i}` }));
  const reply = await cs.invokeAgent('code-reviewer', 'Please review the login form.', history);
  assert.equal(reply.agentName, 'Code Reviewer');
  assert.match(reply.content, /Please review the login form\./);
  assert.match(reply.messageId, /^[0-9a-f-]{36}$/);
  assert.deepEqual(Object.keys(reply).sort(), ['agentName', 'content', 'messageId']);
  // Events cross to JS on a queue of their own: one emitted before the call resolved may
  // still be on its way.
  const event = await waitFor(bus, 'cloud:agent:invoked');
  assert.deepEqual(
    { slug: event.slug, agentName: event.agentName, messageId: event.messageId },
    { slug: 'code-reviewer', agentName: 'Code Reviewer', messageId: reply.messageId },
  );
  await cs.destroy();
});

test('invokeAgent stores both messages when given a conversation', async () => {
  const { cs } = await cloudSyncFor(cloud);
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  const before = await cloud.serviceRest(`messages?conversation_id=eq.${SEED.conversations.acmeChat}&select=id`);
  const reply = await cs.invokeAgent('summarizer', 'Sum it up please', [], { conversationId: SEED.conversations.acmeChat });
  const rows = await cloud.serviceRest(
    `messages?conversation_id=eq.${SEED.conversations.acmeChat}&select=id,role,content,sender_user_id,sender_agent_id&order=created_at.desc&limit=2`,
  );
  assert.equal(rows.length, 2);
  assert.equal(before.length + 2, (await cloud.serviceRest(`messages?conversation_id=eq.${SEED.conversations.acmeChat}&select=id`)).length);
  const [agentRow, userRow] = rows;
  assert.equal(agentRow.id, reply.messageId);
  assert.equal(agentRow.role, 'assistant');
  assert.equal(agentRow.sender_agent_id, SEED.agents.summarizer);
  assert.deepEqual([userRow.role, userRow.content, userRow.sender_user_id], ['user', 'Sum it up please', SEED.users.alice.id]);
  await cs.destroy();
});

test('errors keep the server reason; bad input is refused before any request', async () => {
  const { cs } = await cloudSyncFor(cloud);
  await cs.login('carol@globex.test', DEMO_PASSWORD);
  await assert.rejects(cs.invokeAgent('code-reviewer', 'hi'), (e) => {
    assert.equal(e.status, 404, 'an Acme agent does not exist for Globex');
    assert.match(e.message, /Agent not found/);
    return true;
  });
  await cloud.resetStats();
  await assert.rejects(cs.invokeAgent('globex-bot', 'hi', [], { conversationId: 'x&org_id=neq.0' }), { code: 'INVALID_ARGUMENT' });
  await assert.rejects(cs.invokeAgent('', 'hi'), { code: 'INVALID_ARGUMENT' });
  assert.equal((await cloud.stats()).requests['POST /functions/v1/agent-chat'], undefined);
  await cs.destroy();
  const { cs: out } = await cloudSyncFor(cloud);
  await assert.rejects(out.invokeAgent('globex-bot', 'hi'), { message: 'Not logged in to cloud' });
  await out.destroy();
});
