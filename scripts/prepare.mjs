// `prepare`: the checkout's `npm install` builds the addon and the local cloud (release).
//
// npm runs `prepare` on a plain `npm install` / `npm ci` in the checkout, on a git-dependency
// install and before `npm pack` / `npm publish`; never when a tarball or a registry package is
// installed (and the packed package has no install script), so consumers never build. This
// builds only on an install in a checkout that has the sources: packing and publishing take
// the binaries already built (`npm run build`, or the release workflow's artifacts). A git
// dependency is a checkout too, and builds from source like one.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const command = process.env.npm_command ?? 'install';

function skip(why) {
  console.log(`oboto-cloud: not building (${why})`);
  process.exit(0);
}

if (!['install', 'ci'].includes(command)) skip(`npm ${command} uses the binaries already built`);
if (!existsSync(join(ROOT, 'Cargo.toml')) || !existsSync(join(ROOT, 'src'))) skip('no Rust sources here');
if (process.env.OBOTO_CLOUD_SKIP_BUILD === '1') skip('OBOTO_CLOUD_SKIP_BUILD=1');

for (const args of [['run', 'build'], ['run', 'build:devcloud']]) {
  const r = spawnSync('npm', args, { cwd: ROOT, stdio: 'inherit', shell: process.platform === 'win32' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
