// What the file sync suites share: a local cloud with logged-in users, fresh workspaces and
// files written into working directories.
import { before, after } from 'node:test';
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { startDevcloud, SEED } from './devcloud.mjs';
import { loggedIn } from './sync.mjs';

/** Starts a local cloud (with `args`) for the suite; `suite.cloud` once started. */
export function fileSuite(args = []) {
  const instances = [];
  const suite = {
    cloud: null,
    /** Destroys `cs` after the suite. */
    track(cs) {
      instances.push(cs);
      return cs;
    },
    /** A logged-in seed user, destroyed after the suite. */
    async user(who = 'alice', dir = null) {
      const r = await loggedIn(suite.cloud, who, { dir, syncDebounceMs: 0, syncInterval: 3_600_000 });
      suite.track(r.cs);
      return r;
    },
    /** A fresh Acme workspace, so tests never see each other's files. */
    async newWorkspace() {
      const [row] = await suite.cloud.serviceRest('workspaces', {
        method: 'POST',
        body: { name: `files-${randomUUID().slice(0, 8)}`, slug: `files-${randomUUID()}`, org_id: SEED.orgs.acme, status: 'active' },
      });
      return row.id;
    },
  };
  before(async () => {
    suite.cloud = await startDevcloud(args);
  });
  after(async () => {
    for (const cs of instances) await cs.destroy();
    await suite.cloud?.stop();
  });
  return suite;
}

export const put = (dir, rel, data) => {
  const p = join(dir, rel);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, data);
};

export const sha = (b) => createHash('sha256').update(b).digest('hex');
