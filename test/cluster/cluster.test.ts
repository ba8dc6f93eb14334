/**
 * Larder on a real local Redis Cluster (3 masters, 3 replicas, started by
 * `scripts/redis-cluster.sh`): the behaviours that touch several keys, for both drivers. Round
 * trips are counted with `INFO commandstats` on the masters, not timed. Also: the pub/sub modes
 * on a single Redis, where `auto` means classic.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createCache, type Cache, type CacheOptions } from '../../src/index.js';
import { createSessions } from '../../src/sessions/index.js';
import { ioredisStore } from '../../src/stores/ioredis.js';
import { redisStore } from '../../src/stores/redis.js';
import type { RedisStore } from '../../src/stores/redis-store.js';
import { slotOf } from '../../src/stores/slot.js';
import { CLUSTER_SCRIPT, startCluster, type LocalCluster } from '../helpers/cluster.js';
import { eventually, ioredis, nodeRedis, uniqueNamespace } from '../helpers/redis.js';
import { killWorkers, startWorker } from '../helpers/workers.js';
import { closeClients, clusterStore, DRIVERS, type Driver } from './clients.js';

let cluster: LocalCluster;
beforeAll(async () => {
  cluster = await startCluster();
});
afterAll(async () => {
  await closeClients();
  await cluster?.stop();
});

const caches: Cache[] = [];
afterEach(async () => {
  await Promise.all(caches.splice(0).map((c) => c.close()));
});

async function cacheOn(driver: Driver, options: Omit<CacheOptions, 'store'> = {}): Promise<{ cache: Cache; store: RedisStore }> {
  const store = await clusterStore(cluster, driver);
  const cache = createCache({ namespace: uniqueNamespace(`c-${driver}`), ...options, store });
  caches.push(cache);
  return { cache, store };
}

/** Calls per command on all masters while `action` runs. */
async function countCommands(action: () => Promise<unknown>): Promise<Record<string, number>> {
  await cluster.resetStats();
  await action();
  return Object.fromEntries(await cluster.masterStats());
}

const slotsOf = (prefix: string, keys: readonly string[]) => new Set(keys.map((k) => slotOf(prefix + k))).size;

describe('scripts/redis-cluster.sh', () => {
  it('reports every node up, and `start` again reuses the running cluster', async () => {
    const env = { ...process.env, LARDER_CLUSTER_DIR: cluster.dir };
    const run = promisify(execFile);
    const status = await run(CLUSTER_SCRIPT, ['status'], { env });
    const lines = status.stdout.trim().split('\n');
    expect(lines).toHaveLength(6);
    expect(lines.filter((l) => l.includes('role=master'))).toHaveLength(3);
    expect(lines.every((l) => l.includes('cluster_state:ok'))).toBe(true);
    const again = await run(CLUSTER_SCRIPT, ['start'], { env });
    expect(again.stdout.trim()).toBe(cluster.ports.join(' '));
    expect(new Set(cluster.ports).size).toBe(6);
  });
});

