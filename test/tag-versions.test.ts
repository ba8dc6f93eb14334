/**
 * Tag versions: ordered by the store, only ever moved forward by an instance, recreated (and
 * announced) after they expire, bounded in memory, and trusted without a bus only for `l1.ttl`.
 */
import { describe, expect, it } from 'vitest';
import { createCache } from '../src/index.js';
import { TagVersions } from '../src/core/tags.js';
import { systemClock } from '../src/core/clock.js';
import { memoryStore } from '../src/stores/memory.js';
import { newerVersion, type Store, type VersionRequest } from '../src/stores/store.js';
import { eventually, sleep, uniqueNamespace } from './helpers/redis.js';
import { driverFixture } from './helpers/driver-fixture.js';

function versionsOn(store: Store, announced: [string, string][] = []): TagVersions {
  return new TagVersions(store, {
    keyOf: (tag) => `t:${tag}`,
    trusted: () => true,
    maxTagLength: 200,
    ttl: 60_000,
    maxAge: Infinity,
    clock: systemClock,
    announce: (stamps) => announced.push(...stamps.map(([t, v]): [string, string] => [t, v])),
  });
}

describe('newerVersion', () => {
  it('orders by epoch, then counter; anything else is older than every version', () => {
    expect(newerVersion('1700000000000.2', '1700000000000.1')).toBe(true);
    expect(newerVersion('1700000000000.10', '1700000000000.9')).toBe(true);
    expect(newerVersion('1700000000001.0', '1700000000000.99')).toBe(true);
    expect(newerVersion('1700000000000.1', '1700000000000.2')).toBe(false);
    expect(newerVersion('1700000000000.1', '1700000000000.1')).toBe(false);
    expect(newerVersion('1700000000000.1', undefined)).toBe(true);
    // A version written by an earlier Larder (a random token), or none at all.
    expect(newerVersion('1700000000000.0', 'k3J9_a')).toBe(true);
    expect(newerVersion('', '1700000000000.0')).toBe(false);
    expect(newerVersion('k3J9_a', '1700000000000.0')).toBe(false);
  });
});

describe('TagVersions (memory)', () => {
  it('keeps at most 10,000 versions in memory; a forgotten one is read from the store again', async () => {
    const store = memoryStore();
    const tags = versionsOn(store);
    for (let i = 0; i < 20_000; i++) tags.learn(`tag${i}`, '1.0');
    // The oldest went first: the local copy no longer vouches for it.
    expect(tags.validNow([['tag0', '1.0']])).toBeUndefined();
    expect(tags.validNow([['tag19999', '1.0']])).toBe(true);
    // Read again from the store, which creates it (it was never written there).
    const [[, version]] = (await tags.current(['tag0'])) as [[string, string]];
    expect(version).toMatch(/^\d+\.0$/);
    await store.close();
  });

  it('never moves a copy back: announcements arriving out of order keep the newest', async () => {
    const store = memoryStore();
    const tags = versionsOn(store);
    tags.learn('t', '1700000000000.5');
    tags.learn('t', '1700000000000.4');
    expect(tags.validNow([['t', '1700000000000.5']])).toBe(true);
    tags.learn('t', '1700000000000.6');
    expect(tags.validNow([['t', '1700000000000.6']])).toBe(true);
    await store.close();
  });
});

for (const driver of ['redis', 'ioredis'] as const) {
  describe(`tag versions over ${driver}`, () => {
    const fixture = driverFixture(driver);
    const { caches } = fixture;
    const store = () => fixture.store();

    it('the store orders versions: created from its clock, advanced by one per bump, TTL set on writes', async () => {
      const s = await store();
      const key = `${uniqueNamespace('v')}:tag`;
      const request = (bump: boolean): VersionRequest => ({ key, bump, ttl: 60_000 });
      const before = Date.now();
      const [created] = await s.versions([request(false)]);
      expect(created!.changed).toBe(true);
      const [epoch, n] = created!.version.split('.');
      expect(n).toBe('0');
      expect(Math.abs(Number(epoch) - before)).toBeLessThan(5_000);
      expect(await s.versions([request(false)])).toEqual([{ version: created!.version, changed: false }]);
      expect(await s.versions([request(true), request(true)])).toEqual([
        { version: `${epoch}.1`, changed: true },
        { version: `${epoch}.2`, changed: true },
      ]);
      const pttl = await fixture.inspector.pTTL(key);
      expect(pttl).toBeGreaterThan(50_000);
      // A value from an earlier Larder (a random token) still reads as the version; a bump
      // replaces it with a newer one.
      await fixture.inspector.set(key, 'k3J9_a');
      expect(await s.versions([request(false)])).toEqual([{ version: 'k3J9_a', changed: false }]);
      const [replaced] = await s.versions([request(true)]);
      expect(replaced!.changed).toBe(true);
      expect(newerVersion(replaced!.version, 'k3J9_a')).toBe(true);
    });

    it('an expired version is recreated by the next read and announced: every instance moves on', async () => {
      const namespace = uniqueNamespace('tagttl');
      const options = { namespace, tagTtl: 300, ttl: 60_000, jitter: 0, l1: {}, bus: { heartbeat: 50 } } as const;
      const a = createCache({ ...options, store: await store() });
      const b = createCache({ ...options, store: await store() });
      caches.push(a, b);
      const tags = ['catalog'];
      // Both instances learn the first version and trust it (their buses are up).
      await a.getOrSet('x', () => 'a1', { tags });
      await eventually(async () => (await b.getOrSet('x', () => 'b1', { tags })) === 'a1', 5_000, 'B to read the entry');
      await sleep(400); // the version expires in Redis; entries (capped at tagTtl) too
      // A new load on B reads the (absent) version: it is recreated, later, and announced.
      expect(await b.getOrSet('y', () => 'b2', { tags })).toBe('b2');
      // A, which still held the old version, learns the new one. (If A reads first, it may
      // reject B's entry once and load its own: either way they must settle on one value.)
      let loads = 0;
      const load = () => `load${++loads}`;
      await sleep(100);
      for (let i = 0; i < 5; i++) await Promise.all([a.getOrSet('y', load, { tags }), b.getOrSet('y', load, { tags })]);
      const settled = loads;
      // They agree from then on: with instances on different versions, every read would reload.
      const seen = new Set<string>();
      for (let i = 0; i < 20; i++) {
        seen.add(await a.getOrSet('y', load, { tags }));
        seen.add(await b.getOrSet('y', load, { tags }));
      }
      expect(loads).toBe(settled);
      expect(seen.size).toBe(1);
    });

    it('without a bus, tag versions kept with the L1 are trusted for l1.ttl only', async () => {
      const namespace = uniqueNamespace('nobus');
      const tags = ['t'];
      const a = createCache({ namespace, bus: false, l1: { ttl: 200 }, store: await store() });
      const b = createCache({ namespace, bus: false, store: await store() });
      caches.push(a, b);
      await b.getOrSet('k', () => 'v1', { tags });
      expect(await a.getOrSet('k', () => 'never', { tags })).toBe('v1');
      await b.invalidateTags(tags);
      // A has no bus: it cannot hear the invalidation, and its copies expire with l1.ttl.
      await sleep(250);
      expect(await a.getOrSet('k', () => 'v2', { tags })).toBe('v2');
    });
  });
}
