// Builds a CloudSync wired to a test devcloud, the way the Oboto server does.
import { CloudSync } from '../../cloud-sync.mjs';
import { recordingEventBus } from './host.mjs';

export async function cloudSyncFor(cloud, { secrets = null, bus = recordingEventBus(), ...config } = {}) {
  const cs = new CloudSync(bus, secrets);
  await cs.initialize({ baseUrl: cloud.url, anonKey: cloud.anonKey, tokenStore: 'memory', ...config });
  return { cs, bus };
}
