// Edge Functions of devcloud (`/functions/v1`), through @supabase/supabase-js's
// `functions.invoke`: agent-chat, ai-proxy (JSON, streamed, metered, cancelled, upstream),
// cloud-models and cloud-usage.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createClient } from '@supabase/supabase-js';

import { DEMO_PASSWORD, SEED, startDevcloud } from '../../__test__/helpers/devcloud.mjs';
import { SUPABASE_OPTIONS } from '../../__test__/helpers/supabase.mjs';

const opts = SUPABASE_OPTIONS;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const CHUNK_DELAY_MS = 20;

async function signIn(cloud, email) {
  const client = createClient(cloud.url, cloud.anonKey, opts);
  const { data, error } = await client.auth.signInWithPassword({ email, password: DEMO_PASSWORD });
  assert.equal(error, null, `sign in ${email}`);
  client.testToken = data.session.access_token;
  return client;
}

/** The status and JSON body of a failed invoke. */
async function failure(result) {
  assert.equal(result.data, null);
  assert.ok(result.error, 'expected an error');
  const r = result.error.context;
  return { status: r.status, body: await r.json() };
}

/** Parses an SSE body into its `data:` payloads (JSON, or the string `[DONE]`). */
async function readSse(stream) {
  const events = [];
  let buf = '';
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      for (const line of frame.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        events.push(data === '[DONE]' ? data : JSON.parse(data));
      }
    }
  }
  assert.equal(buf, '', 'the stream ends on a frame boundary');
  return events;
}

const contentOf = (events) =>
  events
    .filter((e) => e !== '[DONE]')
    .map((e) => e.choices[0].delta.content)
    .filter((c) => c !== undefined);

const usageOf = async (client) => {
  const { data, error } = await client.functions.invoke('cloud-usage', { method: 'GET' });
  assert.equal(error, null);
  return data;
};

