/**
 * The in-process tier in a cache: served from memory, decoded once, bounded, coherent within a
 * process (several caches over one store), and with tags.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createCache, type Cache, type CacheOptions } from '../src/index.js';
import { harness, type DriverName, type Harness } from './helpers/harness.js';
import { commandStats, eventually, ManualClock, nodeRedis, sleep, statsDelta, uniqueNamespace } from './helpers/redis.js';
import { startRedis } from './helpers/redis-server.js';
import { redisStore } from '../src/stores/redis.js';

describe.each<DriverName>(['redis', 'ioredis', 'memory'])('L1 over %s', (driver) => {
  let h: Harness;
  const caches: Cache[] = [];
  beforeAll(async () => {
    h = await harness(driver);
  });
  afterEach(async () => {
    await Promise.all(caches.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await h.close();
  });

  /** A cache; pass `sibling` for a second instance over the same store and namespace. */
  async function make(options: Omit<CacheOptions, 'store'> = {}, sibling?: Cache): Promise<Cache> {
    const namespace = sibling === undefined ? uniqueNamespace('l1') : sibling.prefix.split(':')[0]!;
    // Over Redis each instance has its own connection, as separate processes would; the memory
    // store can only be shared within a process.
    const store = driver === 'memory' && sibling !== undefined ? sibling.store : await h.store();
    const cache = createCache({ namespace, l1: {}, bus: { heartbeat: 100 }, ...options, store });
    caches.push(cache);
    const up = new Promise<void>((resolve) => cache.on('bus', ({ connected }) => connected && resolve()));
    await Promise.race([up, sleep(2_000)]);
    return cache;
  }

  it('serves hits from memory without decoding again (same object), counted as l1 hits', async () => {
    const cache = await make();
    const loader = vi.fn(() => ({ id: 1 }));
    const first = await cache.getOrSet('k', loader);
    const second = await cache.getOrSet('k', loader);
    const third = await cache.get('k');
    expect(second).toBe(first);
    expect(third).toBe(first);
    expect(loader).toHaveBeenCalledTimes(1);
    expect(cache.stats()).toMatchObject({ l1Hits: 2, l2Hits: 0, l1Entries: 1 });
  });

  it.skipIf(driver === 'memory')(
    'an early refresh another instance already did is not loaded again; the newer entry replaces L1',
    async () => {
      const clock = new ManualClock();
      // No bus: B's L1 keeps the old entry, as when the invalidation is still on its way.
      const options = { clock, ttl: 1_000, jitter: 0, earlyRefresh: { ahead: 0.8, beta: 0 }, bus: false } as const;
      const a = await make(options);
      const b = await make(options, a);
      let version = 0;
      const loader = vi.fn(async () => ++version);
      expect(await a.getOrSet('hot', loader)).toBe(1);
      expect(await b.getOrSet('hot', loader)).toBe(1);
      clock.advance(850);
      // A refreshes in the background and writes version 2.
      expect(await a.getOrSet('hot', loader)).toBe(1);
      // Written, and A's refresh lock released after the write: until then B's refresh would find
      // the lock held and leave its L1 as it is (and a later read would refresh again).
      await eventually(
        async () =>
          (await h.raw.get(`${a.prefix}hot`))?.toString().endsWith('\n2') === true &&
          (await h.raw.get(`${a.prefix}hot\u0000lock`)) === undefined,
        5_000,
        'the refresh',
      );
      // B's L1 still says 1 and is due for refresh: B finds version 2 in Redis instead of loading.
      expect(await b.getOrSet('hot', loader)).toBe(1);
      await eventually(async () => (await b.getOrSet('hot', loader)) === 2, 5_000, "B's L1 to take version 2");
      expect(loader).toHaveBeenCalledTimes(2);
      expect(b.stats()).toMatchObject({ refreshes: 1, loads: 0 });
    },
  );

  it('fills L1 from store reads, and getMany reads L1 first', async () => {
    const cache = await make();
    await cache.setMany([
      { key: 'a', value: 1 },
      { key: 'b', value: 2 },
    ]);
    const other = await make({}, cache);
    expect(await other.getMany(['a', 'b', 'c'])).toEqual([1, 2, undefined]);
    expect(other.stats().l2Hits).toBe(2);
    expect(await other.getMany(['a', 'b'])).toEqual([1, 2]);
    expect(other.stats().l1Hits).toBe(2);
  });

  it('clones on read when asked', async () => {
    const cache = await make({ l1: { clone: true } });
    const first = await cache.getOrSet('k', () => ({ list: [1] }));
    const second = await cache.getOrSet('k', () => ({ list: [2] }));
    expect(second).toEqual({ list: [1] });
    expect(second).not.toBe(first);
    second.list.push(99);
    expect(await cache.getOrSet('k', () => ({ list: [3] }))).toEqual({ list: [1] });
  });

  it('never serves an L1 copy past its L2 freshness', async () => {
    const cache = await make({ ttl: 100, jitter: 0 });
    await cache.getOrSet('k', () => 'v1');
    await sleep(150);
    expect(await cache.getOrSet('k', () => 'v2')).toBe('v2');
  });

  it('set and delete on one cache reach another cache sharing the store (the bus)', async () => {
    const a = await make();
    const b = await make({}, a);
    await a.getOrSet('k', () => 'old');
    expect(await b.getOrSet('k', () => 'unused')).toBe('old');
    expect(b.stats().l1Entries).toBe(1);
    await a.set('k', 'new');
    await eventually(async () => (await b.getOrSet('k', () => 'unused')) === 'new', 2_000, 'b to see the set');
    await a.delete('k');
    await eventually(async () => (await b.get('k')) === undefined, 2_000, 'b to see the delete');
    await a.getOrSet('c', () => 1);
    await b.getOrSet('c', () => 2);
    await a.clear();
    await eventually(async () => (await b.get('c')) === undefined, 2_000, 'b to see the clear');
  });

  it('tags: invalidating one tag invalidates every entry carrying it, in every cache', async () => {
    const a = await make();
    const b = await make({}, a);
    let version = 0;
    const load = () => `v${version}`;
    await a.getOrSet('p1', load, { tags: ['product:1', 'catalog'] });
    await a.getOrSet('p2', load, { tags: ['product:2', 'catalog'] });
    expect(await b.getOrSet('p1', load, { tags: ['product:1', 'catalog'] })).toBe('v0');
    version = 1;
    await b.invalidateTags(['product:1']);
    expect(await b.getOrSet('p1', load, { tags: ['product:1', 'catalog'] })).toBe('v1');
    await eventually(
      async () => (await a.getOrSet('p1', load, { tags: ['product:1', 'catalog'] })) === 'v1',
      2_000,
      'a to see the tag',
    );
    expect(await a.getOrSet('p2', load, { tags: ['product:2', 'catalog'] })).toBe('v0');
    version = 2;
    await a.invalidateTags(['catalog']);
    expect(await a.getMany(['p1', 'p2'])).toEqual([undefined, undefined]);
  });

  it('a tag invalidated while its loader runs makes the loaded value stale on arrival', async () => {
    const cache = await make();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const loading = cache.getOrSet(
      'racy',
      async () => {
        await gate;
        return 'old';
      },
      { tags: ['t'] },
    );
    await sleep(20);
    await cache.invalidateTags(['t']);
    release();
    expect(await loading).toBe('old');
    // The old value was written with the old tag version: it is never served.
    expect(await cache.getOrSet('racy', () => 'new', { tags: ['t'] })).toBe('new');
  });

  it('the stale-set race with L1: a value loaded before a delete is never served after it', async () => {
    const a = await make();
    const b = await make({}, a);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const loading = b.getOrSet('row', async () => {
      await gate;
      return 'old row';
    });
    await sleep(20);
    // The database row changes, then the key is deleted ("write, then invalidate").
    await a.delete('row');
    release();
    expect(await loading).toBe('old row');
    for (const cache of [a, b]) expect(await cache.getOrSet('row', () => 'new row')).toBe('new row');
  });
});

