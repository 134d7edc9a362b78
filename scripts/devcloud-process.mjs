// Starts a private `oboto-devcloud` (for a test file, the demo or a benchmark) and stops it.
//
//   const cloud = await startDevcloud(['--jwt-exp', '15']);
//   ... cloud.url, cloud.anonKey, cloud.serviceRoleKey, await cloud.stats() ...
//   await cloud.stop();
//
// Set OBOTO_DEVCLOUD_URL (+ OBOTO_DEVCLOUD_ANON_KEY, OBOTO_DEVCLOUD_SERVICE_KEY) to run a
// suite against an already running cloud, such as a real Supabase project with the schema.
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const DEMO_PASSWORD = 'oboto-demo-pass';

/** The newest built devcloud binary (release or debug), or OBOTO_DEVCLOUD_BIN. */
export function devcloudBinary() {
  if (process.env.OBOTO_DEVCLOUD_BIN) return process.env.OBOTO_DEVCLOUD_BIN;
  const candidates = ['release', 'debug']
    .map((p) => join(ROOT, 'target', p, 'oboto-devcloud'))
    .filter((p) => existsSync(p))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (!candidates.length) {
    throw new Error('oboto-devcloud is not built: run `npm run build:devcloud`');
  }
  return candidates[0];
}

export async function startDevcloud(args = [], { env = {} } = {}) {
  if (process.env.OBOTO_DEVCLOUD_URL && args.length === 0) {
    const cloud = {
      url: process.env.OBOTO_DEVCLOUD_URL.replace(/\/+$/, ''),
      anonKey: process.env.OBOTO_DEVCLOUD_ANON_KEY,
      serviceRoleKey: process.env.OBOTO_DEVCLOUD_SERVICE_KEY,
      external: true,
      stop: async () => {},
    };
    return withHooks(cloud);
  }
  // A caller may fix the port (to restart a cloud where its clients expect it).
  const port = args.includes('--port') ? [] : ['--port', '0'];
  // We hold the write end of its stdin: when this process ends, however it ends, the cloud
  // sees end of file and stops (with its Postgres) instead of lingering.
  const child = spawn(devcloudBinary(), [...port, '--exit-on-stdin-eof', ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  child.stdin.on('error', () => {});
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 64_000) stderr = stderr.slice(-32_000);
  });
  const ready = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`devcloud not ready in 60 s:\n${stderr}`)), 60_000);
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line));
      } catch (e) {
        reject(new Error(`devcloud printed a bad ready line: ${line}`));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`devcloud exited with ${code}:\n${stderr}`));
    });
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const cloud = {
    ...ready,
    child,
    stderr: () => stderr,
    /** SIGTERM, then wait for the exit (the private Postgres is gone when this resolves). */
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
  return withHooks(cloud);
}

function withHooks(cloud) {
  const service = { apikey: cloud.serviceRoleKey, Authorization: `Bearer ${cloud.serviceRoleKey}` };
  cloud.stats = async () => {
    const r = await fetch(`${cloud.url}/devcloud/v1/stats`, { headers: service });
    if (!r.ok) throw new Error(`stats: ${r.status}`);
    return r.json();
  };
  cloud.resetStats = async () => {
    const r = await fetch(`${cloud.url}/devcloud/v1/stats/reset`, { method: 'POST', headers: service });
    if (!r.ok) throw new Error(`stats reset: ${r.status}`);
  };
  /** Creates a user through the GoTrue admin API and returns it. */
  cloud.createUser = async (email, password, userMetadata = {}) => {
    const r = await fetch(`${cloud.url}/auth/v1/admin/users`, {
      method: 'POST',
      headers: { ...service, 'content-type': 'application/json' },
      body: JSON.stringify({ email, password, email_confirm: true, user_metadata: userMetadata }),
    });
    if (!r.ok) throw new Error(`create user: ${r.status} ${await r.text()}`);
    return r.json();
  };
  /** A PostgREST call with the service-role key (bypasses RLS), for test setup. */
  cloud.serviceRest = async (path, { method = 'GET', body, headers = {} } = {}) => {
    const r = await fetch(`${cloud.url}/rest/v1/${path}`, {
      method,
      headers: { ...service, 'content-type': 'application/json', Prefer: 'return=representation', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  return cloud;
}

/** The demo seed's fixed ids (devcloud/seed/demo.sql). */
export const SEED = {
  users: {
    alice: { id: '11111111-1111-4111-8111-111111111111', email: 'alice@acme.test' },
    bob: { id: '22222222-2222-4222-8222-222222222222', email: 'bob@acme.test' },
    carol: { id: '33333333-3333-4333-8333-333333333333', email: 'carol@globex.test' },
  },
  orgs: { acme: 'aaaaaaaa-0000-4000-8000-000000000001', globex: 'aaaaaaaa-0000-4000-8000-000000000002' },
  workspaces: {
    websiteRevamp: 'bbbbbbbb-0000-4000-8000-000000000001',
    dataPipeline: 'bbbbbbbb-0000-4000-8000-000000000002',
    secretPlans: 'bbbbbbbb-0000-4000-8000-000000000003',
  },
  conversations: { acmeChat: 'cccccccc-0000-4000-8000-000000000001', globexChat: 'cccccccc-0000-4000-8000-000000000002' },
  agents: {
    codeReviewer: 'dddddddd-0000-4000-8000-000000000001',
    summarizer: 'dddddddd-0000-4000-8000-000000000002',
    globexBot: 'dddddddd-0000-4000-8000-000000000003',
  },
};