describe.each(DRIVERS)('a cache on the cluster over %s', (driver) => {
  it('getMany/setMany/deleteMany across slots: one command per slot, none refused', async () => {
    const { cache } = await cacheOn(driver);
    const keys = Array.from({ length: 100 }, (_, i) => `user:${i}`);
    const slots = slotsOf(cache.prefix, keys);
    // Spread over 90 slots or more, not always 100: CRC16 is linear, so for about 1 random prefix
    // in 100 some of the ten one-digit keys land on the slots of two-digit ones (never more).
    expect(slots).toBeGreaterThanOrEqual(90);

    const set = await countCommands(() => cache.setMany(keys.map((key, i) => ({ key, value: { i } }))));
    expect(set.set).toBe(100);
    let values: unknown[] = [];
    const get = await countCommands(async () => (values = await cache.getMany(keys)));
    expect(values).toEqual(keys.map((_, i) => ({ i })));
    // One read per slot: GET for a slot holding one of the keys, MGET for several.
    expect((get.get ?? 0) + (get.mget ?? 0)).toBe(slots);
    // Concurrent single reads are not coalesced on a cluster (an MGET per slot would be a GET per key).
    const single = await countCommands(async () => (values = await Promise.all(keys.map((k) => cache.getOrSet(k, () => 'x')))));
    expect(values).toEqual(keys.map((_, i) => ({ i })));
    expect(single.get).toBe(100);
    expect(single.mget).toBeUndefined();
    const del = await countCommands(() => cache.deleteMany(keys));
    expect(del.unlink).toBe(slots);
    expect(await cache.getMany(keys)).toEqual(keys.map(() => undefined));
    expect(cache.stats().failOpen).toBe(0);
  });

  it('keys sharing a {hash tag} share a slot: one MGET and one UNLINK for all of them', async () => {
    const { cache } = await cacheOn(driver);
    const keys = Array.from({ length: 50 }, (_, i) => `{user:42}:item:${i}`);
    expect(slotsOf(cache.prefix, keys)).toBe(1);
    await cache.setMany(keys.map((key, i) => ({ key, value: i })));
    let values: unknown[] = [];
    expect((await countCommands(async () => (values = await cache.getMany(keys)))).mget).toBe(1);
    expect(values).toEqual(keys.map((_, i) => i));
    expect((await countCommands(() => cache.deleteMany(keys))).unlink).toBe(1);
  });

  it('getOrSetMany across slots: one read per slot, the loader once with only the misses', async () => {
    const { cache } = await cacheOn(driver);
    const keys = Array.from({ length: 60 }, (_, i) => `p:${i}`);
    await cache.setMany(keys.filter((_, i) => i % 3 === 0).map((key) => ({ key, value: `cached ${key}` })));
    const loader = vi.fn(async (missing: string[]) => new Map(missing.map((k) => [k, `loaded ${k}`])));
    const values = await cache.getOrSetMany(keys, loader);
    expect(values).toEqual(keys.map((k, i) => (i % 3 === 0 ? `cached ${k}` : `loaded ${k}`)));
    expect(loader).toHaveBeenCalledTimes(1);
    expect(loader.mock.calls[0]![0]).toEqual(keys.filter((_, i) => i % 3 !== 0));
    expect(await cache.getOrSetMany(keys, loader)).toEqual(values);
    expect(loader).toHaveBeenCalledTimes(1);
  });

  it('clear() empties the namespace on every master, and nothing else', async () => {
    const { cache } = await cacheOn(driver);
    const { cache: neighbour } = await cacheOn(driver);
    const keys = Array.from({ length: 600 }, (_, i) => `k${i}`);
    await cache.setMany(keys.map((key) => ({ key, value: 1 })));
    await neighbour.set('stays', 1);
    const perMaster = await Promise.all(
      (await cluster.masters()).map(async (m) => {
        let found = 0;
        let cursor = '0';
        do {
          const [next, batch] = await cluster.command<[string, string[]]>(m.port, [
            'SCAN',
            cursor,
            'MATCH',
            `${cache.prefix}*`,
            'COUNT',
            '1000',
          ]);
          found += batch.length;
          cursor = next;
        } while (cursor !== '0');
        return found;
      }),
    );
    expect(perMaster).toHaveLength(3);
    expect(perMaster.every((n) => n > 100)).toBe(true);
    const used = await countCommands(async () => expect(await cache.clear()).toBe(600));
    expect(used.keys ?? 0).toBe(0);
    expect(used.scan).toBeGreaterThanOrEqual(3);
    expect(await cache.getMany(keys.slice(0, 50))).toEqual(keys.slice(0, 50).map(() => undefined));
    expect(await neighbour.get('stays')).toBe(1);
  });

  it('single flight across instances on many slots: each key loaded once (leases, conditional scripts)', async () => {
    const a = (await cacheOn(driver)).cache;
    const b = createCache({ namespace: a.prefix.split(':')[0]!, store: await clusterStore(cluster, driver) });
    caches.push(b);
    const loads = new Map<string, number>();
    const loader = (key: string) => async () => {
      loads.set(key, (loads.get(key) ?? 0) + 1);
      await new Promise((resolve) => setTimeout(resolve, 100));
      return `value of ${key}`;
    };
    const keys = Array.from({ length: 12 }, (_, i) => `hot:${i}`);
    const calls = keys.flatMap((key) => Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).getOrSet(key, loader(key))));
    const results = await Promise.all(calls);
    expect(results).toEqual(keys.flatMap((key) => Array.from({ length: 20 }, () => `value of ${key}`)));
    expect([...loads.values()]).toEqual(keys.map(() => 1));
    // The waiting instance was woken by the holder's script (PUBLISH on the key's node, broadcast
    // by the cluster), not only by polling.
    expect(a.stats().failOpen + b.stats().failOpen).toBe(0);
    expect(await b.delete('hot:0')).toBe(true);
  });

  it("a lease holder's write wakes waiters subscribed on any node (PUBLISH from a script)", async () => {
    const holder = await clusterStore(cluster, driver);
    const waiter = await clusterStore(cluster, driver === 'redis' ? 'ioredis' : 'redis');
    const channel = `larder:${uniqueNamespace('wake')}:written`;
    const heard: string[] = [];
    const subscription = await waiter.subscribe(channel, { message: (m) => heard.push(m) });
    // One key per master, so every node's script publishes once.
    const keys: string[] = [];
    const owners = new Set<number>();
    for (let i = 0; owners.size < 3; i++) {
      const key = `${channel}:k${i}`;
      const owner = (await cluster.ownerOf(slotOf(key))).port;
      if (owners.has(owner)) continue;
      owners.add(owner);
      keys.push(key);
    }
    for (const key of keys) {
      expect(await holder.lease([{ key, value: 'p:lease-1', ttl: 5_000 }], false)).toEqual([undefined]);
      expect(await holder.mark(key, 'p:lease-1')).toBe(true);
      expect(
        await holder.setIf([{ key, value: 'v:done', ttl: 5_000, expect: 'p:lease-1', notify: { channel, message: key } }]),
      ).toEqual([true]);
    }
    await eventually(() => heard.length === 3, 5_000, 'three wake-ups');
    expect(heard.sort()).toEqual([...keys].sort());
    await subscription.unsubscribe();
  });

  it('pub/sub: sharded channels (auto on a cluster) and classic ones, across drivers and nodes', async () => {
    const subscriber = await clusterStore(cluster, driver);
    const publishers = [await clusterStore(cluster, 'redis'), await clusterStore(cluster, 'ioredis')];
    expect(subscriber.pubSubKind('auto')).toBe('sharded');
    expect(subscriber.pubSubKind()).toBe('classic');
    const ns = uniqueNamespace('ch');
    // Enough channels to land on every master.
    const channels = Array.from({ length: 9 }, (_, i) => `${ns}:${i}`);
    expect(new Set(await Promise.all(channels.map(async (c) => (await cluster.ownerOf(slotOf(c))).port))).size).toBe(3);
    const heard = { sharded: [] as string[], classic: [] as string[] };
    const subscriptions = [];
    for (const channel of channels) {
      subscriptions.push(await subscriber.subscribe(channel, { message: (m) => heard.sharded.push(m) }, { mode: 'auto' }));
      subscriptions.push(await subscriber.subscribe(channel, { message: (m) => heard.classic.push(m) }));
    }
    const used = await countCommands(async () => {
      for (const [i, publisher] of publishers.entries()) {
        for (const channel of channels) {
          await publisher.publish(channel, `s${i}:${channel}`, { mode: 'auto' });
          await publisher.publish(channel, `c${i}:${channel}`);
        }
      }
      await eventually(() => heard.sharded.length === 18 && heard.classic.length === 18, 5_000, 'every message');
    });
    // Sharded and classic channels are separate: each subscriber got only its own kind.
    expect(heard.sharded.every((m) => m.startsWith('s'))).toBe(true);
    expect(heard.classic.every((m) => m.startsWith('c'))).toBe(true);
    expect(used.spublish).toBe(18);
    await Promise.all(subscriptions.map((s) => s.unsubscribe()));
    // Unsubscribed: nothing more arrives.
    await publishers[0]!.publish(channels[0]!, 'late', { mode: 'auto' });
    await publishers[0]!.publish(channels[0]!, 'late');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(heard.sharded).toHaveLength(18);
    expect(heard.classic).toHaveLength(18);
  });

  it('tags and the bus across two instances: invalidation reaches the other L1', async () => {
    const options = { l1: {}, bus: { heartbeat: 100 } } as const;
    const busUp = (cache: Cache) => new Promise<void>((resolve) => cache.on('bus', ({ connected }) => connected && resolve()));
    const { cache: a } = await cacheOn(driver, options);
    const aUp = busUp(a);
    const b = createCache({ namespace: a.prefix.split(':')[0]!, ...options, store: await clusterStore(cluster, driver) });
    caches.push(b);
    await Promise.all([aUp, busUp(b)]);
    const keys = Array.from({ length: 20 }, (_, i) => `t${i}`);
    await Promise.all(keys.map((key) => a.getOrSet(key, () => `v1 ${key}`, { tags: ['team:1'] })));
    // B fills its L1 from the store.
    expect(await Promise.all(keys.map((key) => b.getOrSet(key, () => 'never', { tags: ['team:1'] })))).toEqual(
      keys.map((k) => `v1 ${k}`),
    );
    await a.invalidateTags(['team:1']);
    await eventually(
      async () => (await b.getOrSet('t3', () => 'v2', { tags: ['team:1'] })) === 'v2',
      5_000,
      'the tag invalidation on B',
    );
    const used = await countCommands(async () => {
      await a.set('t4', 'v3');
      await eventually(async () => (await b.get('t4')) === 'v3', 5_000, 'the bus eviction on B');
    });
    // The bus rides sharded pub/sub on a cluster: each message costs one shard, not every node.
    expect(used.spublish).toBeGreaterThanOrEqual(1);
    expect(used.publish ?? 0).toBe(0);
  });

  it("sessions: a user's sessions and index stay in one slot; create, list and revokeAll across users", async () => {
    const store = await clusterStore(cluster, driver);
    const sessions = createSessions({
      secret: 'cluster-test-secret-0123456789-abcdefghij',
      store,
      namespace: uniqueNamespace('s'),
    });
    try {
      const users = Array.from({ length: 12 }, (_, i) => `user-${i}`);
      for (const user of users) await Promise.all([sessions.create(user), sessions.create(user), sessions.create(user)]);
      for (const user of users) expect(await sessions.listForUser(user)).toHaveLength(3);
      expect(await sessions.revokeAllForUser(users[0]!)).toBe(3);
      expect(await sessions.listForUser(users[0]!)).toEqual([]);
      expect(await sessions.listForUser(users[1]!)).toHaveLength(3);
      const { token } = await sessions.create(users[0]!);
      expect(await sessions.validate(token)).toMatchObject({ valid: true });
    } finally {
      await sessions.close();
    }
  });
});

