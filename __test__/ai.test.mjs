// The metered AI proxy (JSON and streamed), the model list and usage, against the local
// cloud's deterministic model (`Echo: <last user message>`, one word per token and chunk).
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startDevcloud, DEMO_PASSWORD } from './helpers/devcloud.mjs';
import { cloudSyncFor } from './helpers/client.mjs';
import { startProxy } from './helpers/proxy.mjs';
import { until } from './helpers/wait.mjs';

const MODEL = 'oboto/echo-1';
const ask = (content) => [{ role: 'system', content: 'be brief' }, { role: 'user', content }];

let cloud;
before(async () => {
  cloud = await startDevcloud();
});
after(async () => {
  await cloud?.stop();
});

async function collect(iterable) {
  const chunks = [];
  for await (const c of iterable) chunks.push(c);
  return chunks;
}
const text = (chunks) => chunks.map((c) => c.choices[0].delta.content ?? '').join('');

test('aiProxyRequest returns the completion untouched, usage included', async () => {
  const { cs, bus } = await cloudSyncFor(cloud);
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  const completion = await cs.aiProxyRequest('auto', MODEL, ask('hello there cloud'));
  assert.equal(completion.object, 'chat.completion');
  assert.equal(completion.choices[0].message.content, 'Echo: hello there cloud');
  assert.equal(completion.usage.completion_tokens, 4);
  assert.ok(completion._cloud_usage, 'the cloud usage block is kept');
  // Oboto's AI adapter emits the usage of a plain request itself, from `_cloud_usage`.
  assert.ok(!bus.names().includes('cloud:usage-update'), 'no second usage-update');
  await cs.destroy();
});

test('the stream yields chunks whose text equals the non-streamed answer', async () => {
  const { cs } = await cloudSyncFor(cloud);
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  const prompt = ask('the quick brown fox jumps over the lazy dog');
  const whole = await cs.aiProxyRequest('auto', MODEL, prompt, { max_tokens: 40 });
  const chunks = await collect(cs.aiProxyStream(MODEL, prompt, { max_tokens: 40 }));
  assert.equal(chunks.filter((c) => c.choices[0].delta.content).length, 40);
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
  assert.equal(text(chunks).trim(), whole.choices[0].message.content.trim());
  await cs.destroy();
});

test('the stream survives a body delivered one byte at a time', async () => {
  const proxy = await startProxy(cloud.url, { byteByByte: true });
  const { cs } = await cloudSyncFor({ ...cloud, url: proxy.url });
  await cs.login('bob@acme.test', DEMO_PASSWORD);
  const prompt = ask('crème brûlée → 世界 ok');
  const chunks = await collect(cs.aiProxyStream(MODEL, prompt));
  assert.equal(text(chunks).trim(), 'Echo: crème brûlée → 世界 ok');
  await cs.destroy();
  await proxy.close();
});

test('leaving the loop early closes the connection and stops the generation', async () => {
  const slow = await startDevcloud([], { env: { DEVCLOUD_AI_CHUNK_DELAY_MS: '50' } });
  const proxy = await startProxy(slow.url);
  const { cs } = await cloudSyncFor({ ...slow, url: proxy.url });
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  let seen = 0;
  for await (const chunk of cs.aiProxyStream(MODEL, ask('count with me'), { max_tokens: 200 })) {
    assert.ok(chunk.choices);
    if (++seen === 3) break;
  }
  // The proxy sees the close, and the cloud records the usage once it noticed the client
  // gone, each when it gets to it.
  await until(() => proxy.stats.closedEarly >= 1, 20_000, 'the connection closed');
  assert.equal(proxy.stats.closedEarly, 1, 'the connection was closed before the stream ended');
  const [usage] = await until(
    async () => {
      const rows = await slow.serviceRest('ai_usage?select=completion_tokens&order=created_at.desc&limit=1');
      return rows.length > 0 && rows;
    },
    20_000,
    'the usage of the cancelled stream',
  );
  assert.ok(usage.completion_tokens < 20, `the cloud stopped generating (${usage.completion_tokens} of 200 tokens)`);
  await cs.destroy();
  await proxy.close();
  await slow.stop();
});

