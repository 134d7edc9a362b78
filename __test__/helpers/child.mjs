// The parent side of realtime-child.mjs: spawns a seed user's CloudSync in its own process
// and reads what it prints.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { ROOT, SEED, DEMO_PASSWORD } from './devcloud.mjs';
import { workdir } from './sync.mjs';

/**
 * @param {{url: string, anonKey: string}} cloud
 * @returns a handle: `lines` (every JSON line so far), `until(pred, ms)` (the first line
 *   matching, waiting), `send(cmd)`, `exited` (resolves to `{code, signal, at}`), `child`.
 */
export function spawnClient(cloud, who, ws, { heartbeatMs = null } = {}) {
  const env = {
    ...process.env,
    URL: cloud.url,
    KEY: cloud.anonKey,
    EMAIL: SEED.users[who].email,
    PASSWORD: DEMO_PASSWORD,
    DIR: workdir(`oboto-rtchild-${who}-`),
    WS: ws,
  };
  if (heartbeatMs) env.HEARTBEAT_MS = String(heartbeatMs);
  const child = spawn(process.execPath, [join(ROOT, '__test__', 'helpers', 'realtime-child.mjs')], {
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin.on('error', () => {});
  const lines = [];
  const waiters = new Set();
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 64_000) stderr = stderr.slice(-32_000);
  });
  createInterface({ input: child.stdout }).on('line', (text) => {
    let line;
    try {
      line = JSON.parse(text);
    } catch {
      line = { text };
    }
    lines.push(line);
    for (const w of waiters) w(line);
  });
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  const handle = {
    who,
    child,
    lines,
    exited,
    stderr: () => stderr,
    events: (name) => lines.filter((l) => l.event === name).map((l) => l.payload),
    send: (cmd) => child.stdin.write(`${cmd}\n`),
    /** The first line at index `from` or later matching `pred`. */
    until(pred, timeoutMs = 20_000, from = 0, what = 'a matching line') {
      const seen = lines.slice(from).find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const done = (err, line) => {
          clearTimeout(t);
          waiters.delete(on);
          if (err) reject(err);
          else resolve(line);
        };
        const t = setTimeout(
          () => done(new Error(`${who}: no ${what} within ${timeoutMs} ms; stderr:\n${stderr.slice(-2000)}`)),
          timeoutMs,
        );
        const on = (line) => pred(line) && done(null, line);
        waiters.add(on);
        exited.then(({ code, signal }) =>
          done(new Error(`${who} exited (${code ?? signal}) before ${what}; stderr:\n${stderr.slice(-2000)}`)),
        );
      });
    },
    /** Sends `cmd` and resolves to the next line carrying `key`. */
    async ask(cmd, key, timeoutMs = 10_000) {
      const from = lines.length;
      handle.send(cmd);
      return (await handle.until((l) => key in l, timeoutMs, from, `{${key}}`))[key];
    },
    kill: (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
  return handle;
}
