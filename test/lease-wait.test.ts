/**
 * Waiting for another instance's load (two caches, two connections, one Redis — as two
 * processes would be): woken by the holder's message rather than by polling, giving up after
 * `lock.wait`, and reconnecting with jittered backoff.
 */
import { describe, expect, it } from 'vitest';
import { createCache, type Cache, type LockWaitEvent } from '../src/index.js';
import { POLL_MAX_MS, POLL_START_MS } from '../src/core/coordination.js';
import { ioredisStore } from '../src/stores/ioredis.js';
import { redisStore } from '../src/stores/redis.js';
import { reconnectDelay } from '../src/stores/redis-store.js';
import { sleep, uniqueNamespace } from './helpers/redis.js';
import { driverFixture } from './helpers/driver-fixture.js';
import { startRedis } from './helpers/redis-server.js';

/** When a waiter polling with backoff (no message) re-reads the key: 20, 60, 140, 300, 620, … ms. */
function pollTimes(until: number): number[] {
  const times: number[] = [];
  for (let at = 0, delay = POLL_START_MS; at < until; delay = Math.min(delay * 2, POLL_MAX_MS)) times.push((at += delay));
  return times;
}

for (const driver of ['redis', 'ioredis'] as const) {
  describe(`lease waits over ${driver}`, () => {
    const fixture = driverFixture(driver);
    const { caches } = fixture;
    const store = () => fixture.store();

    async function instance(namespace: string, options: Parameters<typeof createCache>[0] = {}): Promise<Cache> {
      const cache = createCache({ namespace, jitter: 0, ...options, store: await store() });
      caches.push(cache);
      return cache;
    }

    it("a waiter wakes on the holder's message, not at its next poll", async () => {
      const namespace = uniqueNamespace('wake');
      const a = await instance(namespace);
      const b = await instance(namespace);
      // A's load ends at ~700 ms: between polls at 620 and 1,020 ms, far from both.
      const holdMs = 700;
      let written = 0;
      const loading = a.getOrSet('k', async () => {
        await sleep(holdMs);
        written = performance.now();
        return 'from A';
      });
      await sleep(20); // A holds the lease
      const waits: LockWaitEvent[] = [];
      b.on('lock-wait', (event) => waits.push(event));
      const started = performance.now();
      const bLoader = () => 'from B';
      const value = await b.getOrSet('k', bLoader);
      const woke = performance.now();
      expect(await loading).toBe('from A');
      expect(value).toBe('from A');
      expect(waits).toEqual([expect.objectContaining({ outcome: 'value' })]);
      // Polling alone would have found the value at the first poll after the write.
      const nextPoll = pollTimes(5_000).find((t) => started + t > written)!;
      const lag = woke - written;
      console.log(
        `lease wait (${driver}): woke ${lag.toFixed(1)} ms after the write; the next poll was ${(started + nextPoll - written).toFixed(0)} ms after it`,
      );
      expect(lag).toBeLessThan(started + nextPoll - written);
      expect(lag).toBeLessThan(150);
    });

    it('a waiter gives up after lock.wait and loads itself; the holder then cannot overwrite its value', async () => {
      const namespace = uniqueNamespace('giveup');
      const a = await instance(namespace);
      const b = await instance(namespace, { lock: { ttl: 2_000, wait: 200 } });
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const slow = a.getOrSet('k', async () => {
        await gate;
        return 'from A, late';
      });
      await sleep(20);
      const waits: LockWaitEvent[] = [];
      b.on('lock-wait', (event) => waits.push(event));
      const started = performance.now();
      expect(await b.getOrSet('k', () => 'from B')).toBe('from B');
      const waited = performance.now() - started;
      expect(waited).toBeGreaterThanOrEqual(190);
      expect(waited).toBeLessThan(1_500);
      expect(waits).toEqual([expect.objectContaining({ outcome: 'timeout' })]);
      // B replaced A's lease with its value; A's late compare-and-set finds it and writes nothing.
      release();
      expect(await slow).toBe('from A, late');
      await sleep(50);
      expect(await b.get('k')).toBe('from B');
      expect(await a.get('k')).toBe('from B');
    });

    it('URL-made clients reconnect with jittered, capped backoff: a fleet does not come back in lockstep', async () => {
      const redis = await startRedis();
      const stores = Array.from({ length: 12 }, () =>
        driver === 'redis' ? redisStore({ url: redis.url }) : ioredisStore({ url: redis.url }),
      );
      const fleet = stores.map((s, i) => createCache({ namespace: uniqueNamespace(`fleet${i}`), store: s }));
      try {
        await Promise.all(fleet.map((c) => c.set('k', 1)));
        await redis.stop();
        await sleep(300);
        await redis.restart();
        const seen: number[] = [];
        const began = performance.now();
        // Each instance comes back on its own schedule; record when each answers again.
        await Promise.all(
          stores.map(async (s) => {
            while (!s.status().ready) await sleep(5);
            seen.push(performance.now() - began);
          }),
        );
        seen.sort((x, y) => x - y);
        console.log(`reconnect (${driver}): first ${seen[0]!.toFixed(0)} ms, last ${seen.at(-1)!.toFixed(0)} ms after restart`);
        // Full jitter: not all at once.
        expect(seen.at(-1)! - seen[0]!).toBeGreaterThan(20);
      } finally {
        await Promise.all(fleet.map((c) => c.close()));
        await redis.stop();
      }
    }, 30_000);
  });
}

describe('reconnectDelay', () => {
  it('is full jitter over an exponential ceiling, capped at 5 s', () => {
    for (const retries of [0, 3, 6, 20]) {
      const ceiling = Math.min(5_000, 50 * 2 ** Math.min(retries, 10));
      const samples = Array.from({ length: 2_000 }, () => reconnectDelay(retries));
      expect(Math.min(...samples)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...samples)).toBeLessThanOrEqual(ceiling);
      // Spread over the whole range, not bunched: both halves are well used.
      const low = samples.filter((s) => s < ceiling / 2).length;
      expect(low).toBeGreaterThan(700);
      expect(low).toBeLessThan(1_300);
    }
  });
});
