/**
 * The same cache-aside call through Larder and through its peers, for side-by-side benchmarks:
 * BentoCache (`getOrSet`) and cache-manager (`wrap`) on Redis (and BentoCache's memory L1).
 * Peers run on the same Redis and, where they can, on the same client library.
 */
import { BentoCache, bentostore } from 'bentocache';
import { memoryDriver } from 'bentocache/drivers/memory';
import { redisDriver } from 'bentocache/drivers/redis';
import { createCache as createCacheManager } from 'cache-manager';
import KeyvRedis from '@keyv/redis';
import { Redis } from 'ioredis';
import { Keyv } from 'keyv';
import { createClient } from 'redis';
import { createCache } from 'larder';
import { redisStore } from 'larder/redis';

export type Library = 'larder' | 'bentocache' | 'cache-manager';
export const LIBRARIES: readonly Library[] = ['larder', 'bentocache', 'cache-manager'];

export interface Contender {
  getOrSet<T>(key: string, loader: () => Promise<T>, ttlMs: number): Promise<T>;
  close(): Promise<void>;
}

/** A Redis-backed cache of `library` in namespace `ns`; `l1` adds each library's memory tier. */
export async function contender(library: Library, url: string, ns: string, { l1 = false } = {}): Promise<Contender> {
  if (library === 'larder') {
    const client = createClient({ url });
    await client.connect();
    const cache = createCache({ namespace: ns, store: redisStore({ client }), ...(l1 ? { l1: {} } : {}) });
    return {
      getOrSet: (key, loader, ttl) => cache.getOrSet(key, loader, { ttl }),
      close: async () => {
        await cache.close();
        await client.close();
      },
    };
  }
  if (library === 'bentocache') {
    const io = new Redis(url);
    const store = bentostore();
    if (l1) store.useL1Layer(memoryDriver({ maxItems: 10_000 }));
    store.useL2Layer(redisDriver({ connection: io, prefix: ns }));
    const bento = new BentoCache({ default: 'store', stores: { store } });
    return {
      getOrSet: (key, loader, ttl) => bento.getOrSet({ key, ttl, factory: loader }),
      close: async () => {
        await bento.disconnectAll();
        io.disconnect();
      },
    };
  }
  const cm = createCacheManager({ stores: [new Keyv({ store: new KeyvRedis(url), namespace: ns })] });
  return {
    getOrSet: (key, loader, ttl) => cm.wrap(key, loader, ttl),
    close: async () => {
      await cm.disconnect();
    },
  };
}
