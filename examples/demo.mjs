// `npm run demo`: starts the local Oboto Cloud on a private PostgreSQL and walks through
// what the Oboto server does with this package. Set OBOTO_CLOUD_URL and OBOTO_CLOUD_KEY
// to run it against another cloud with the demo seed instead.
import { CloudSync, loadCloudConfig } from '../cloud-sync.mjs';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDevcloud, DEMO_PASSWORD } from '../scripts/devcloud-process.mjs';

const step = (title) => console.log(`\n\x1b[1m▸ ${title}\x1b[0m`);
/** The next `name` event on `bus` for which `pred` holds, or an error after 10 s. */
const next = (bus, name, pred = () => true) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${name} within 10 s`)), 10_000);
    const on = (p) => {
      if (!pred(p)) return;
      clearTimeout(timer);
      bus.off(name, on);
      resolve(p);
    };
    bus.on(name, on);
  });
const dirs = [];
const tempDir = (who) => {
  const d = mkdtempSync(join(tmpdir(), `oboto-demo-${who}-`));
  dirs.push(d);
  return d;
};

const external = loadCloudConfig();
let cloud = null;
if (external) {
  step(`Using the cloud at ${external.baseUrl}`);
} else {
  step('Starting the local Oboto Cloud (private PostgreSQL, demo seed)');
  cloud = await startDevcloud();
  console.log(`  listening on ${cloud.url}`);
}
const config = external ?? { baseUrl: cloud.url, anonKey: cloud.anonKey, autoLogin: true };

// What Oboto hands in: an event bus with emitTyped, and (here, none) a secrets manager.
const eventBus = new EventEmitter();
eventBus.emitTyped = (name, payload) => eventBus.emit(name, { ...payload, timestamp: new Date().toISOString() });
for (const name of ['cloud:auth:logged-in', 'cloud:auth:logged-out', 'cloud:auth:error']) {
  eventBus.on(name, (p) => console.log(`  event ${name}`, name === 'cloud:auth:logged-in' ? `(${p.user?.email})` : ''));
}

const cloudSync = new CloudSync(eventBus, null);
try {
  // The demo keeps its session in memory so it never touches your keychain.
  await cloudSync.initialize({ ...config, tokenStore: 'memory' });

  step('Logging in as alice@acme.test');
  await cloudSync.login('alice@acme.test', DEMO_PASSWORD);
  const status = cloudSync.getStatus();
  console.log(`  ${status.profile.displayName} — ${status.role} of ${status.org.name} (${status.org.tier})`);
  console.log('  status:', JSON.stringify(status));

  step('Workspaces of Acme');
  const workspaces = await cloudSync.client.get(
    `/rest/v1/workspaces?org_id=eq.${cloudSync.auth.org.id}&select=id,name,slug,current_step&order=name.asc`,
  );
  for (const w of workspaces) console.log(`  • ${w.name} (${w.slug})${w.current_step ? ` — ${w.current_step}` : ''}`);

  step('Conversation "chat" in Website Revamp');
  const site = workspaces.find((w) => w.slug === 'website-revamp');
  const [chat] = await cloudSync.client.get(`/rest/v1/conversations?workspace_id=eq.${site.id}&name=eq.chat&select=id`);
  const messages = await cloudSync.client.get(
    `/rest/v1/messages?conversation_id=eq.${chat.id}&select=role,content,profiles(display_name)&order=created_at.asc`,
  );
  for (const m of messages) console.log(`  ${(m.profiles?.display_name ?? m.role).padEnd(12)} ${m.content}`);

  step('Live: presence, a broadcast and a message arriving (realtime)');
  // bob on another machine: his own CloudSync, event bus and working directory.
  const bobBus = new EventEmitter();
  bobBus.emitTyped = (name, payload) => bobBus.emit(name, payload);
  // His session goes to his own secrets manager, not to the store alice's restart reads.
  const bobSecrets = new Map();
  const bob = new CloudSync(bobBus, {
    get: (name) => bobSecrets.get(name),
    set: async (name, value) => void bobSecrets.set(name, value),
    delete: async (name) => void bobSecrets.delete(name),
  });
  await bob.initialize({ ...config, tokenStore: 'secrets' });
  await bob.login('bob@acme.test', DEMO_PASSWORD);
  const aliceDir = tempDir('alice');
  const bobDir = tempDir('bob');
  const aliceLive = next(eventBus, 'cloud:realtime:connected');
  cloudSync.setWorkingDir(aliceDir);
  await cloudSync.linkWorkspace(site.id, site.name);
  await aliceLive;
  const bothOnline = next(eventBus, 'cloud:presence:updated', (p) => p.members.length === 2);
  const bobLive = next(bobBus, 'cloud:realtime:connected');
  bob.setWorkingDir(bobDir);
  await bob.linkWorkspace(site.id, site.name);
  await bobLive;
  await bothOnline;
  for (const m of cloudSync.getPresence()) console.log(`  online: ${m.displayName} (${m.status})`);
  const typing = next(eventBus, 'cloud:broadcast:typing');
  await bob.broadcast('typing', { user: 'Bob Brown', conversation: 'chat' });
  console.log(`  broadcast: ${(await typing).user} is typing…`);
  const arrived = next(eventBus, 'cloud:message:received', (m) => m.conversation_id === chat.id);
  await bob.pushConversation(chat.id, [{ role: 'user', content: 'The hero section looks great now.' }]);
  const live = await arrived;
  console.log(`  message from Bob arrived live: "${live.content}"`);

  step('File sync: a file up to the workspace, listed, and down on another machine');
  writeFileSync(join(aliceDir, 'notes.md'), '# Launch checklist\n- hero section\n');
  await cloudSync.fileSync.uploadFile(site.id, aliceDir, 'notes.md');
  for (const f of await cloudSync.fileSync.listFiles(site.id)) {
    console.log(`  • ${f.file_path} (${f.file_size} bytes, version ${f.version})`);
  }
  await bob.fileSync.downloadFile(site.id, bobDir, 'notes.md');
  console.log(`  bob's copy: ${JSON.stringify(readFileSync(join(bobDir, 'notes.md'), 'utf8'))}`);
  await bob.destroy();
  await cloudSync.unlinkWorkspace();

  step('Cloud agents');
  for (const a of await cloudSync.listAgents()) console.log(`  • ${a.name} (${a.slug}): ${a.description}`);
  const reply = await cloudSync.invokeAgent('code-reviewer', 'Please look at the new hero section.');
  console.log(`  ${reply.agentName}: ${reply.content.replaceAll('\n', '\n    ')}`);

  step('The metered AI proxy');
  const models = await cloudSync.listCloudModels();
  console.log(`  models for ${status.org.tier}: ${models.map((m) => m.name).join(', ')}`);
  const prompt = [{ role: 'user', content: 'Hello from the demo' }];
  const completion = await cloudSync.aiProxyRequest('auto', 'oboto/echo-1', prompt);
  console.log(`  ${completion.choices[0].message.content}  (${completion.usage.total_tokens} tokens)`);
  process.stdout.write('  streamed:');
  for await (const chunk of cloudSync.aiProxyStream('oboto/echo-1', [{ role: 'user', content: 'one token at a time' }])) {
    process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
  }
  process.stdout.write('\n');
  const usage = await cloudSync.getUsage();
  console.log(`  today: ${usage.tokens_used} of ${usage.daily_limit ?? '∞'} tokens, ${usage.request_count} requests${usage.is_unlimited ? ' (unlimited as owner)' : ''}`);

  step('Restart: a new instance resumes the session (shutdown is not logout)');
  await cloudSync.destroy();
  const restarted = new CloudSync(eventBus, null);
  await restarted.initialize({ ...config, tokenStore: 'memory' });
  console.log(`  tryAutoLogin() → ${await restarted.tryAutoLogin()} as ${restarted.getStatus().user?.email}`);

  step('Logging out');
  await restarted.logout();
  console.log(`  loggedIn: ${restarted.isLoggedIn()}; tryAutoLogin() → ${await restarted.tryAutoLogin()}`);
  await restarted.destroy();
} catch (err) {
  console.error(`\ndemo failed: ${err.message}${err.code ? ` [${err.code}]` : ''}`);
  process.exitCode = 1;
} finally {
  await cloudSync.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  if (cloud) {
    step('Stopping the local cloud');
    await cloud.stop();
  }
}
console.log('\nDone.');
