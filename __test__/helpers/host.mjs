// Stand-ins for what the Oboto server hands to `new CloudSync(eventBus, secretsManager)`:
// an EventEmitter with `emitTyped`, and a secrets manager (in memory or in a file, so a
// second process can read what the first stored).
import { EventEmitter } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

export function recordingEventBus() {
  const bus = new EventEmitter();
  bus.events = [];
  bus.emitTyped = (name, payload) => {
    const event = { ...payload, timestamp: new Date().toISOString() };
    bus.events.push({ name, payload: event });
    bus.emit(name, event);
  };
  bus.names = () => bus.events.map((e) => e.name);
  bus.next = (name, timeoutMs = 10_000) =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${name} within ${timeoutMs} ms`)), timeoutMs);
      bus.once(name, (p) => {
        clearTimeout(t);
        resolve(p);
      });
    });
  return bus;
}

/** The legacy secrets manager: sync `get`, async `set`/`delete`; optionally file-backed. */
export function secretsManager(file = null) {
  const load = () => (file && existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {});
  let mem = load();
  const save = () => file && writeFileSync(file, JSON.stringify(mem));
  return {
    writes: [],
    get(name) {
      mem = file ? load() : mem;
      return mem[name];
    },
    async set(name, value, category, description) {
      this.writes.push({ name, value, category, description });
      mem[name] = value;
      save();
    },
    async delete(name) {
      delete mem[name];
      save();
    },
  };
}

/** Matches anything shaped like a JWT (three base64url segments starting with `eyJ`). */
export const JWT_PATTERN = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}/;