describe('tag invalidation cost', () => {
  it('is the same for 10 and 100,000 tagged entries (one write per tag)', async () => {
    const redis = await startRedis();
    const client = await nodeRedis(redis.url);
    const inspector = await nodeRedis(redis.url);
    try {
      // Heartbeats are PUBLISHes too: keep them out of the measured windows.
      const cache = createCache({
        namespace: uniqueNamespace('tags'),
        // A 5,000-SET pipeline can outlast the 500 ms default on a loaded machine; a write that
        // times out fails open and would land inside the measured window.
        store: redisStore({ client, commandTimeout: 30_000 }),
        bus: { heartbeat: 600_000 },
      });
      const costOf = async (tag: string, entries: number): Promise<Record<string, number>> => {
        for (let i = 0; i < entries; i += 5_000) {
          const batch = Array.from({ length: Math.min(5_000, entries - i) }, (_, j) => ({
            key: `${tag}:${i + j}`,
            value: i + j,
            tags: [tag],
          }));
          await cache.setMany(batch);
        }
        // The first read of a tag creates its version and announces it (in the background): let
        // that PUBLISH land before the measured window.
        await sleep(100);
        const before = await commandStats(inspector);
        const started = performance.now();
        await cache.invalidateTags([tag]);
        const ms = performance.now() - started;
        const delta = statsDelta(before, await commandStats(inspector));
        console.log(`invalidateTags over ${entries} entries: ${ms.toFixed(1)} ms, commands ${JSON.stringify(delta)}`);
        return delta;
      };
      const small = await costOf('small', 10);
      const large = await costOf('large', 100_000);
      expect(large).toEqual(small);
      expect(await cache.getMany(['large:0', 'large:99999', 'small:3'])).toEqual([undefined, undefined, undefined]);
      await cache.close();
    } finally {
      await client.close();
      await inspector.close();
      await redis.stop();
    }
  }, 60_000);
});

describe('L1 bounds under a write flood', () => {
  it('stays within its byte bound, and the process heap with it (measured)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const cache = createCache({ namespace: uniqueNamespace('flood'), l1: { maxEntries: 1_000_000, maxBytes: 2 * 1024 * 1024 } });
    const value = 'x'.repeat(10_000);
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 5_000; i++) await cache.set(`k${i}`, { i, value });
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    const stats = cache.stats();
    console.log(
      `flood of ${(5_000 * 10_000) / 1e6} MB: L1 holds ${stats.l1Entries} entries, ${(stats.l1Bytes / 1e6).toFixed(2)} MB; heap grew ${(grown / 1e6).toFixed(1)} MB`,
    );
    expect(stats.l1Bytes).toBeLessThanOrEqual(2 * 1024 * 1024);
    expect(stats.l1Evictions).toBeGreaterThan(4_000);
    // The memory store (L2 here) also keeps values, bounded at 64 MiB; the flood is 50 MB: L1 must
    // add only its 2 MiB (plus bookkeeping), not another copy of the flood.
    expect(grown).toBeLessThan(50e6 + 2 * 1024 * 1024 + 15e6);
    await cache.close();
  });
});
