/**
 * One harness per store driver, so behaviour suites run unchanged against node-redis, ioredis
 * and the memory store. `raw` reads and writes under the cache, for assertions and for planting
 * corrupt entries.
 */
import { memoryStore, type MemoryStore } from '../../src/stores/memory.js';
import { ioredisStore } from '../../src/stores/ioredis.js';
import { redisStore } from '../../src/stores/redis.js';
import type { RedisConnectionOptions } from '../../src/stores/redis-store.js';
import type { Store } from '../../src/stores/store.js';
import type { Clock } from '../../src/core/clock.js';
import { createClientPool } from 'redis';
import { ioredis, nodeRedis, REDIS_URL } from './redis.js';

/**
 * `redis-pool`: node-redis through a `createClientPool()` pool; `ioredis-auto`: ioredis with
 * `enableAutoPipelining` (batches then go through its queue, not a pipeline object).
 */
export type DriverName = 'memory' | 'redis' | 'redis-pool' | 'ioredis' | 'ioredis-auto';

export interface RawAccess {
  get(key: string): Promise<Buffer | undefined>;
  set(key: string, value: string | Buffer, ttlMs?: number): Promise<void>;
  /** ms until expiry; `Infinity` without TTL; `undefined` when absent. */
  ttl(key: string): Promise<number | undefined>;
  keys(prefix: string): Promise<string[]>;
}

export interface Harness {
  readonly driver: DriverName;
  /** A store for a new cache (on the shared Redis, or a new memory store). */
  store(options?: RedisConnectionOptions & { clock?: Clock }): Promise<Store>;
  readonly raw: RawAccess;
  /** Closes everything the harness opened. */
  close(): Promise<void>;
}

export async function harness(driver: DriverName, url = REDIS_URL): Promise<Harness> {
  if (driver === 'memory') return memoryHarness();
  const inspector = await nodeRedis(url);
  const closers: (() => Promise<unknown>)[] = [() => inspector.close()];
  const raw: RawAccess = {
    get: async (key) => (await inspector.withTypeMapping({ 36: Buffer }).get(key)) ?? undefined,
    set: async (key, value, ttlMs) => {
      if (ttlMs === undefined) await inspector.set(key, value);
      else await inspector.set(key, value, { PX: ttlMs });
    },
    ttl: async (key) => {
      const pttl = await inspector.pTTL(key);
      return pttl === -2 ? undefined : pttl === -1 ? Infinity : pttl;
    },
    keys: async (prefix) => {
      const keys: string[] = [];
      for await (const batch of inspector.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...batch);
      return keys;
    },
  };
  return {
    driver,
    raw,
    store: async (options = {}) => {
      if (driver === 'redis') {
        const client = await nodeRedis(url);
        closers.push(() => client.close());
        return redisStore({ client, ...options });
      }
      if (driver === 'redis-pool') {
        const pool = createClientPool({ url, socket: { reconnectStrategy: 50 } }, { minimum: 1, maximum: 8 });
        pool.on('error', () => undefined);
        await pool.connect();
        closers.push(() => pool.close());
        return redisStore({ client: pool, ...options });
      }
      const client = await ioredis(url, { enableAutoPipelining: driver === 'ioredis-auto' });
      closers.push(() => client.quit());
      return ioredisStore({ client, ...options });
    },
    close: async () => {
      await Promise.all(closers.map((close) => close().catch(() => undefined)));
    },
  };
}

function memoryHarness(): Harness {
  let current: MemoryStore = memoryStore();
  const raw: RawAccess = {
    get: async (key) => {
      const value = await current.get(key, true);
      return value === undefined ? undefined : Buffer.from(value as Uint8Array);
    },
    set: async (key, value, ttlMs) => current.set(key, value, ttlMs ?? Infinity),
    ttl: async (key) => current.remainingTtl(key),
    keys: async () => [],
  };
  return {
    driver: 'memory',
    raw,
    store: async (options = {}) => {
      current = memoryStore(options.clock === undefined ? {} : { clock: options.clock });
      return current;
    },
    close: async () => undefined,
  };
}
