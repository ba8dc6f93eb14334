/**
 * The invalidation bus on real Redis: heartbeats that do not fan out, publishes that fail and
 * are sent again (or collapse into a reset), `forceFresh` loads announced, and an L1 copy taken
 * back when the store refused the write it came from.
 */
import { describe, expect, it } from 'vitest';
import { createCache, type Cache, type CacheOptions, type Store } from '../src/index.js';
import { MAX_UNSENT } from '../src/bus/bus.js';
import { eventually, sleep, uniqueNamespace } from './helpers/redis.js';
import { driverFixture } from './helpers/driver-fixture.js';

/** A store whose PUBLISH on `channel` fails while `failing` is set: a blip on the command connection only. */
function flakyPublish(store: Store, channel: string): { store: Store; failing: boolean; failures: number } {
  const control = { store, failing: false, failures: 0 };
  control.store = new Proxy(store, {
    get(target, property, receiver) {
      if (property === 'publish') {
        return (ch: string, message: string, options?: unknown) => {
          if (control.failing && ch === channel) {
            control.failures++;
            return Promise.reject(new Error('injected: PUBLISH failed'));
          }
          return target.publish(ch, message, options as never);
        };
      }
      const value = Reflect.get(target, property, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return control;
}

for (const driver of ['redis', 'ioredis'] as const) {
  describe(`invalidation bus over ${driver}`, () => {
    const fixture = driverFixture(driver);
    const { caches, closers } = fixture;
    const store = () => fixture.store();

    /** An instance with an L1 whose bus is up. */
    async function instance(namespace: string, options: Omit<CacheOptions, 'store' | 'namespace'> = {}, on?: Store) {
      const cache = createCache({ namespace, l1: {}, bus: { heartbeat: 50 }, ...options, store: on ?? (await store()) });
      caches.push(cache);
      if (options.bus === false) return cache;
      const up = new Promise<void>((resolve) => cache.on('bus', ({ connected }) => connected && resolve()));
      await Promise.race([up, sleep(3_000)]);
      return cache;
    }

    /** Reads until `cache` serves `key` from its L1 (a late bus message may evict the first copy). */
    async function holdInL1(cache: Cache, key: string): Promise<void> {
      let tier = '';
      const onHit = (event: { key: string; tier: string }) => (tier = event.tier);
      cache.on('hit', onHit);
      try {
        await eventually(async () => {
          tier = 'loader';
          await cache.getOrSet(key, () => 'loaded');
          return tier === 'l1';
        });
      } finally {
        cache.off('hit', onHit);
      }
    }

    it('each instance hears only its own heartbeat: none on the shared channel', async () => {
      const namespace = uniqueNamespace('beat');
      const channel = `larder:bus:${namespace}`;
      const subscriber = fixture.inspector.duplicate();
      closers.push(() => subscriber.close());
      await subscriber.connect();
      const seen: string[] = [];
      await subscriber.subscribe(channel, (message) => seen.push(message));
      const instances = await Promise.all([instance(namespace), instance(namespace), instance(namespace)]);
      await sleep(300); // six heartbeats each
      await instances[0].set('k', 1);
      await eventually(() => seen.length > 0, 2_000, 'the invalidation');
      // One invalidation, no heartbeat (three instances at 50 ms would be ~18 messages here).
      expect(seen.map((m) => (JSON.parse(m) as unknown[])[0])).toEqual(['i']);
      // Three heartbeat channels, one subscriber each.
      const channels = await fixture.inspector.pubSubChannels(`{${channel}}:hb:*`);
      expect(channels).toHaveLength(3);
      const counts = await fixture.inspector.pubSubNumSub(channels);
      expect(Object.values(counts)).toEqual([1, 1, 1]);
    });

    it('a failed PUBLISH is sent again at the next heartbeat: the other L1 is not left stale', async () => {
      const namespace = uniqueNamespace('retry');
      const flaky = flakyPublish(await store(), `larder:bus:${namespace}`);
      const a = await instance(namespace, {}, flaky.store);
      const b = await instance(namespace);
      await a.set('k', 'v1');
      await holdInL1(b, 'k');
      flaky.failing = true;
      await a.set('k', 'v2');
      expect(flaky.failures).toBeGreaterThan(0);
      await sleep(120);
      // Not delivered yet: B still serves its copy (the staleness a lost message used to cause, for good).
      expect(await b.getOrSet('k', () => 'x')).toBe('v1');
      flaky.failing = false;
      await eventually(async () => (await b.getOrSet('k', () => 'x')) === 'v2', 2_000, 'the retried invalidation');
    });

    it(`past ${MAX_UNSENT} unsent messages, one reset makes the others drop their L1`, async () => {
      const namespace = uniqueNamespace('reset');
      const flaky = flakyPublish(await store(), `larder:bus:${namespace}`);
      const a = await instance(namespace, {}, flaky.store);
      const b = await instance(namespace);
      await b.set('other', 'kept in L2');
      await holdInL1(b, 'other');
      flaky.failing = true;
      // Each set goes out in its own tick, so each is a message of its own.
      for (let i = 0; i < MAX_UNSENT + 5; i++) {
        await a.set(`k${i}`, i);
        await new Promise((resolve) => setImmediate(resolve));
      }
      let resets = 0;
      b.on('hit', ({ key, tier }) => key.endsWith(':other') && tier === 'l2' && resets++);
      flaky.failing = false;
      // B dropped every copy, 'other' included, though A never touched it.
      await eventually(
        async () => {
          await b.getOrSet('other', () => 'x');
          return resets > 0;
        },
        3_000,
        'the reset',
      );
      expect(resets).toBeGreaterThan(0);
    });

    it('a forceFresh load is announced: other instances drop the value it replaced', async () => {
      const namespace = uniqueNamespace('force');
      const a = await instance(namespace);
      const b = await instance(namespace);
      await a.getOrSet('k', () => 'v1');
      await holdInL1(b, 'k');
      expect(await a.getOrSet('k', () => 'v2', { forceFresh: true })).toBe('v2');
      await eventually(async () => (await b.getOrSet('k', () => 'x')) === 'v2', 2_000, 'B to see the forced value');
    });

    it('a load whose write lost the race does not stay in its own L1', async () => {
      const namespace = uniqueNamespace('lost');
      // No bus: nothing but the failed compare-and-set can tell A that its copy is not in the store.
      const a = await instance(namespace, { bus: false });
      const b = await instance(namespace, { bus: false, l1: false });
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const loading = a.getOrSet('k', async () => {
        await gate;
        return 'loaded by A';
      });
      await sleep(30);
      // Another instance writes meanwhile (a set takes the key whatever lease is on it).
      await b.set('k', 'written by B');
      release();
      expect(await loading).toBe('loaded by A');
      await eventually(async () => (await a.getOrSet('k', () => 'x')) === 'written by B', 2_000, "A to serve the store's value");
    });
  });
}
