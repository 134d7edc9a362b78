// Every runtime name the declarations promise can be imported from both entries: a name
// that type-checks but is undefined at run time is a bug the host finds in production.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { ROOT } from './helpers/devcloud.mjs';

const declared = (file) =>
  [...readFileSync(join(ROOT, file), 'utf8').matchAll(/^export declare (?:class|function|const) ([A-Za-z_$][\w$]*)/gm)].map(
    (m) => m[1],
  );
// cloud-sync.d.ts re-exports all of index.d.ts and declares CloudSync itself.
const names = [...new Set([...declared('index.d.ts'), ...declared('cloud-sync.d.ts')])];

test('the declarations name the classes and functions of the package', () => {
  for (const n of ['CloudSync', 'NativeCloudSync', 'CloudClient', 'CloudAuth', 'WorkspaceSync', 'FileSync', 'AiProxyStream', 'loadCloudConfig']) {
    assert.ok(names.includes(n), `${n} is declared`);
  }
});

test('each declared runtime name is exported by the CommonJS and the ESM entry', async () => {
  const cjs = createRequire(import.meta.url)(join(ROOT, 'cloud-sync.js'));
  const esm = await import(join(ROOT, 'cloud-sync.mjs'));
  for (const n of names) {
    assert.notEqual(cjs[n], undefined, `require('oboto-cloud').${n}`);
    assert.equal(esm[n], cjs[n], `import { ${n} } from 'oboto-cloud'`);
  }
  assert.equal(esm.default, cjs);
});
