/**
 * `getMany(100)` on a Redis Cluster vs on a single Redis, measured in the same run, per driver.
 *
 * The cluster (3 masters, 3 replicas) is started by `scripts/redis-cluster.sh` for this suite
 * and stopped at the end; the single Redis is a private `redis-server` with the same settings, so
 * both sides run the same binary on the same machine. A `getMany` of 100 keys on a cluster is one
 * `MGET` per hash slot (about 100 here), sent together; the third contender puts the 100 keys
 * under one `{hash tag}` (one slot, one `MGET`) to show what co-locating keys buys.
 */
import { Cluster, Redis } from 'ioredis';
import { createClient, createCluster } from 'redis';
import { createCache, type Cache } from 'larder';
import { ioredisStore } from 'larder/ioredis';
import { redisStore } from 'larder/redis';
import { startCluster } from '../test/helpers/cluster.js';
import { startRedis } from '../test/helpers/redis-server.js';
import { compare, fmt, ratio, sampleValue, table } from './harness.js';

interface Side {
  cache(namespace: string): Cache;
  close(): Promise<unknown>;
}

export async function benchCluster({ quick }: { quick: boolean }): Promise<string> {
  const rounds = quick ? 1 : 3;
  const durationMs = quick ? 700 : 1_500;
  const cluster = await startCluster();
  const single = await startRedis({ args: ['--repl-diskless-sync-delay', '0'] });
  const value = sampleValue(900);
  const keys = Array.from({ length: 100 }, (_, i) => `user:${i}`);
  const tagged = keys.map((k) => `{batch}:${k}`);
  const rows: string[][] = [];
  try {
    const drivers: Record<string, () => Promise<{ single: Side; cluster: Side }>> = {
      'node-redis': async () => {
        const one = await createClient({ url: single.url }).connect();
        const many = await createCluster({ rootNodes: [...cluster.rootNodes] }).connect();
        return {
          single: {
            cache: (namespace) => createCache({ namespace, store: redisStore({ client: one }) }),
            close: () => one.close(),
          },
          cluster: {
            cache: (namespace) => createCache({ namespace, store: redisStore({ client: many }) }),
            close: () => many.close(),
          },
        };
      },
      ioredis: async () => {
        const one = new Redis(single.url);
        const many = new Cluster([...cluster.startupNodes]);
        return {
          single: {
            cache: (namespace) => createCache({ namespace, store: ioredisStore({ client: one }) }),
            close: () => one.quit(),
          },
          cluster: {
            cache: (namespace) => createCache({ namespace, store: ioredisStore({ client: many }) }),
            close: () => many.quit(),
          },
        };
      },
    };
    for (const [name, connect] of Object.entries(drivers)) {
      const sides = await connect();
      const onSingle = sides.single.cache('bench-cluster');
      const onCluster = sides.cluster.cache('bench-cluster');
      for (const cache of [onSingle, onCluster]) {
        await cache.setMany([...keys, ...tagged].map((key) => ({ key, value, ttl: 600_000 })));
      }
      for (const concurrency of [1, 16]) {
        const results = await compare(
          [
            { name: 'single', op: () => onSingle.getMany(keys) },
            { name: 'cluster', op: () => onCluster.getMany(keys) },
            { name: 'tagged', op: () => onCluster.getMany(tagged) },
          ],
          { concurrency, durationMs, rounds },
        );
        const base = results.get('single')!;
        rows.push([
          name,
          String(concurrency),
          fmt(base),
          fmt(results.get('cluster')!),
          ratio(results.get('cluster')!, base),
          fmt(results.get('tagged')!),
          ratio(results.get('tagged')!, base),
        ]);
      }
      await Promise.all([onSingle.close(), onCluster.close()]);
      await Promise.all([sides.single.close(), sides.cluster.close()]);
    }
  } finally {
    await Promise.all([cluster.stop(), single.stop()]);
  }
  return [
    '### `getMany(100)`: Redis Cluster (3 masters) vs a single Redis, same machine, same run (900 B JSON values)\n',
    table(
      [
        'client',
        'concurrency',
        'single batches/s',
        'cluster batches/s',
        'cluster / single',
        'cluster, one {hash tag} batches/s',
        'tagged / single',
      ],
      rows,
    ),
    '\n100 keys span about 100 hash slots: one `MGET` per slot, pipelined per node. Keys under one `{hash tag}` share a slot: one `MGET`.',
  ].join('\n');
}
