// The consumer's path: the packed main package and this platform's package, installed offline
// into an empty project that has no Rust toolchain and cannot see this checkout, then loaded
// from CommonJS and ESM and used against a local cloud started from the checkout.
//
// It packs the `.node` the checkout built (`npm install` builds a release one), so run it
// after a build: `npm run test:consumer` (.ci/run does). OBOTO_CONSUMER_NO_CLOUD=1 skips the
// login (the release workflow on runners where the devcloud is not built).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { ROOT, DEMO_PASSWORD, startDevcloud } from '../helpers/devcloud.mjs';

const PLATFORMS = {
  'linux-x64': 'linux-x64-gnu',
  'linux-arm64': 'linux-arm64-gnu',
  'darwin-x64': 'darwin-x64',
  'darwin-arm64': 'darwin-arm64',
  'win32-x64': 'win32-x64-msvc',
};
const PLATFORM = PLATFORMS[`${process.platform}-${process.arch}`];
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const BINARY = `${pkg.napi.binaryName}.${PLATFORM}.node`;
const NO_CLOUD = process.env.OBOTO_CONSUMER_NO_CLOUD === '1';

/** Node's own directory and the system's, nothing else: no cargo, no rustc. */
function bareEnv(home) {
  const dirs = [dirname(process.execPath)];
  if (process.platform === 'win32') dirs.push(join(process.env.SystemRoot ?? 'C:\\Windows', 'System32'));
  else dirs.push('/usr/bin', '/bin');
  const env = { PATH: dirs.join(delimiter), HOME: home, USERPROFILE: home };
  if (process.env.SystemRoot) env.SystemRoot = process.env.SystemRoot;
  // No npm_config_* from an enclosing `npm run`, no NODE_PATH, no cargo home.
  return env;
}

