// What the realtime suites share: the official client as the app uses it, a raw Phoenix
// socket for the wire details, and a local cloud per describe.
import { after, before } from 'node:test';
import { createClient } from '@supabase/supabase-js';

import { DEMO_PASSWORD, startDevcloud } from '../../__test__/helpers/devcloud.mjs';

// Node 20 has no WebSocket of its own: the `ws` package (supabase-js's documented transport),
// else the one `node --experimental-websocket` provides.
export const WS = await import('ws').then((m) => m.default).catch(() => globalThis.WebSocket);
if (!WS) throw new Error('the realtime tests need the `ws` package (or node --experimental-websocket)');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const uuid = () => crypto.randomUUID();

/** Resolves once `check()` is truthy (polled), or rejects after `ms`. */
export async function until(check, ms = 5000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export function client(cloud) {
  return createClient(cloud.url, cloud.anonKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: WS, heartbeatIntervalMs: 25000 },
  });
}

export async function signedIn(cloud, email) {
  const sb = client(cloud);
  const { data, error } = await sb.auth.signInWithPassword({ email, password: DEMO_PASSWORD });
  if (error) throw error;
  sb.realtime.setAuth(data.session.access_token);
  return { sb, token: data.session.access_token };
}

/** Subscribes and waits for SUBSCRIBED. */
export function subscribed(channel) {
  return new Promise((resolve, reject) => {
    channel.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') resolve(channel);
      else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') reject(err ?? new Error(status));
    });
  });
}

/** A raw Phoenix socket: frames parsed (v1 objects, v2 arrays, binary as Uint8Array). */
export class Raw {
  static async open(url) {
    const sock = new WS(url);
    sock.binaryType = 'arraybuffer';
    const raw = new Raw(sock);
    await new Promise((resolve, reject) => {
      sock.addEventListener('open', resolve);
      sock.addEventListener('error', reject);
    });
    return raw;
  }
  constructor(sock) {
    this.sock = sock;
    this.frames = [];
    this.closed = null;
    sock.addEventListener('message', (e) => {
      this.frames.push(typeof e.data === 'string' ? JSON.parse(e.data) : new Uint8Array(e.data));
    });
    sock.addEventListener('close', (e) => {
      this.closed = { code: e.code, reason: e.reason };
    });
  }
  send(frame) {
    this.sock.send(frame instanceof Uint8Array || typeof frame === 'string' ? frame : JSON.stringify(frame));
  }
  /** Takes the first frame matching `pred`, waiting for it. */
  async next(pred, ms = 5000) {
    return until(() => {
      const i = this.frames.findIndex(pred);
      return i >= 0 ? this.frames.splice(i, 1)[0] : null;
    }, ms, 'a frame');
  }
  close() {
    this.sock.close();
  }
}

export const wsUrl = (cloud, key, vsn) =>
  `${cloud.url.replace(/^http/, 'ws')}/realtime/v1/websocket?apikey=${key}${vsn ? `&vsn=${vsn}` : ''}`;

export const insertMessage = (cloud, conversation, content, id = uuid()) =>
  cloud.serviceRest('messages', {
    method: 'POST',
    body: { id, conversation_id: conversation, role: 'user', content },
  }).then((rows) => rows[0]);

/** A local cloud for the enclosing describe (`suite.cloud` once started); the channels of
 *  `suite.clients` are removed before it stops. */
export function suiteCloud(args) {
  const suite = { cloud: null, clients: [] };
  before(async () => {
    suite.cloud = await startDevcloud(args);
  });
  after(async () => {
    for (const sb of suite.clients) await sb.removeAllChannels();
    await suite.cloud?.stop();
  });
  return suite;
}