async function singleStore(driver: Driver): Promise<{ store: RedisStore; close: () => Promise<unknown> }> {
  if (driver === 'redis') {
    const client = await nodeRedis();
    return { store: redisStore({ client }), close: () => client.close() };
  }
  const client = await ioredis();
  return { store: ioredisStore({ client }), close: () => client.quit() };
}

describe.each(DRIVERS)('pub/sub modes on a single Redis over %s', (driver) => {
  it("'auto' is classic there, and explicit 'sharded' works too (its own channel namespace)", async () => {
    const { store, close } = await singleStore(driver);
    try {
      expect(store.pubSubKind('auto')).toBe('classic');
      const channel = uniqueNamespace('single-ch');
      const heard: string[] = [];
      const subs = [
        await store.subscribe(channel, { message: (m) => heard.push(`classic ${m}`) }, { mode: 'auto' }),
        await store.subscribe(channel, { message: (m) => heard.push(`sharded ${m}`) }, { mode: 'sharded' }),
      ];
      await store.publish(channel, 'a');
      await store.publish(channel, 'b', { mode: 'sharded' });
      await eventually(() => heard.length === 2, 5_000, 'both messages');
      expect(heard.sort()).toEqual(['classic a', 'sharded b']);
      await Promise.all(subs.map((s) => s.unsubscribe()));
    } finally {
      await store.close();
      await close();
    }
  });
});