test('errors: before the stream, mid-stream, and the daily limit', async () => {
  // An OpenAI-compatible upstream that fails halfway through its stream, and records what
  // it was sent.
  let received;
  const upstream = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      received = JSON.parse(body);
      if (!received.stream) {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({
          id: 'up-1', object: 'chat.completion', created: 1, model: received.model, system_fingerprint: 'fake-upstream',
          choices: [{ index: 0, message: { role: 'assistant', content: 'from upstream' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
        }));
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (c) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: c } }] })}\n\n`;
      res.write(chunk('one '));
      res.write(chunk('two '));
      res.end(`data: ${JSON.stringify({ error: { message: 'upstream exploded', code: 'upstream_boom' } })}\n\n`);
    });
  });
  await new Promise((r) => upstream.listen(0, '127.0.0.1', r));
  const relay = await startDevcloud([], { env: { DEVCLOUD_AI_UPSTREAM: `http://127.0.0.1:${upstream.address().port}` } });
  const { cs } = await cloudSyncFor(relay);
  await cs.login('alice@acme.test', DEMO_PASSWORD);

  const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } }];
  const completion = await cs.aiProxyRequest('auto', MODEL, ask('use a tool'), { tools, temperature: 0.3, response_format: { type: 'json_object' } });
  assert.deepEqual(received.tools, tools, 'tools reach the model server');
  assert.equal(received.temperature, 0.3);
  assert.deepEqual(received.response_format, { type: 'json_object' });
  assert.equal('max_tokens' in received, false, 'options not given are not sent');
  assert.equal(completion.system_fingerprint, 'fake-upstream', 'the answer is returned untouched');

  const seen = [];
  await assert.rejects(async () => {
    for await (const c of cs.aiProxyStream(MODEL, ask('stream please'))) seen.push(c);
  }, (e) => {
    assert.match(e.message, /upstream exploded/);
    assert.equal(e.code, 'upstream_boom');
    return true;
  });
  assert.equal(text(seen), 'one two ', 'the chunks before the error were delivered');

  await cs.destroy();
  await relay.stop();
  upstream.closeAllConnections();
  upstream.close();

  // Globex is on the free tier (10,000 tokens a day): spend them, then ask again.
  const { cs: carol } = await cloudSyncFor(cloud);
  await carol.login('carol@globex.test', DEMO_PASSWORD);
  // A model above the tier is refused before any chunk.
  await assert.rejects(async () => {
    for await (const _ of carol.aiProxyStream('openai/o3', ask('x'))) assert.fail('no chunk expected');
  }, (e) => e.status === 403);
  await carol.aiProxyRequest('auto', MODEL, ask('spend'), { max_tokens: 10_000 });
  await assert.rejects(carol.aiProxyRequest('auto', MODEL, ask('one more')), (e) => {
    assert.equal(e.code, 'RATE_LIMITED');
    assert.equal(e.status, 429);
    assert.match(e.message, /limit/i);
    return true;
  });
  await assert.rejects(collect(carol.aiProxyStream(MODEL, ask('one more'))), { code: 'RATE_LIMITED' });
  await carol.destroy();
});

test('a rate limit carries retryAfter when the server sends it', async () => {
  const proxy = await startProxy(cloud.url, {
    intercept: (req) =>
      req.url.startsWith('/functions/v1/agent-chat')
        ? { status: 429, headers: { 'content-type': 'application/json', 'retry-after': '7' }, body: '{"error":"Too many requests"}' }
        : null,
  });
  const { cs } = await cloudSyncFor({ ...cloud, url: proxy.url });
  await cs.login('bob@acme.test', DEMO_PASSWORD);
  await assert.rejects(cs.invokeAgent('summarizer', 'hi'), (e) => {
    assert.deepEqual([e.code, e.status, e.retryAfter], ['RATE_LIMITED', 429, 7], e.message);
    assert.match(e.message, /Too many requests/);
    return true;
  });
  await cs.destroy();
  await proxy.close();
});

test('a stream that goes silent is failed by the idle timeout', async () => {
  const slow = await startDevcloud([], { env: { DEVCLOUD_AI_CHUNK_DELAY_MS: '1500' } });
  const { cs } = await cloudSyncFor(slow, { streamIdleTimeoutMs: 400 });
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  await assert.rejects(collect(cs.aiProxyStream(MODEL, ask('slowly'))), { code: 'NETWORK_TIMEOUT' });
  await cs.destroy();
  await slow.stop();
});