function npm(args, { cwd, env }) {
  const started = process.hrtime.bigint();
  const r = spawnSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, {
    cwd,
    env,
    encoding: 'utf8',
    shell: process.platform === 'win32',
    maxBuffer: 64 << 20,
  });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  assert.equal(r.status, 0, `npm ${args.join(' ')} failed (${r.error ?? r.status}):\n${r.stdout}\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr, ms };
}

function packed(stdout) {
  const [info] = JSON.parse(stdout.slice(stdout.indexOf('[')));
  return info;
}

const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;

test('the packed packages install offline without Rust and work from CJS and ESM', { skip: !PLATFORM && 'no prebuilt target for this platform', timeout: 300_000 }, async (t) => {
  assert.ok(existsSync(join(ROOT, BINARY)), `${BINARY} is not built: run \`npm run build\``);
  const work = mkdtempSync(join(tmpdir(), 'oboto-consumer-'));
  t.after(() => rmSync(work, { recursive: true, force: true }));
  const home = join(work, 'home');
  mkdirSync(home);
  const env = bareEnv(home);
  const cache = join(work, 'npm-cache');
  const common = ['--cache', cache, '--no-audit', '--no-fund', '--no-update-notifier'];

  const noCargo = spawnSync('cargo', ['--version'], { env, shell: process.platform === 'win32' });
  assert.ok(noCargo.error || noCargo.status !== 0, 'cargo must not be reachable from the consumer');

  // The platform package, as the release's `napi artifacts` makes it (that command insists on
  // every target's binary): npm/<platform> with this platform's binary in it.
  const npmDir = join(work, 'npm');
  cpSync(join(ROOT, 'npm', PLATFORM), join(npmDir, PLATFORM), { recursive: true });
  copyFileSync(join(ROOT, BINARY), join(npmDir, PLATFORM, BINARY));

  // `npm pack` runs `prepare`, which must not build.
  const mainPack = npm(['pack', '--json', '--foreground-scripts', '--pack-destination', work, ...common], { cwd: ROOT, env });
  assert.match(mainPack.stdout + mainPack.stderr, /oboto-cloud: not building \(npm pack/);
  const main = packed(mainPack.stdout);
  const platform = packed(npm(['pack', '--json', '--pack-destination', work, ...common], { cwd: join(npmDir, PLATFORM), env }).stdout);

  const mainFiles = main.files.map((f) => f.path).sort();
  assert.deepEqual(mainFiles, ['README.md', 'cloud-sync.d.ts', 'cloud-sync.js', 'cloud-sync.mjs', 'index.d.ts', 'index.js', 'package.json']);
  assert.deepEqual(platform.files.map((f) => f.path).sort(), [BINARY, 'README.md', 'package.json'].sort());
  const manifest = JSON.parse(readFileSync(join(npmDir, PLATFORM, 'package.json'), 'utf8'));
  assert.equal(manifest.name, `${pkg.name}-${PLATFORM}`);
  assert.equal(manifest.version, pkg.version);
  assert.equal(pkg.optionalDependencies[manifest.name], pkg.version, 'the main package depends on this exact version');
  for (const hook of ['preinstall', 'install', 'postinstall']) assert.equal(pkg.scripts[hook], undefined, `no ${hook} script`);
  t.diagnostic(`main ${main.filename}: ${kib(main.size)} packed, ${kib(main.unpackedSize)} unpacked, ${main.entryCount} files`);
  t.diagnostic(`platform ${platform.filename}: ${kib(platform.size)} packed, ${kib(platform.unpackedSize)} unpacked`);

  // An empty project outside the checkout (so nothing resolves into its node_modules), an
  // empty npm cache and --offline: the two tarballs must be all it needs.
  const app = join(work, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  const install = npm(['install', '--offline', '--foreground-scripts', ...common, join(work, main.filename), join(work, platform.filename)], { cwd: app, env });
  t.diagnostic(`consumer install (offline, 2 tarballs): ${install.ms.toFixed(0)} ms`);
  assert.doesNotMatch(install.stdout + install.stderr, /oboto-cloud: |cargo|napi build/, 'no script ran on install');
  const installed = join(app, 'node_modules', 'oboto-cloud');
  assert.ok(!existsSync(join(installed, BINARY)), 'the binary comes from the platform package');
  assert.ok(existsSync(join(app, 'node_modules', manifest.name, BINARY)));

  let cloud = null;
  if (!NO_CLOUD) {
    cloud = await startDevcloud();
    t.after(() => cloud.stop());
  }
  writeFileSync(
    join(app, 'check.mjs'),
    `import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const cjs = require('oboto-cloud');
const esm = await import('oboto-cloud');
const out = {
  resolved: require.resolve('oboto-cloud'),
  binding: require.resolve('${manifest.name}'),
  same: esm.CloudSync === cjs.CloudSync && esm.loadCloudConfig === cjs.loadCloudConfig,
  checkoutVisible: (() => { try { require.resolve('@supabase/supabase-js'); return true; } catch { return false; } })(),
};
// The native code runs: an unreachable cloud is a typed network error.
const offline = new esm.CloudSync(null, null);
await offline.initialize({ baseUrl: 'http://127.0.0.1:9', anonKey: 'k', tokenStore: 'memory', connectTimeoutMs: 2000 });
out.offlineError = await offline.login('a@b.test', 'x').then(() => null, (e) => e.code);
await offline.destroy();
if (process.env.CLOUD_URL) {
  const sync = new cjs.CloudSync(null, null);
  await sync.initialize({ baseUrl: process.env.CLOUD_URL, anonKey: process.env.CLOUD_KEY, tokenStore: 'memory' });
  await sync.login('alice@acme.test', process.env.CLOUD_PASSWORD);
  out.loggedIn = sync.isLoggedIn();
  out.workspaces = (await sync.listCloudWorkspaces()).map((w) => w.name).sort();
  await sync.logout();
  await sync.destroy();
}
console.log(JSON.stringify(out));
`,
  );
  const runEnv = { ...env, ...(cloud && { CLOUD_URL: cloud.url, CLOUD_KEY: cloud.anonKey, CLOUD_PASSWORD: DEMO_PASSWORD }) };
  const run = spawnSync(process.execPath, ['check.mjs'], { cwd: app, env: runEnv, encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 0, `consumer script failed:\n${run.stdout}\n${run.stderr}`);
  const out = JSON.parse(run.stdout.trim().split('\n').pop());
  assert.ok(out.resolved.startsWith(installed), out.resolved);
  assert.ok(out.binding.startsWith(join(app, 'node_modules')), out.binding);
  assert.equal(out.same, true, 'require and import give the same objects');
  assert.equal(out.checkoutVisible, false, "the checkout's node_modules are out of reach");
  assert.equal(out.offlineError, 'NETWORK_ERROR');
  if (cloud) {
    assert.equal(out.loggedIn, true);
    assert.deepEqual(out.workspaces, ['Data Pipeline', 'Website Revamp']);
  }
});