describe('devcloud functions', () => {
  let cloud;
  let alice;
  let carol;
  let anon;

  before(async () => {
    cloud = await startDevcloud([], { env: { DEVCLOUD_AI_CHUNK_DELAY_MS: String(CHUNK_DELAY_MS) } });
    [alice, carol] = await Promise.all([signIn(cloud, SEED.users.alice.email), signIn(cloud, SEED.users.carol.email)]);
    anon = createClient(cloud.url, cloud.anonKey, opts);
  });
  after(async () => {
    await cloud?.stop();
  });

  test('unknown functions are 404 and every function needs a user token', async () => {
    assert.deepEqual(await failure(await alice.functions.invoke('nope', { body: {} })), {
      status: 404,
      body: { error: 'Function not found' },
    });
    const noUser = await failure(await anon.functions.invoke('cloud-models', { method: 'GET' }));
    assert.equal(noUser.status, 401);
    assert.equal(typeof noUser.body.message, 'string');
    const noBearer = await fetch(`${cloud.url}/functions/v1/cloud-models`, { headers: { apikey: cloud.anonKey } });
    assert.deepEqual(await noBearer.json(), { code: 401, message: 'Missing authorization header' });
    const badJwt = await fetch(`${cloud.url}/functions/v1/cloud-models`, {
      headers: { apikey: cloud.anonKey, Authorization: 'Bearer x.y.z' },
    });
    assert.equal(badJwt.status, 401);
    assert.equal((await badJwt.json()).message, 'Invalid JWT');
  });

  test('agent-chat answers as the agent and stores both messages', async () => {
    const conversationId = SEED.conversations.acmeChat;
    const body = {
      agentSlug: 'code-reviewer',
      conversationId,
      userMessage: 'Please review the hero section change',
      messageHistory: [{ role: 'user', content: 'Can we make the hero section lighter?' }],
    };
    const { data, error } = await alice.functions.invoke('agent-chat', { body });
    assert.equal(error, null);
    assert.equal(data.agentName, 'Code Reviewer');
    assert.match(data.messageId, /^[0-9a-f-]{36}$/);
    assert.equal(
      data.content,
      'Code Reviewer reviewed: "Please review the hero section change"\n' +
        '1. Correctness: check the edge cases and the error paths.\n' +
        '2. Tests: cover the change with a test that fails without it.\n' +
        '3. Risk: keep the change small and reversible.',
    );
    const again = await alice.functions.invoke('agent-chat', { body: { ...body, conversationId: undefined } });
    assert.equal(again.data.content, data.content, 'deterministic');
    assert.notEqual(again.data.messageId, data.messageId);

    const { data: rows, error: e2 } = await alice
      .from('messages')
      .select('id,role,content,sender_user_id,sender_agent_id')
      .eq('conversation_id', conversationId)
      .order('created_at', { ascending: true });
    assert.equal(e2, null);
    const [userMsg, reply] = rows.slice(-2);
    assert.deepEqual(
      { role: userMsg.role, content: userMsg.content, sender_user_id: userMsg.sender_user_id },
      { role: 'user', content: body.userMessage, sender_user_id: SEED.users.alice.id },
    );
    assert.deepEqual(
      { id: reply.id, role: reply.role, content: reply.content, sender_agent_id: reply.sender_agent_id },
      { id: data.messageId, role: 'assistant', content: data.content, sender_agent_id: SEED.agents.codeReviewer },
    );

    const summary = await alice.functions.invoke('agent-chat', {
      body: { agentSlug: 'summarizer', userMessage: 'sum up', messageHistory: [{}, {}, {}] },
    });
    assert.equal(summary.data.content, 'Summarizer summary: 3 earlier message(s); the latest request is "sum up".');
  });

  test("agent-chat is limited to the caller's organization", async () => {
    const body = { agentSlug: 'code-reviewer', userMessage: 'hi', messageHistory: [] };
    assert.deepEqual(await failure(await carol.functions.invoke('agent-chat', { body })), {
      status: 404,
      body: { error: 'Agent not found' },
    });
    const intoAcme = await carol.functions.invoke('agent-chat', {
      body: { agentSlug: 'globex-bot', conversationId: SEED.conversations.acmeChat, userMessage: 'hi' },
    });
    assert.equal((await failure(intoAcme)).status, 404);
    const own = await carol.functions.invoke('agent-chat', {
      body: { agentSlug: 'globex-bot', conversationId: SEED.conversations.globexChat, userMessage: 'status?' },
    });
    assert.equal(own.error, null);
    assert.equal(own.data.content, 'Globex Bot (Globex internal helper): you said "status?".');
    const bad = await carol.functions.invoke('agent-chat', { body: { agentSlug: 'globex-bot', userMessage: 'x', conversationId: 'nope' } });
    assert.equal((await failure(bad)).status, 400);
  });

  test('ai-proxy answers OpenAI chat completions and meters them', async () => {
    const before = await usageOf(alice);
    const { data, error } = await alice.functions.invoke('ai-proxy', {
      body: {
        provider: 'cloud',
        model: 'oboto/echo-1',
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'user', content: 'hello devcloud world' },
        ],
        stream: false,
        workspace_id: SEED.workspaces.websiteRevamp,
      },
    });
    assert.equal(error, null);
    assert.equal(data.object, 'chat.completion');
    assert.equal(data.model, 'oboto/echo-1');
    assert.deepEqual(data.choices, [
      { index: 0, message: { role: 'assistant', content: 'Echo: hello devcloud world' }, finish_reason: 'stop' },
    ]);
    assert.deepEqual(data.usage, { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 });
    assert.deepEqual(data._cloud_usage, {
      tokens_used_today: before.today.tokens_used + 9,
      daily_limit: 1_000_000,
      remaining: 1_000_000 - before.today.tokens_used - 9,
    });

    const capped = await alice.functions.invoke('ai-proxy', {
      body: { model: 'oboto/echo-1', messages: [{ role: 'user', content: 'one two' }], max_tokens: 10 },
    });
    assert.equal(capped.data.choices[0].message.content, 'Echo: one two Echo: one two Echo: one two Echo:');
    assert.equal(capped.data.choices[0].finish_reason, 'length');
    assert.equal(capped.data.usage.completion_tokens, 10);

    const after = await usageOf(alice);
    assert.equal(after.tier, 'pro');
    assert.equal(after.subscription_status, 'active');
    assert.equal(after.today.tokens_used, before.today.tokens_used + 9 + 12);
    assert.equal(after.today.request_count, before.today.request_count + 2);
    assert.equal(after.today.tokens_limit, 1_000_000);
    assert.ok(after.today.models_used.includes('oboto/echo-1'));
    const start = Date.parse(after.period.start);
    assert.equal(Date.parse(after.period.end) - start, 86_400_000);
    assert.ok(start <= Date.now() && Date.now() < start + 86_400_000);
    assert.equal(new Date(start).toISOString(), after.period.start);
  });

  test('ai-proxy streams server-sent events, exactly max_tokens chunks', async () => {
    const before = await usageOf(alice);
    const { data, error, response } = await alice.functions.invoke('ai-proxy', {
      body: { model: 'oboto/echo-1', messages: [{ role: 'user', content: 'stream me' }], stream: true, max_tokens: 25 },
    });
    assert.equal(error, null);
    assert.equal(response.headers.get('content-type'), 'text/event-stream');
    const events = await readSse(data.body);
    assert.equal(events.at(-1), '[DONE]');
    const chunks = contentOf(events);
    assert.equal(chunks.length, 25);
    assert.equal(chunks.join('').split(' ').length, 25);
    assert.ok(chunks.join('').startsWith('Echo: stream me Echo:'));
    assert.equal(events[0].object, 'chat.completion.chunk');
    assert.equal(events[0].choices[0].delta.role, 'assistant');
    const last = events.at(-2);
    assert.equal(last.choices[0].finish_reason, 'length');
    assert.deepEqual(last.usage, { prompt_tokens: 2, completion_tokens: 25, total_tokens: 27 });
    const after = await usageOf(alice);
    assert.equal(after.today.tokens_used, before.today.tokens_used + 27);
  });

  test('a client that disconnects mid-stream cancels the work', async () => {
    const before = await usageOf(alice);
    const controller = new AbortController();
    const r = await fetch(`${cloud.url}/functions/v1/ai-proxy`, {
      method: 'POST',
      signal: controller.signal,
      headers: { apikey: cloud.anonKey, Authorization: `Bearer ${alice.testToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'long answer' }], stream: true, max_tokens: 500 }),
    });
    assert.equal(r.status, 200);
    const reader = r.body.getReader();
    let seen = '';
    while ((seen.match(/chat\.completion\.chunk/g) || []).length < 3) {
      const { value } = await reader.read();
      seen += new TextDecoder().decode(value);
    }
    controller.abort();
    // Usage is recorded for what was produced before the stream was dropped.
    let after = before;
    for (let i = 0; i < 50 && after.today.tokens_used === before.today.tokens_used; i++) {
      await sleep(100);
      after = await usageOf(alice);
    }
    const spent = after.today.tokens_used - before.today.tokens_used;
    assert.ok(spent > 2, `recorded ${spent} tokens`);
    assert.ok(spent < 2 + 50, `recorded ${spent} tokens: generation went on after the disconnect`);
    // 500 chunks at 20 ms would take 10 s; nothing more is recorded later.
    await sleep(500);
    assert.equal((await usageOf(alice)).today.tokens_used, after.today.tokens_used);
    assert.match(cloud.stderr(), /ai-proxy stream cancelled by the client/);
  });

  test('cloud-models depends on the tier', async () => {
    const acme = await alice.functions.invoke('cloud-models', { method: 'GET' });
    const globex = await carol.functions.invoke('cloud-models', { method: 'GET' });
    assert.equal(acme.error, null);
    const ids = (r) => r.data.models.map((m) => m.id);
    assert.deepEqual(ids(globex), ['oboto/echo-1', 'openai/gpt-4o-mini']);
    assert.ok(ids(acme).includes('openai/gpt-4o'));
    assert.ok(!ids(acme).includes('openai/o3'), 'team models are hidden from pro');
    for (const m of acme.data.models) {
      assert.deepEqual(Object.keys(m).sort(), [
        'context_window',
        'cost_tier',
        'display_name',
        'id',
        'max_output_tokens',
        'reasoning',
        'supports_streaming',
        'supports_tool_calling',
        'tier_required',
      ]);
    }
    const denied = await carol.functions.invoke('ai-proxy', {
      body: { model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'hi' }] },
    });
    const { status, body } = await failure(denied);
    assert.equal(status, 403);
    assert.equal(body.error.code, 'model_not_available');
  });

  test('past the daily limit ai-proxy answers 429 (Globex is free: 10 000 tokens)', async () => {
    const before = await usageOf(carol);
    assert.equal(before.tier, 'free');
    assert.equal(before.today.tokens_limit, 10_000);
    const spend = 10_000 - before.today.tokens_used;
    const big = await carol.functions.invoke('ai-proxy', {
      body: { messages: [{ role: 'user', content: 'spend' }], max_tokens: spend },
    });
    assert.equal(big.error, null);
    assert.equal(big.data._cloud_usage.remaining, 0);
    const { status, body } = await failure(
      await carol.functions.invoke('ai-proxy', { body: { messages: [{ role: 'user', content: 'one more' }] } }),
    );
    assert.equal(status, 429);
    assert.deepEqual(body, {
      error: { message: 'Daily token limit reached', type: 'rate_limit', code: 'daily_limit_reached' },
    });
    const after = await usageOf(carol);
    assert.ok(after.today.tokens_used >= 10_000);
    // Acme is unaffected.
    assert.equal((await alice.functions.invoke('ai-proxy', { body: { messages: [{ role: 'user', content: 'x' }] } })).error, null);
  });

  test('bodies: too large is 413, malformed JSON is 400', async () => {
    const headers = { apikey: cloud.anonKey, Authorization: `Bearer ${alice.testToken}`, 'content-type': 'application/json' };
    const url = `${cloud.url}/functions/v1/ai-proxy`;
    const huge = JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(2 * 1024 * 1024) }] });
    assert.equal((await fetch(url, { method: 'POST', headers, body: huge })).status, 413);
    const bad = await fetch(url, { method: 'POST', headers, body: '{"messages": [' });
    assert.equal(bad.status, 400);
    assert.deepEqual(await bad.json(), { error: 'Invalid JSON body' });
    const noMessages = await fetch(url, { method: 'POST', headers, body: '{}' });
    assert.equal(noMessages.status, 400);
  });
});

describe('devcloud ai-proxy with DEVCLOUD_AI_UPSTREAM', () => {
  let cloud;
  let alice;
  let server;
  const seen = [];

  before(async () => {
    // A tiny OpenAI-compatible server.
    server = createServer((req, res) => {
      let text = '';
      req.on('data', (d) => (text += d));
      req.on('end', () => {
        const body = JSON.parse(text);
        seen.push({ url: req.url, auth: req.headers.authorization, body });
        if (!body.stream) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify({
              id: 'up-1',
              object: 'chat.completion',
              choices: [{ index: 0, message: { role: 'assistant', content: 'from upstream' }, finish_reason: 'stop' }],
              usage: { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 },
            }),
          );
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const piece of ['up', 'stream', 'ed']) {
          res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: piece } }] })}\n\n`);
        }
        res.end('data: [DONE]\n\n');
      });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const upstream = `http://127.0.0.1:${server.address().port}/v1`;
    cloud = await startDevcloud([], { env: { DEVCLOUD_AI_UPSTREAM: upstream, DEVCLOUD_AI_UPSTREAM_KEY: 'sk-test' } });
    alice = await signIn(cloud, SEED.users.alice.email);
  });
  after(async () => {
    await cloud?.stop();
    server?.close();
  });

  test('JSON and streamed requests are forwarded and metered', async () => {
    const before = await usageOf(alice);
    const json = await alice.functions.invoke('ai-proxy', {
      body: { provider: 'cloud', model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'hi' }], workspace_id: SEED.workspaces.websiteRevamp },
    });
    assert.equal(json.error, null);
    assert.equal(json.data.choices[0].message.content, 'from upstream');
    assert.equal(json.data._cloud_usage.tokens_used_today, before.today.tokens_used + 9);
    assert.equal(seen[0].url, '/v1/chat/completions');
    assert.equal(seen[0].auth, 'Bearer sk-test');
    assert.deepEqual(seen[0].body, { model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'hi' }] });

    const streamed = await alice.functions.invoke('ai-proxy', {
      body: { model: 'openai/gpt-4o', messages: [{ role: 'user', content: 'hi there' }], stream: true },
    });
    assert.equal(streamed.error, null);
    const events = await readSse(streamed.data.body);
    assert.deepEqual(contentOf(events), ['up', 'stream', 'ed']);
    assert.equal(events.at(-1), '[DONE]');
    // Passed-through streams are metered when they end: 2 prompt + 3 chunks.
    let after = before;
    for (let i = 0; i < 50 && after.today.tokens_used < before.today.tokens_used + 14; i++) {
      await sleep(50);
      after = await usageOf(alice);
    }
    assert.equal(after.today.tokens_used, before.today.tokens_used + 9 + 5);
  });
});
