// Waiting for a condition rather than for a time assumed long enough: a loaded machine (CI
// compiles while two test files run) stretches every delay.
import { setTimeout as sleep } from 'node:timers/promises';

/** Resolves to `check()`'s first truthy value (polled; `check` may be async), or rejects
 * after `timeoutMs` naming `what`. */
export async function until(check, timeoutMs = 20_000, what = 'the condition') {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`no ${typeof what === 'function' ? what() : what} within ${timeoutMs} ms`);
    await sleep(50);
  }
}