describe('stampede across processes on the cluster', () => {
  afterEach(killWorkers);

  it('4 processes (2 node-redis, 2 ioredis) x 100 misses on one cold key: exactly 1 loader call', async () => {
    const namespace = uniqueNamespace('cstampede');
    const nodes = cluster.ports.slice(0, 3).join(',');
    const fleet = (['redis', 'ioredis', 'redis', 'ioredis'] as const).map((driver) =>
      startWorker('test/fixtures/stampede-worker.ts', {
        DRIVER: driver,
        NODES: nodes,
        NAMESPACE: namespace,
        CALLS: '100',
        LOCK_WAIT: '30000',
      }),
    );
    for (const w of fleet) expect(await w.next()).toBe('ready');
    for (const w of fleet) w.child.stdin.write('go\n');
    const reports = (await Promise.all(fleet.map((w) => w.next()))).map(
      (line) => JSON.parse(line) as { results: { value: string; loadedBy: number }[] },
    );
    const owner = await cluster.ownerOf(slotOf(`${namespace}:loader-calls`));
    expect(Number(await cluster.command<string>(owner.port, ['GET', `${namespace}:loader-calls`]))).toBe(1);
    const all = reports.flatMap((r) => r.results);
    expect(all).toHaveLength(400);
    expect(new Set(all.map((r) => `${r.value}/${r.loadedBy}`)).size).toBe(1);
  });
});
