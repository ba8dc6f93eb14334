/**
 * Cluster clients for the cluster suites, built the way a user builds them (library defaults),
 * and closed by {@link closeClients}.
 */
import { Cluster } from 'ioredis';
import { createCluster } from 'redis';
import { ioredisStore } from '../../src/stores/ioredis.js';
import { redisStore } from '../../src/stores/redis.js';
import type { RedisConnectionOptions, RedisStore } from '../../src/stores/redis-store.js';
import type { LocalCluster } from '../helpers/cluster.js';

export type Driver = 'redis' | 'ioredis';
export const DRIVERS: readonly Driver[] = ['redis', 'ioredis'];

const closers: (() => Promise<unknown>)[] = [];

/** Closes every client and store made here (call from `afterAll`/`afterEach`). */
export async function closeClients(): Promise<void> {
  for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
}

/** A node-redis `createCluster` client, connected. */
export async function nodeRedisCluster(cluster: LocalCluster) {
  const client = createCluster({ rootNodes: [...cluster.rootNodes] });
  client.on('error', () => undefined);
  await client.connect();
  closers.push(async () => (client.isOpen ? client.destroy() : undefined));
  return client;
}

/** An ioredis `Cluster`, connected. */
export async function ioredisCluster(cluster: LocalCluster): Promise<Cluster> {
  const client = new Cluster([...cluster.startupNodes], { lazyConnect: true });
  client.on('error', () => undefined);
  await client.connect();
  closers.push(async () => client.disconnect());
  return client;
}

/** A Larder store on its own cluster client (as another process would have). */
export async function clusterStore(
  cluster: LocalCluster,
  driver: Driver,
  options: RedisConnectionOptions = {},
): Promise<RedisStore> {
  const store =
    driver === 'redis'
      ? redisStore({ client: await nodeRedisCluster(cluster), ...options })
      : ioredisStore({ client: await ioredisCluster(cluster), ...options });
  closers.push(() => store.close());
  return store;
}
