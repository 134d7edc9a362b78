// What every benchmark starts from: a local cloud, the addon logged in as a demo user, and
// the same user's access token for the `fetch` baseline.
import { CloudSync } from '../cloud-sync.mjs';
import { startDevcloud, DEMO_PASSWORD } from '../scripts/devcloud-process.mjs';

/** `env`: the local cloud's environment, e.g. `{ DEVCLOUD_AI_CHUNK_DELAY_MS: '10' }`. */
export async function benchSession({ email = 'alice@acme.test', config = {}, env = {} } = {}) {
  const cloud = await startDevcloud([], { env });
  const cs = new CloudSync(null, null);
  await cs.initialize({ baseUrl: cloud.url, anonKey: cloud.anonKey, tokenStore: 'memory', ...config });
  await cs.login(email, DEMO_PASSWORD);
  const resp = await fetch(`${cloud.url}/auth/v1/token?grant_type=password`, {
    method: 'POST',
    headers: { apikey: cloud.anonKey, 'content-type': 'application/json' },
    body: JSON.stringify({ email, password: DEMO_PASSWORD }),
  });
  const { access_token: accessToken } = await resp.json();
  return {
    cloud,
    cs,
    /** The baseline's headers: the same API key and a token of the same user. */
    headers: { apikey: cloud.anonKey, Authorization: `Bearer ${accessToken}` },
    close: async () => {
      await cs.destroy();
      await cloud.stop();
    },
  };
}
