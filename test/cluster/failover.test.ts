/**
 * Failover on a real local Redis Cluster: a master is killed (SIGKILL) while both drivers serve
 * requests; its replica is promoted by the cluster. No request fails because of it (fail-open:
 * `getOrSet` answers from the loader while the slots are unreachable), and Larder serves from the
 * new master again without a restart, pub/sub included.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCache, type Cache } from '../../src/index.js';
import type { RedisStore } from '../../src/stores/redis-store.js';
import { slotOf } from '../../src/stores/slot.js';
import { startCluster, until, type LocalCluster } from '../helpers/cluster.js';
import { uniqueNamespace } from '../helpers/redis.js';
import { closeClients, clusterStore, DRIVERS, type Driver } from './clients.js';
import { startRequestLoops } from '../helpers/request-loops.js';

let cluster: LocalCluster;
beforeAll(async () => {
  // Failure detection in 1 s instead of the default 15 s: the test waits for it.
  cluster = await startCluster({ nodeTimeout: 1_000 });
});
afterAll(async () => {
  await closeClients();
  await cluster?.stop();
});

interface Flow {
  driver: Driver;
  cache: Cache;
  store: RedisStore;
  requests: number;
  failures: unknown[];
  wrong: number;
  storeErrors: number;
  lastStoreError: number;
  errorKinds: Map<string, number>;
}

const valueOf = (key: string) => `value of ${key}`;

describe('failover', () => {
  it('kill a master under load: no request fails, a replica takes over, Larder recovers without a restart', async () => {
    const keys = Array.from({ length: 300 }, (_, i) => `k${i}`);
    // Read and rewritten by the recovery checks only: the request loops must not see 'rewritten'.
    const probes = Array.from({ length: 100 }, (_, i) => `probe${i}`);
    const flows: Flow[] = [];
    for (const driver of DRIVERS) {
      const store = await clusterStore(cluster, driver);
      const cache = createCache({ namespace: uniqueNamespace(`fo-${driver}`), store });
      const flow: Flow = {
        driver,
        cache,
        store,
        requests: 0,
        failures: [],
        wrong: 0,
        storeErrors: 0,
        lastStoreError: 0,
        errorKinds: new Map(),
      };
      cache.on('store-error', ({ error }) => {
        flow.storeErrors++;
        flow.lastStoreError = Date.now();
        const cause = (error as { cause?: unknown }).cause;
        const kind = `${(error as Error).name}: ${(cause instanceof Error ? cause.message : (error as Error).message).slice(0, 60)}`;
        flow.errorKinds.set(kind, (flow.errorKinds.get(kind) ?? 0) + 1);
      });
      await cache.setMany([...keys, ...probes].map((key) => ({ key, value: valueOf(key), ttl: 600_000 })));
      flows.push(flow);
    }
    // The victim: the master serving the first key of the first cache.
    const victim = await cluster.ownerOf(slotOf(flows[0]!.cache.prefix + keys[0]));
    const onVictim = (flow: Flow, among = keys) =>
      among.filter((key) =>
        victim.slots.some(([from, to]) => slotOf(flow.cache.prefix + key) >= from && slotOf(flow.cache.prefix + key) <= to),
      );
    for (const flow of flows) {
      expect(onVictim(flow).length).toBeGreaterThan(50);
      expect(onVictim(flow, probes).length).toBeGreaterThan(0);
    }

    // Pub/sub on both kinds, with channels on the victim's slots.
    const channel = (() => {
      for (let i = 0; ; i++) {
        const c = `${uniqueNamespace('fo-ch')}:${i}`;
        if (victim.slots.some(([from, to]) => slotOf(c) >= from && slotOf(c) <= to)) return c;
      }
    })();
    const heard = new Map<string, string[]>();
    for (const flow of flows) {
      for (const mode of ['classic', 'auto'] as const) {
        const got: string[] = [];
        heard.set(`${flow.driver}/${mode}`, got);
        await flow.store.subscribe(channel, { message: (m) => got.push(m) }, { mode });
      }
    }

    const loops = startRequestLoops(flows, keys, valueOf);

    await until(async () => flows.every((f) => f.requests > 200), 10_000, 'requests to flow');
    const killedAt = Date.now();
    await cluster.kill(victim.port);
    const { promoted, ms } = await cluster.waitForFailover(victim.port);
    console.log(`failover: master ${victim.port} killed, replica ${promoted} promoted after ${ms} ms`);

    // Recovery without a restart: reads of the failed-over slots hit again, writes land, the breaker is closed.
    await Promise.all(
      flows.map(async (flow) => {
        const probe = onVictim(flow, probes)[0]!;
        await until(
          async () =>
            (await flow.cache.get(probe)) === valueOf(probe) && flow.store.status().breaker === 'closed' ? true : undefined,
          30_000,
          `${flow.driver} to read the promoted replica`,
        );
        await until(
          async () => {
            await flow.cache.set(probe, 'rewritten');
            return (await flow.cache.get(probe)) === 'rewritten';
          },
          30_000,
          `${flow.driver} to write to the promoted replica`,
        );
        await flow.cache.set(probe, valueOf(probe));
        console.log(`${flow.driver}: served again ${Date.now() - killedAt} ms after the kill`);
      }),
    );
    const before = flows.map((f) => f.requests);
    await until(async () => flows.every((f, i) => f.requests > before[i]! + 100), 10_000, 'requests after recovery');
    await loops.stop();

    // Pub/sub came back on both kinds (the subscriptions followed the topology by themselves).
    for (const flow of flows) {
      for (const mode of ['classic', 'auto'] as const) {
        const got = heard.get(`${flow.driver}/${mode}`)!;
        await until(
          async () => {
            await flow.store.publish(channel, `after-${mode}`, { mode }).catch(() => undefined);
            return got.includes(`after-${mode}`);
          },
          20_000,
          `${flow.driver} ${mode} pub/sub after the failover`,
        );
      }
    }

    for (const flow of flows) {
      console.log(
        `${flow.driver}: ${flow.requests} requests, ${flow.storeErrors} store errors absorbed (last ${flow.lastStoreError - killedAt} ms after the kill), breaker opened ${flow.store.breakerOpens} times`,
        flow.errorKinds,
      );
      expect(flow.failures).toEqual([]);
      expect(flow.wrong).toBe(0);
      // The outage was real and absorbed, not missed.
      expect(flow.storeErrors + flow.cache.stats().failOpen).toBeGreaterThan(0);
    }
    await cluster.restart(victim.port);
    // It comes back believing it is a master, until gossip tells it about the failover.
    await until(
      async () => ((await cluster.nodes()).find((n) => n.port === victim.port)?.role === 'replica' ? true : undefined),
      15_000,
      'the old master to rejoin as a replica',
    );
  });
});
