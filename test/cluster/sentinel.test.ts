/**
 * Sentinel: one master, one replica and three real `redis-server --sentinel` processes. Both
 * drivers take a Sentinel-managed client (node-redis `createSentinel`, ioredis `new Redis({
 * sentinels, name })`); the master is killed while requests flow, the sentinels promote the
 * replica, and Larder lives through it like an outage: every request answered (fail-open), the
 * breaker opens and closes again, and the cache serves from the new master without a restart.
 */
import { Redis } from 'ioredis';
import { createSentinel } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCache, type Cache } from '../../src/index.js';
import { ioredisStore } from '../../src/stores/ioredis.js';
import { redisStore } from '../../src/stores/redis.js';
import type { RedisStore } from '../../src/stores/redis-store.js';
import { startSentinel, until, type LocalSentinel } from '../helpers/cluster.js';
import { uniqueNamespace } from '../helpers/redis.js';
import { DRIVERS, type Driver } from './clients.js';
import { startRequestLoops } from '../helpers/request-loops.js';

let group: LocalSentinel;
const closers: (() => Promise<unknown>)[] = [];
beforeAll(async () => {
  group = await startSentinel({ replicas: 1, downAfter: 1_000 });
});
afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  await group?.stop();
});

async function sentinelStore(driver: Driver): Promise<RedisStore> {
  let store: RedisStore;
  if (driver === 'redis') {
    const client = createSentinel({ name: group.name, sentinelRootNodes: [...group.sentinels] });
    client.on('error', () => undefined);
    await client.connect();
    closers.push(() => client.destroy());
    store = redisStore({ client });
  } else {
    const client = new Redis({ sentinels: [...group.sentinels], name: group.name, lazyConnect: true });
    client.on('error', () => undefined);
    await client.connect();
    closers.push(async () => client.disconnect());
    store = ioredisStore({ client });
  }
  closers.push(() => store.close());
  return store;
}

interface Flow {
  driver: Driver;
  cache: Cache;
  store: RedisStore;
  requests: number;
  failures: unknown[];
  wrong: number;
  storeErrors: number;
}

const valueOf = (key: string) => `value of ${key}`;

describe('Sentinel', () => {
  it('the master is killed under load: no request fails, the breaker opens and closes, Larder follows the new master', async () => {
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
    const flows: Flow[] = [];
    for (const driver of DRIVERS) {
      const store = await sentinelStore(driver);
      expect(store.status().details).toMatchObject({ topology: 'sentinel', cluster: false });
      expect(store.pubSubKind('auto')).toBe('classic');
      const cache = createCache({ namespace: uniqueNamespace(`sn-${driver}`), store });
      const flow: Flow = { driver, cache, store, requests: 0, failures: [], wrong: 0, storeErrors: 0 };
      cache.on('store-error', () => flow.storeErrors++);
      await cache.setMany(keys.map((key) => ({ key, value: valueOf(key), ttl: 600_000 })));
      flows.push(flow);
    }
    const heard = new Map<Driver, string[]>();
    for (const flow of flows) {
      const got: string[] = [];
      heard.set(flow.driver, got);
      await flow.store.subscribe('sentinel-test', { message: (m) => got.push(m) }, { mode: 'auto' });
    }

    const loops = startRequestLoops(flows, keys, valueOf, { perTarget: 6, batchEvery: 4, batchSize: 8 });

    await until(async () => flows.every((f) => f.requests > 200), 10_000, 'requests to flow');
    const killedAt = Date.now();
    const old = await group.killMaster();
    const { port, ms } = await group.waitForFailover(old);
    console.log(`sentinel: master ${old} killed, ${port} promoted after ${ms} ms`);

    await Promise.all(
      flows.map(async (flow) => {
        await until(
          async () => (await flow.cache.get(keys[0]!)) === valueOf(keys[0]!) && flow.store.status().breaker === 'closed',
          30_000,
          `${flow.driver} to read from the new master`,
        );
        await until(
          async () => {
            await flow.cache.set('written-after', flow.driver);
            return (await flow.cache.get('written-after')) === flow.driver;
          },
          30_000,
          `${flow.driver} to write to the new master`,
        );
        console.log(`${flow.driver}: served again ${Date.now() - killedAt} ms after the kill`);
      }),
    );
    // The write went to the new master, not somewhere else.
    const owner = await group.command<string | null>(port, ['GET', `${flows[0]!.cache.prefix}written-after`]);
    expect(owner).not.toBeNull();
    const before = flows.map((f) => f.requests);
    await until(async () => flows.every((f, i) => f.requests > before[i]! + 100), 10_000, 'requests after recovery');
    await loops.stop();

    for (const flow of flows) {
      // Pub/sub followed the new master too.
      await until(
        async () => {
          await flow.store.publish('sentinel-test', `after-${flow.driver}`, { mode: 'auto' }).catch(() => undefined);
          return heard.get(flow.driver)!.includes(`after-${flow.driver}`);
        },
        20_000,
        `${flow.driver} pub/sub after the failover`,
      );
      console.log(
        `${flow.driver}: ${flow.requests} requests, ${flow.storeErrors} store errors absorbed, breaker opened ${flow.store.breakerOpens} times`,
      );
      expect(flow.failures).toEqual([]);
      expect(flow.wrong).toBe(0);
      expect(flow.storeErrors).toBeGreaterThan(0);
      expect(flow.store.breakerOpens).toBeGreaterThan(0);
      expect(flow.store.status().breaker).toBe('closed');
    }
  });
});
