/**
 * Lease-first reads: while misses are common, `getOrSet` reads with `SET NX PX GET` (the read
 * and the lease in one command). Redis refusing every write (OOM under `noeviction`, an ACL
 * without `SET`) turns them off for 30 s (the refused read asks again with `GET`), then they are
 * tried again; one key of another type (`WRONGTYPE`) does not. Both drivers, on a private
 * redis-server so `INFO commandstats` counts only this file's commands.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createCache, type Cache } from '../src/index.js';
import { ioredisStore } from '../src/stores/ioredis.js';
import { redisStore } from '../src/stores/redis.js';
import { startRedis } from './helpers/redis-server.js';
import { commandStats, ioredis, ManualClock, nodeRedis, statsDelta, uniqueNamespace } from './helpers/redis.js';

type Driver = 'redis' | 'ioredis';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function setup(driver: Driver, clock = new ManualClock()) {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const inspector = await nodeRedis(redis.url);
  cleanups.push(() => inspector.close());
  let cache: Cache;
  if (driver === 'redis') {
    const client = await nodeRedis(redis.url);
    cleanups.push(async () => client.destroy());
    cache = createCache({ namespace: uniqueNamespace('lf'), store: redisStore({ client }), bus: false, clock });
  } else {
    const client = await ioredis(redis.url);
    cleanups.push(async () => client.disconnect());
    cache = createCache({ namespace: uniqueNamespace('lf'), store: ioredisStore({ client }), bus: false, clock });
  }
  cleanups.push(() => cache.close());
  /** `count` cold keys read one after the other; the commands Redis counted meanwhile. */
  const misses = async (prefix: string, count: number): Promise<Record<string, number>> => {
    const before = await commandStats(inspector);
    for (let i = 0; i < count; i++) expect(await cache.getOrSet(`${prefix}${i}`, () => `v${i}`)).toBe(`v${i}`);
    // The last write settles after its getOrSet has answered.
    await new Promise((resolve) => setTimeout(resolve, 50));
    return statsDelta(before, await commandStats(inspector));
  };
  return { cache, inspector, misses, clock };
}

describe.each<Driver>(['redis', 'ioredis'])('lease-first reads over %s', (driver) => {
  it('a key of another type fails its own lease only: reads keep taking the lease', async () => {
    const { cache, inspector, misses } = await setup(driver);
    const failures: string[] = [];
    cache.on('store-error', ({ operation }) => failures.push(operation));
    // Enough misses for lease-first reads to start (over 20% of recent reads missed).
    await misses('warm', 30);
    await inspector.hSet(`${cache.prefix}hash`, 'field', 'x');
    expect(await cache.getOrSet('hash', () => 'loaded')).toBe('loaded');
    expect(failures).toContain('lease');
    const after = await misses('cold', 10);
    // Per miss: the lease-read (a SET), then the compare-and-set script with its GET and SET.
    // A GET-first read would add a GET per miss.
    expect(after.get).toBe(10);
    expect(after.set).toBe(20);
  });

  it('Redis refusing every write (OOM) turns lease-first reads off; getOrSet answers from the loader', async () => {
    const { cache, inspector, misses } = await setup(driver);
    const failures: string[] = [];
    cache.on('store-error', ({ operation }) => failures.push(operation));
    await misses('warm', 30);
    // Below what Redis already uses: every write is refused with OOM, reads still answer.
    await inspector.configSet({ maxmemory: '1', 'maxmemory-policy': 'noeviction' });
    await misses('full', 5);
    expect(failures).toContain('lease');
    const after = await misses('cold', 10);
    // Per miss: a plain GET again, then the lease (refused, so not counted) and the write script,
    // whose GET runs before its SET is refused. Lease-first reads would send no plain GET.
    expect(after.get).toBe(20);
    expect(after.evalsha).toBe(10);
    expect(after.set).toBeUndefined();
  });

  it('lease-first reads come back 30 s after the refusal, once Redis takes writes again', async () => {
    const { inspector, misses, clock } = await setup(driver);
    await misses('warm', 30);
    await inspector.configSet({ maxmemory: '1', 'maxmemory-policy': 'noeviction' });
    await misses('full', 5);
    await inspector.configSet({ maxmemory: '0' });
    // Writes are taken again, but reads stay GET-first until the retry time: a GET per miss.
    clock.advance(29_000);
    expect((await misses('early', 10)).get).toBe(20);
    clock.advance(1_000);
    // The first read after it turns lease-first back on (a GET, a lease, the script's GET and
    // SET); the nine others lease as they read (a SET, the script's GET and SET).
    const after = await misses('cold', 10);
    expect(after.get).toBe(2 + 9);
    expect(after.set).toBe(2 + 2 * 9);
  });

  it('when the GET that retries a refused lease read fails too, the call answers from its loader', async () => {
    const { cache, inspector, misses } = await setup(driver);
    const failures: string[] = [];
    cache.on('store-error', ({ operation }) => failures.push(operation));
    await misses('warm', 30);
    await inspector.sendCommand(['ACL', 'SETUSER', 'default', '-set', '-get']);
    const failOpen = cache.stats().failOpen;
    expect(await cache.getOrSet('k', () => 'loaded')).toBe('loaded');
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The refused lease (reported, not counted as failing open), the refused GET, the refused write.
    expect(failures).toEqual(['lease', 'get', 'set']);
    expect(cache.stats().failOpen - failOpen).toBe(2);
  });

  it('an ACL that takes SET away (NOPERM) turns lease-first reads off too', async () => {
    const { cache, inspector, misses, clock } = await setup(driver);
    const failures: string[] = [];
    cache.on('store-error', ({ operation }) => failures.push(operation));
    await misses('warm', 30);
    await cache.set('cached', 'from before');
    await inspector.sendCommand(['ACL', 'SETUSER', 'default', '-set']);
    // The refused lease read asks again with GET: the cached value is served, no load.
    const loader = vi.fn(() => 'loaded');
    expect(await cache.getOrSet('cached', loader)).toBe('from before');
    expect(loader).not.toHaveBeenCalled();
    expect(failures).toEqual(['lease']);
    await misses('denied', 5);
    // The same commands per miss as under OOM: GET-first reads again.
    const after = await misses('cold', 10);
    expect(after.get).toBe(20);
    expect(after.evalsha).toBe(10);
    expect(after.set).toBeUndefined();

    // 30 s on, a GET-first read turns lease-first back on; the next cold key's lease read is
    // refused again. Its GET finds nothing, so it loads without a second lease (which would be
    // refused too): one refused lease, one refused write, and failOpen counts the read once.
    clock.advance(30_000);
    await misses('turn-on', 1);
    failures.length = 0;
    const failOpen = cache.stats().failOpen;
    const cold = await misses('cold-again', 1);
    expect(failures).toEqual(['lease', 'set']);
    expect(cache.stats().failOpen - failOpen).toBe(2);
    // The retried GET and the write script's own GET.
    expect(cold.get).toBe(2);
    expect(cold.evalsha).toBe(1);
  });
});
