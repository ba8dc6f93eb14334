/**
 * A bounded, steady load on caches for the dashboard tests: a few workers reading a skewed key
 * set (hits and misses), a loader that takes a few ms and sometimes fails, and short TTLs so
 * loads and stale serves keep happening. Stops on `stop()` or after `maxMs`.
 */
import type { Cache } from '../../src/index.js';

export interface Load {
  /** Operations done so far. */
  readonly operations: () => number;
  stop(): Promise<void>;
}

export function startLoad(caches: readonly Cache[], { workers = 6, keys = 300, maxMs = 60_000 } = {}): Load {
  const state = { running: true };
  let operations = 0;
  const deadline = Date.now() + maxMs;
  const loader = (key: string) => async () => {
    await new Promise((resolve) => setTimeout(resolve, 1 + Math.random() * 4));
    if (Math.random() < 0.02) throw new Error('flaky source');
    return { key, at: Date.now(), payload: 'x'.repeat(200) };
  };
  const worker = async (w: number) => {
    for (let i = 0; state.running && Date.now() < deadline; i++) {
      const cache = caches[(w + i) % caches.length]!;
      // Skewed: a hot tenth of the keys gets most reads.
      const key = `k${Math.random() < 0.8 ? Math.floor(Math.random() * (keys / 10)) : Math.floor(Math.random() * keys)}`;
      await cache.getOrSet(key, loader(key), { ttl: 1_500, grace: 10_000 }).catch(() => undefined);
      operations++;
      // Paced (about a thousand operations a second per worker at most): the machine is shared.
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  };
  const done = Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
  return {
    operations: () => operations,
    async stop() {
      state.running = false;
      await done;
    },
  };
}