test('models and usage for the UI', async () => {
  const { cs: alice } = await cloudSyncFor(cloud);
  await alice.login('alice@acme.test', DEMO_PASSWORD);
  const models = await alice.listCloudModels();
  assert.ok(models.length > 0);
  for (const m of models) {
    assert.equal(m.name, m.display_name);
    assert.equal(m.provider, m.id.split('/')[0]);
    assert.deepEqual(m.capabilities, { tools: m.supports_tool_calling, streaming: m.supports_streaming, reasoning: m.reasoning });
  }
  const usage = await alice.getUsage();
  assert.equal(usage.is_unlimited, true, 'alice owns Acme');
  assert.equal(usage.tier, 'pro');
  assert.match(usage.period, /^\d{4}-\d{2}-\d{2}$/);
  assert.equal(usage.tokens_used, usage.today.tokens_used);
  assert.equal(usage.daily_limit, usage.today.tokens_limit);
  assert.equal(usage.remaining, usage.daily_limit - usage.tokens_used);
  assert.equal(usage.request_count, usage.today.request_count);

  const { cs: bob } = await cloudSyncFor(cloud);
  await bob.login('bob@acme.test', DEMO_PASSWORD);
  assert.equal((await bob.getUsage()).is_unlimited, false, 'bob is a member');

  const { cs: carol } = await cloudSyncFor(cloud);
  await carol.login('carol@globex.test', DEMO_PASSWORD);
  assert.ok((await carol.listCloudModels()).length < models.length, 'the free tier sees fewer models');

  await alice.logout();
  assert.deepEqual(await alice.listCloudModels(), []);
  assert.equal(await alice.getUsage(), null);
  for (const cs of [alice, bob, carol]) await cs.destroy();
});

test('models and usage degrade to [] and null when the cloud fails', async () => {
  const proxy = await startProxy(cloud.url, {
    intercept: (req) => (req.url.startsWith('/functions/v1/cloud-') ? { status: 500, body: 'oops' } : null),
  });
  const { cs } = await cloudSyncFor({ ...cloud, url: proxy.url });
  await cs.login('bob@acme.test', DEMO_PASSWORD);
  assert.deepEqual(await cs.listCloudModels(), []);
  assert.equal(await cs.getUsage(), null);
  await cs.destroy();
  await proxy.close();
});

test('destroy() closes open streams', async () => {
  const slow = await startDevcloud([], { env: { DEVCLOUD_AI_CHUNK_DELAY_MS: '50' } });
  const { cs } = await cloudSyncFor(slow);
  await cs.login('alice@acme.test', DEMO_PASSWORD);
  let seen = 0;
  try {
    // A loop still iterating after destroy() rejects: ending normally would make a cut-off
    // answer look complete.
    await assert.rejects(async () => {
      for await (const _ of cs.aiProxyStream(MODEL, ask('go on'), { max_tokens: 200 })) {
        if (++seen === 2) await cs.destroy();
      }
    }, { code: 'DESTROYED' });
    assert.ok(seen < 20, `the stream went on for ${seen} chunks`);
  } finally {
    await slow.stop();
  }
});

test('AI requests are metered against the linked workspace', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { SEED } = await import('./helpers/devcloud.mjs');
  const dir = mkdtempSync(join(tmpdir(), 'oboto-ai-link-'));
  const { cs } = await cloudSyncFor(cloud);
  await cs.login('bob@acme.test', DEMO_PASSWORD);
  cs.setWorkingDir(dir);
  await cs.linkWorkspace(SEED.workspaces.dataPipeline, 'Data Pipeline');
  await cs.aiProxyRequest('auto', MODEL, ask('metered where?'));
  const [row] = await cloud.serviceRest('ai_usage?select=workspace_id,user_id&order=created_at.desc&limit=1');
  assert.deepEqual(row, { workspace_id: SEED.workspaces.dataPipeline, user_id: SEED.users.bob.id });
  await cs.unlinkWorkspace();
  await cs.destroy();
  rmSync(dir, { recursive: true, force: true });
});
