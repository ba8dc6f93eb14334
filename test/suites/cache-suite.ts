/**
 * The cache behaviour suite, run against every store driver (see `test/cache.*.test.ts`).
 */
import { getEventListeners } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  createCache,
  gzip,
  InvalidKeyError,
  InvalidOptionError,
  isLarderError,
  msgpackSerializer,
  SerializationError,
  ValidationError,
  type Cache,
  type CacheOptions,
  type GetOptions,
  type GetOrSetOptions,
  type LoaderContext,
  type Serializer,
} from '../../src/index.js';
import type { Store } from '../../src/stores/store.js';
import { harness, type DriverName, type Harness } from '../helpers/harness.js';
import { eventually, ManualClock, sleep, uniqueNamespace } from '../helpers/redis.js';

/** A tiny Standard Schema, so the suite needs no validation library. */
function schemaOf<T>(check: (value: unknown) => value is T) {
  return {
    '~standard': {
      version: 1 as const,
      vendor: 'test',
      validate: (value: unknown) => (check(value) ? { value } : { issues: [{ message: 'does not fit' }] }),
    },
  };
}

interface User {
  id: number;
  name: string;
}
const isUser = (v: unknown): v is User =>
  typeof v === 'object' && v !== null && typeof (v as User).id === 'number' && typeof (v as User).name === 'string';

/** Counts every call made to a store, to prove "before any I/O" and round-trip claims. */
function spyStore(store: Store): { store: Store; calls: string[] } {
  const calls: string[] = [];
  const proxy = new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls.push(String(property));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store: proxy, calls };
}

export interface SuiteVariant {
  /** Run every test with an in-process tier in front of the store. */
  l1?: boolean;
}

export function cacheSuite(driver: DriverName, variant: SuiteVariant = {}): void {
  describe(`cache over ${driver}${variant.l1 === true ? ' with L1' : ''}`, () => {
    let h: Harness;
    const caches: Cache[] = [];

    beforeAll(async () => {
      h = await harness(driver);
    });
    afterEach(async () => {
      await Promise.all(caches.splice(0).map((c) => c.close()));
    });
    afterAll(async () => {
      await h.close();
    });

    async function make(options: Omit<CacheOptions, 'store'> = {}, store?: Store): Promise<Cache> {
      const storeOptions = options.clock === undefined ? {} : { clock: options.clock };
      const cache = createCache({
        namespace: uniqueNamespace(driver),
        ...options,
        store: store ?? (await h.store(storeOptions)),
      });
      caches.push(cache);
      return cache;
    }

    describe('getOrSet', () => {
      it('loads on a miss, then answers from the cache', async () => {
        const cache = await make();
        const loader = vi.fn(async ({ key }: LoaderContext<User>) => ({ id: 1, name: `user ${key}` }));
        expect(await cache.getOrSet('user:1', loader)).toEqual({ id: 1, name: 'user user:1' });
        expect(await cache.getOrSet('user:1', loader)).toEqual({ id: 1, name: 'user user:1' });
        expect(loader).toHaveBeenCalledTimes(1);
        expect(loader.mock.calls[0]![0]).toMatchObject({ key: 'user:1', stale: undefined, background: false });
        expect(loader.mock.calls[0]![0].signal).toBeInstanceOf(AbortSignal);
        expect(cache.stats()).toMatchObject({ hits: 1, misses: 1, loads: 1 });
      });

      it('caches null as a value, distinct from a miss', async () => {
        const cache = await make();
        const loader = vi.fn(async () => null);
        expect(await cache.getOrSet('k', loader)).toBeNull();
        expect(await cache.getOrSet('k', loader)).toBeNull();
        expect(loader).toHaveBeenCalledTimes(1);
        expect(await cache.get('k')).toBeNull();
        expect(await cache.has('k')).toBe(true);
        expect(await cache.get('absent')).toBeUndefined();
        expect(await cache.has('absent')).toBe(false);
      });

      it('caches "not found" (undefined) with the negative TTL', async () => {
        const cache = await make({ ttl: 60_000, negativeTtl: 2_000 });
        const loader = vi.fn(async () => undefined);
        for (let i = 0; i < 50; i++) expect(await cache.getOrSet('missing', loader)).toBeUndefined();
        expect(loader).toHaveBeenCalledTimes(1);
        expect(await cache.has('missing')).toBe(false);
        const ttl = await h.raw.ttl(`${cache.prefix}missing`);
        // Jitter takes up to 5%; allow time for the 50 reads on a loaded machine.
        expect(ttl).toBeGreaterThan(2_000 * 0.95 - 500);
        expect(ttl).toBeLessThanOrEqual(2_000);
        expect(cache.stats().negativeHits).toBe(49);
      });

      it('sets a TTL on every key it writes, within the jitter bounds', async () => {
        const cache = await make({ ttl: 10_000, jitter: 0.1 });
        // The system clock is cached until its 1 ms timer runs (clock.ts): let it run, so every
        // write below reads a time taken after `started`.
        await sleep(2);
        const started = Date.now();
        await Promise.all(Array.from({ length: 50 }, (_, i) => cache.getOrSet(`k${i}`, () => i)));
        await cache.set('explicit', 1);
        await cache.setMany([{ key: 'many', value: 2 }]);
        const ttls = await Promise.all(
          [...Array.from({ length: 50 }, (_, i) => `k${i}`), 'explicit', 'many'].map((k) => h.raw.ttl(`${cache.prefix}${k}`)),
        );
        // Remaining TTLs shrink by the time this took (long on a loaded machine).
        const elapsed = Date.now() - started;
        for (const ttl of ttls) {
          expect(ttl).toBeGreaterThan(10_000 * 0.9 - elapsed - 5);
          expect(ttl).toBeLessThanOrEqual(10_000);
        }
        // Jitter spreads expiries: keys written together do not all expire together.
        expect(new Set(ttls.map((t) => Math.round(t! / 50))).size).toBeGreaterThan(5);
      });

      it('sets the TTL on keys written by getOrSetMany and by its background refresh, within bounds', async () => {
        const cache = await make({ ttl: 300, grace: 10_000, jitter: 0.1, earlyRefresh: false });
        const keys = Array.from({ length: 20 }, (_, i) => `b${i}`);
        // Writes land after the callers are answered: read the TTLs once none is in flight (a
        // client pool sends them on another connection than the one the inspector's read follows).
        const ttlsOf = async () => {
          await eventually(() => cache.store.status().pending === 0, 5_000, 'writes in flight');
          return Promise.all(keys.map((k) => h.raw.ttl(`${cache.prefix}${k}`)));
        };
        await sleep(2);
        let started = Date.now();
        await cache.getOrSetMany(keys, (missing) => missing.map((k) => `v1 ${k}`));
        let ttls = await ttlsOf();
        for (const ttl of ttls) {
          expect(ttl).toBeGreaterThan(10_000 + 300 * 0.9 - (Date.now() - started) - 5);
          expect(ttl).toBeLessThanOrEqual(10_300);
        }
        // Stale now: served at once, and rewritten by the refresh with a whole new TTL.
        await sleep(350);
        started = Date.now();
        await cache.getOrSetMany(keys, (missing) => missing.map((k) => `v2 ${k}`));
        await eventually(async () => (await cache.get('b19')) === 'v2 b19');
        ttls = await ttlsOf();
        for (const ttl of ttls) {
          expect(ttl).toBeGreaterThan(10_000 + 300 * 0.9 - (Date.now() - started) - 5);
          expect(ttl).toBeLessThanOrEqual(10_300);
        }
      });

      it('1,000 reads of a missing id cause one loader call per negative TTL', async () => {
        const clock = new ManualClock();
        const cache = await make({ clock, ttl: 60_000, negativeTtl: 1_000, jitter: 0 });
        const loader = vi.fn(async () => undefined);
        for (let i = 0; i < 1_000; i++) {
          if (i === 500) clock.advance(1_001);
          expect(await cache.getOrSet('product:404', loader)).toBeUndefined();
        }
        expect(loader).toHaveBeenCalledTimes(2);
        expect(cache.stats().negativeHits).toBe(998);
      });

      it('stores forever only with an explicit ttl: Infinity, and not at all with ttl: 0', async () => {
        const cache = await make();
        await cache.getOrSet('forever', () => 1, { ttl: Infinity });
        expect(await h.raw.ttl(`${cache.prefix}forever`)).toBe(Infinity);
        const loader = vi.fn(() => 2);
        await cache.getOrSet('never', loader, { ttl: 0 });
        await cache.getOrSet('never', loader, { ttl: 0 });
        expect(loader).toHaveBeenCalledTimes(2);
        expect(await h.raw.get(`${cache.prefix}never`)).toBeUndefined();
      });

      it('adds grace to the stored TTL', async () => {
        const cache = await make({ ttl: 1_000, grace: 5_000, jitter: 0 });
        await cache.getOrSet('g', () => 1);
        const ttl = await h.raw.ttl(`${cache.prefix}g`);
        expect(ttl).toBeGreaterThan(5_500);
        expect(ttl).toBeLessThanOrEqual(6_000);
      });

      it('rejects invalid keys with a typed error before any I/O', async () => {
        const spy = spyStore(await h.store());
        const cache = await make({ maxKeyLength: 10 }, spy.store);
        const loader = vi.fn(() => 1);
        for (const key of ['', 'x'.repeat(11), 42, null, undefined, {}] as unknown as string[]) {
          await expect(cache.getOrSet(key, loader)).rejects.toBeInstanceOf(InvalidKeyError);
          await expect(cache.get(key)).rejects.toBeInstanceOf(InvalidKeyError);
          await expect(cache.set(key, 1)).rejects.toBeInstanceOf(InvalidKeyError);
          await expect(cache.delete(key)).rejects.toBeInstanceOf(InvalidKeyError);
        }
        await expect(cache.getMany(['ok', ''])).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(cache.getOrSetMany(['ok', 'x'.repeat(11)], () => [1, 2])).rejects.toBeInstanceOf(InvalidKeyError);
        expect(loader).not.toHaveBeenCalled();
        // Only non-I/O calls: closing, and watching the breaker (a local listener).
        expect(spy.calls.filter((c) => c !== 'close' && c !== 'watchBreaker')).toEqual([]);
        const error = await cache.get('').catch((e: unknown) => e);
        expect(isLarderError(error, 'E_INVALID_KEY')).toBe(true);
        expect((error as Error).name).toBe('InvalidKeyError');
      });

      it('refuses a misspelt option name on every call, before any I/O, and nothing is written', async () => {
        const spy = spyStore(await h.store());
        const cache = await make({}, spy.store);
        const loader = vi.fn(() => 1);
        const tll = { tll: 5 } as never;
        const calls: [string, () => Promise<unknown>][] = [
          ['getOrSet', () => cache.getOrSet('k', loader, tll)],
          ['getOrSetMany', () => cache.getOrSetMany(['k'], () => [1], tll)],
          ['get', () => cache.get('k', { allowstale: true } as never)],
          ['getMany', () => cache.getMany(['k'], tll)],
          ['has', () => cache.has('k', { allowStael: true } as never)],
          ['set', () => cache.set('k', 1, tll)],
          ['setMany', () => cache.setMany([{ key: 'k', value: 1, tll: 5 } as never])],
          ['setMany options', () => cache.setMany([{ key: 'k', value: 1 }], tll)],
          // An entry's options go on the entry; the call takes a signal only.
          ['setMany entry option on the call', () => cache.setMany([{ key: 'k', value: 1 }], { ttl: 5 } as never)],
          ['setMany entry signal', () => cache.setMany([{ key: 'k', value: 1, signal: AbortSignal.abort() } as never])],
          ['delete', () => cache.delete('k', { sginal: undefined } as never)],
          ['deleteMany', () => cache.deleteMany(['k'], tll)],
          ['clear', () => cache.clear(tll)],
          ['invalidateTags', () => cache.invalidateTags(['t'], tll)],
        ];
        const refused: string[] = [];
        for (const [name, call] of calls) {
          let returned: Promise<unknown> | undefined;
          expect(() => (returned = call())).not.toThrow();
          const error = await returned!.catch((e: unknown) => e);
          if (
            error instanceof InvalidOptionError &&
            /^(tll|ttl|allowstale|allowStael|sginal|signal): unknown option/.test(error.message)
          )
            refused.push(name);
        }
        expect(refused).toEqual(calls.map(([name]) => name));
        expect(loader).not.toHaveBeenCalled();
        expect(spy.calls.filter((c) => c !== 'close' && c !== 'watchBreaker')).toEqual([]);
        // The names each call does take still pass.
        expect(await cache.getOrSet('k', () => 2, { ttl: 1_000, jitter: 0, tags: ['t'], forceFresh: true })).toBe(2);
        expect(await cache.get('k', { allowStale: true })).toBe(2);
        // So does one object shared by calls that take different options (TypeScript allows it):
        // only names no call takes are refused.
        const shared: GetOrSetOptions<number> & GetOptions<number> = { ttl: 1_000, timeout: 50, allowStale: true };
        await cache.set('k', 3, shared);
        expect(await cache.get('k', shared)).toBe(3);
        expect(await cache.has('k', shared)).toBe(true);
        expect(await cache.getOrSet('k', () => 4, shared)).toBe(3);
        // `has` takes a schema as `get` does: a value that does not fit is not there.
        expect(await cache.has('k', { schema: schemaOf(isUser) })).toBe(false);
        await cache.set('user', { id: 1, name: 'Ada' });
        expect(await cache.has('user', { schema: schemaOf(isUser) })).toBe(true);
        // Inherited enumerable properties (a polyfill on Object.prototype) are not the caller's.
        const proto = Object.prototype as Record<string, unknown>;
        let read: Promise<unknown>;
        proto['polluted'] = 1;
        try {
          read = cache.getOrSet('k', () => 5, { ttl: 1_000 });
        } finally {
          delete proto['polluted'];
        }
        expect(await read).toBe(3);
      });

      it('getOrSetMany rejects bad options with a typed error, and the keys stay usable', async () => {
        const cache = await make();
        await expect(cache.getOrSetMany(['a', 'b'], (keys) => keys, { ttl: -1 })).rejects.toBeInstanceOf(InvalidOptionError);
        await expect(cache.getOrSetMany(['a'], (keys) => keys, { serializer: {} as never })).rejects.toBeInstanceOf(
          InvalidOptionError,
        );
        expect(await cache.getOrSetMany(['a', 'b'], (keys) => keys.map((k) => k.toUpperCase()))).toEqual(['A', 'B']);
        expect(await cache.getOrSet('a', () => 'never')).toBe('A');
      });

      it('rejects a non-function loader and bad options with typed errors', async () => {
        const cache = await make();
        await expect(cache.getOrSet('k', 42 as never)).rejects.toBeInstanceOf(InvalidOptionError);
        await expect(cache.getOrSet('k', () => 1, { ttl: -1 })).rejects.toBeInstanceOf(InvalidOptionError);
        await expect(cache.getOrSet('k', () => 1, { ttl: Number.NaN })).rejects.toBeInstanceOf(InvalidOptionError);
        await expect(cache.getOrSet('k', () => 1, { jitter: 2 })).rejects.toBeInstanceOf(InvalidOptionError);
        await expect(cache.getOrSet('k', () => 1, { negativeTtl: Infinity })).rejects.toBeInstanceOf(InvalidOptionError);
        // A bad per-call serializer rejects too: getOrSet never throws synchronously.
        const badSerializer = { name: 'bad name!' } as never;
        let returned: Promise<unknown> | undefined;
        expect(() => (returned = cache.getOrSet('k', () => 1, { serializer: badSerializer }))).not.toThrow();
        await expect(returned).rejects.toBeInstanceOf(InvalidOptionError);
        expect(() => createCache({ ttl: -5 })).toThrow(InvalidOptionError);
        expect(() => createCache({ namespace: 'bad name*' })).toThrow(InvalidOptionError);
        expect(() => createCache({ tll: 5 } as never)).toThrow(/tll: unknown option/);
        expect(() => createCache({ lock: { wiat: 5 } as never })).toThrow(/lock\.wiat: unknown option/);
        expect(() => createCache({ l1: { maxEntires: 5 } as never })).toThrow(/^l1\.maxEntires: unknown option/);
        expect(() => createCache({ bus: { heartbaet: 5 } as never })).toThrow(/^bus\.heartbaet: unknown option/);
        expect(() => createCache({ compression: { threshhold: 5 } as never })).toThrow(
          /^compression\.threshhold: unknown option/,
        );
        expect(() => cache.namespace('child', { verison: 2 } as never)).toThrow(/^verison: unknown option/);
        expect(() => cache.namespace('child', null as never)).toThrow(InvalidOptionError);
        expect(() => createCache({ compression: 'gzip' as never })).toThrow(/^compression: expected an options object or false/);
        await expect(cache.invalidateAfter(() => 1, null as never)).rejects.toThrow(/^targets: expected/);
        const write = vi.fn(() => 'written');
        await expect(cache.invalidateAfter(write, { kyes: ['k'] } as never)).rejects.toThrow(/^targets\.kyes: unknown option/);
        expect(write).not.toHaveBeenCalled();
        await expect(cache.getOrSet('k', () => 1, { earlyRefresh: { aheed: 0.5 } as never })).rejects.toThrow(
          /earlyRefresh\.aheed: unknown option/,
        );
      });

      it('runs the loader once for 1,000 concurrent misses, and everyone gets the result', async () => {
        const cache = await make();
        let calls = 0;
        const loader = async () => {
          calls++;
          await sleep(20);
          return { n: 42 };
        };
        const results = await Promise.all(Array.from({ length: 1000 }, () => cache.getOrSet('hot', loader)));
        expect(calls).toBe(1);
        expect(new Set(results.map((r) => JSON.stringify(r)))).toEqual(new Set(['{"n":42}']));
      });

      it('an instant loader still runs once for 1,000 concurrent misses: callers share one read', async () => {
        for (const lock of [undefined, false] as const) {
          const spied = spyStore(await h.store());
          const cache = await make(lock === undefined ? {} : { lock }, spied.store);
          let calls = 0;
          const results = await Promise.all(
            Array.from({ length: 1000 }, () =>
              cache.getOrSet('instant', () => {
                calls++;
                return 7;
              }),
            ),
          );
          expect(calls).toBe(1);
          expect(results.every((r) => r === 7)).toBe(true);
          // One read of the key for all of them (then the lease of the load, with locks), not 1,000.
          expect(spied.calls.filter((c) => c === 'get' || c === 'lease').length).toBe(lock === false ? 1 : 2);
          expect(cache.stats().misses).toBe(1);
          // Hits arriving together share one read too, and each counts as a hit.
          spied.calls.length = 0;
          await Promise.all(Array.from({ length: 100 }, () => cache.getOrSet('instant', () => 0)));
          expect(spied.calls.filter((c) => c === 'get' || c === 'lease').length).toBeLessThanOrEqual(1);
          expect(cache.stats().hits).toBe(100);
        }
      });

      it('the caller whose read others share may abort: they still get their answer', async () => {
        const cache = await make();
        await cache.set('shared-read', 'value');
        const controller = new AbortController();
        const owner = cache.getOrSet('shared-read', () => 'loaded', { signal: controller.signal });
        const joiners = Array.from({ length: 5 }, () => cache.getOrSet('shared-read', () => 'loaded'));
        controller.abort();
        await expect(owner).rejects.toMatchObject({ name: 'AbortError' });
        expect(await Promise.all(joiners)).toEqual(Array(5).fill('value'));
        expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
      });

      it('shares one error with every waiter and never caches it', async () => {
        const cache = await make();
        let calls = 0;
        const failing = async () => {
          calls++;
          await sleep(10);
          throw new Error('db down');
        };
        const settled = await Promise.allSettled(Array.from({ length: 20 }, () => cache.getOrSet('e', failing)));
        expect(calls).toBe(1);
        const reasons = new Set(settled.map((s) => (s.status === 'rejected' ? s.reason : undefined)));
        expect(reasons.size).toBe(1);
        expect([...reasons][0]).toBeInstanceOf(Error);
        expect(await cache.getOrSet('e', () => 'ok')).toBe('ok');
        expect(calls).toBe(1);
        expect(cache.stats().loadErrors).toBe(1);
      });

      it('rejects only the waiter whose signal aborts; the load goes on for the others', async () => {
        const cache = await make();
        let loaderSignal: AbortSignal | undefined;
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        const loader = async ({ signal }: { signal: AbortSignal }) => {
          loaderSignal = signal;
          await gate;
          return 'value';
        };
        const controller = new AbortController();
        const aborted = cache.getOrSet('a', loader, { signal: controller.signal });
        const patient = cache.getOrSet('a', loader);
        await eventually(() => loaderSignal !== undefined);
        controller.abort(new Error('client went away'));
        const error = await aborted.catch((e: unknown) => e);
        expect((error as Error).name).toBe('AbortError');
        expect(isLarderError(error, 'E_ABORTED')).toBe(true);
        expect((error as Error).cause).toEqual(new Error('client went away'));
        expect(loaderSignal!.aborted).toBe(false);
        release();
        expect(await patient).toBe('value');
        expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
        const settled = new AbortController();
        expect(await cache.getOrSet('a2', () => 1, { signal: settled.signal })).toBe(1);
        expect(getEventListeners(settled.signal, 'abort')).toHaveLength(0);
      });

      it('aborts the shared load when every waiter has gone, and leaves no listeners', async () => {
        const cache = await make();
        let loaderSignal: AbortSignal | undefined;
        const loader = ({ signal }: { signal: AbortSignal }) => {
          loaderSignal = signal;
          return new Promise<string>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
        };
        const controllers = [new AbortController(), new AbortController()];
        const calls = controllers.map((c) => cache.getOrSet('b', loader, { signal: c.signal }));
        await eventually(() => loaderSignal !== undefined);
        controllers[0]!.abort();
        await expect(calls[0]).rejects.toMatchObject({ name: 'AbortError' });
        expect(loaderSignal!.aborted).toBe(false);
        controllers[1]!.abort();
        await expect(calls[1]).rejects.toMatchObject({ name: 'AbortError' });
        expect(loaderSignal!.aborted).toBe(true);
        for (const c of controllers) expect(getEventListeners(c.signal, 'abort')).toHaveLength(0);
        // The next caller starts afresh.
        expect(await cache.getOrSet('b', () => 'again')).toBe('again');
      });

      it('plain reads reject promptly with an AbortError when their signal fires mid-read', async () => {
        const cache = await make();
        await cache.set('k', 1);
        const controller = new AbortController();
        const reading = cache.get('k', { signal: controller.signal });
        // The read is on its way (a memory store answers within a microtask): the abort still wins.
        controller.abort();
        await expect(reading).rejects.toMatchObject({ name: 'AbortError' });
        expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
        await expect(cache.getMany(['k'], { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
        await expect(cache.has('k', { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
      });

      it('writes take a signal: aborted before, nothing is sent; aborted during, the write completes behind the AbortError', async () => {
        const cache = await make();
        const aborted = AbortSignal.abort();
        const refused = [
          cache.set('w', 1, { signal: aborted }),
          cache.setMany([{ key: 'w', value: 1 }], { signal: aborted }),
          cache.delete('w', { signal: aborted }),
          cache.deleteMany(['w'], { signal: aborted }),
          cache.clear({ signal: aborted }),
          cache.invalidateTags(['t'], { signal: aborted }),
        ];
        for (const call of refused) await expect(call).rejects.toMatchObject({ name: 'AbortError', code: 'E_ABORTED' });
        expect(await cache.has('w')).toBe(false);
        // Aborted while on its way: the caller is told at once, and the write still lands.
        const controller = new AbortController();
        const writing = cache.set('w', 'landed', { signal: controller.signal });
        controller.abort();
        await expect(writing).rejects.toMatchObject({ name: 'AbortError' });
        await eventually(async () => (await cache.get('w')) === 'landed');
        expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
        const deleting = new AbortController();
        const deleted = cache.delete('w', { signal: deleting.signal });
        deleting.abort();
        await expect(deleted).rejects.toMatchObject({ name: 'AbortError' });
        await eventually(async () => !(await cache.has('w')));
        // A signal that never fires changes nothing.
        await cache.set('w', 2, { signal: new AbortController().signal, ttl: 5_000 });
        expect(await cache.get('w')).toBe(2);
      });

      it('rejects at once with an AbortError for an already-aborted signal', async () => {
        const cache = await make();
        const loader = vi.fn(() => 1);
        await expect(cache.getOrSet('c', loader, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
        await expect(cache.get('c', { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
        expect(loader).not.toHaveBeenCalled();
      });

      it('validates cached values with a Standard Schema: a misfit is a miss and is replaced', async () => {
        const cache = await make();
        const schema = schemaOf(isUser);
        await cache.set('u', { id: 'not a number' });
        const corrupt = vi.fn();
        cache.on('corrupt', corrupt);
        const user = await cache.getOrSet('u', () => ({ id: 7, name: 'Ada' }), { schema });
        expect(user).toEqual({ id: 7, name: 'Ada' });
        expect(corrupt).toHaveBeenCalledWith(expect.objectContaining({ reason: 'schema' }));
        expect(await cache.get('u', { schema })).toEqual({ id: 7, name: 'Ada' });
      });

      it('rejects a loaded value that does not fit the schema and does not cache it', async () => {
        const cache = await make();
        const schema = schemaOf(isUser);
        const error = await cache.getOrSet('v', () => ({ id: 1 }), { schema }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).issues[0]!.message).toBe('does not fit');
        expect(await cache.get('v')).toBeUndefined();
      });

      it('forceFresh loads even on a hit and caches the result', async () => {
        const cache = await make();
        await cache.set('f', 1);
        expect(await cache.getOrSet('f', () => 2, { forceFresh: true })).toBe(2);
        expect(await cache.get('f')).toBe(2);
      });

      it('returns the value but reports a serialization failure instead of throwing', async () => {
        const cache = await make();
        const errors = vi.fn();
        cache.on('store-error', errors);
        const value = { big: 10n };
        expect(await cache.getOrSet('s', () => value)).toBe(value);
        expect(errors).toHaveBeenCalledWith(
          expect.objectContaining({ operation: 'serialize', error: expect.any(SerializationError) }),
        );
        await expect(cache.set('s', value)).rejects.toBeInstanceOf(SerializationError);
      });
    });

    describe('keys, namespaces and versions', () => {
      it('builds ns:v1:key and keeps children under their parent', async () => {
        const ns = uniqueNamespace(driver);
        const cache = await make({ namespace: ns });
        const users = cache.namespace('users');
        expect(cache.prefix).toBe(`${ns}:v1:`);
        expect(users.prefix).toBe(`${ns}:v1/users:`);
        expect(cache.namespace('posts', { version: 3 }).prefix).toBe(`${ns}:v1/posts@v3:`);
        expect(users.namespace('orders').prefix).toBe(`${ns}:v1/users/orders:`);
        await users.set('1', 'Ada');
        expect(await h.raw.get(`${ns}:v1/users:1`)).toBeDefined();
        expect(await users.get('1')).toBe('Ada');
        expect(await cache.get('1')).toBeUndefined();
        expect(() => cache.namespace('no:colons')).toThrow(InvalidOptionError);
        expect(() => cache.namespace('no/slashes')).toThrow(InvalidOptionError);
        expect(() => cache.namespace('no@ats')).toThrow(InvalidOptionError);
      });

      it('a parent key never meets a child key, whatever characters it holds', async () => {
        const cache = await make();
        const users = cache.namespace('users');
        const v2 = cache.namespace('users', { version: 2 });
        // Each pair would be one store key if children hung off the parent with `:`.
        await cache.set('users:42', 'parent');
        await users.set('42', 'child');
        await users.set('v2:7', 'unversioned child');
        await v2.set('7', 'versioned child');
        await users.set('orders:1', 'child key');
        await users.namespace('orders').set('1', 'grandchild');
        expect(await cache.get('users:42')).toBe('parent');
        expect(await users.get('42')).toBe('child');
        expect(await users.get('v2:7')).toBe('unversioned child');
        expect(await v2.get('7')).toBe('versioned child');
        expect(await users.get('orders:1')).toBe('child key');
        expect(await users.namespace('orders').get('1')).toBe('grandchild');
        // Clearing a child leaves the parent's look-alike keys and the other version alone.
        expect(await users.clear()).toBe(4);
        expect(await cache.get('users:42')).toBe('parent');
        expect(await v2.get('7')).toBe('versioned child');
      });

      it('bumping the version hides every old entry', async () => {
        const ns = uniqueNamespace(driver);
        const store = await h.store();
        const v1 = createCache({ namespace: ns, version: 1, store });
        await v1.set('k', 'old');
        const v2 = createCache({ namespace: ns, version: 2, store });
        expect(await v2.get('k')).toBeUndefined();
        expect(await v2.getOrSet('k', () => 'new')).toBe('new');
        expect(await v1.get('k')).toBe('old');
        caches.push(v2);
      });
    });

    describe('plain operations', () => {
      it('get, set, has, delete', async () => {
        const cache = await make();
        expect(await cache.get('x')).toBeUndefined();
        await cache.set('x', { a: 1 });
        expect(await cache.get('x')).toEqual({ a: 1 });
        expect(await cache.has('x')).toBe(true);
        expect(await cache.delete('x')).toBe(true);
        expect(await cache.delete('x')).toBe(false);
        expect(await cache.get('x')).toBeUndefined();
        await cache.set('y', 1, { ttl: 0 });
        expect(await cache.has('y')).toBe(false);
      });

      it('getMany, setMany, deleteMany', async () => {
        const cache = await make();
        await cache.setMany([
          { key: 'a', value: 1 },
          { key: 'b', value: null },
          { key: 'c', value: 'three', ttl: 5_000 },
        ]);
        expect(await cache.getMany(['a', 'b', 'c', 'd'])).toEqual([1, null, 'three', undefined]);
        expect(await cache.deleteMany(['a', 'b', 'zz'])).toBe(2);
        // Misses are `undefined` elements, not holes (`toEqual` cannot tell them apart; `map` can).
        const read = await cache.getMany(['a', 'b', 'c']);
        expect(read.map((v) => (v === undefined ? 'miss' : v))).toEqual(['miss', 'miss', 'three']);
        expect(Object.keys(read)).toEqual(['0', '1', '2']);
        expect(await cache.getMany([])).toEqual([]);
      });

      it('setMany serializes everything before sending anything', async () => {
        const cache = await make();
        await expect(
          cache.setMany([
            { key: 'ok', value: 1 },
            { key: 'bad', value: 1n },
          ]),
        ).rejects.toBeInstanceOf(SerializationError);
        expect(await cache.get('ok')).toBeUndefined();
      });

      it('clear removes this namespace (and its children) and nothing else', async () => {
        const cache = await make();
        const other = await make();
        await Promise.all(Array.from({ length: 1200 }, (_, i) => cache.set(`k${i}`, i)));
        await cache.namespace('child').set('c', 1);
        await other.set('keep', 1);
        expect(await cache.clear()).toBe(1201);
        expect(await cache.get('k5')).toBeUndefined();
        expect(await cache.namespace('child').get('c')).toBeUndefined();
        expect(await other.get('keep')).toBe(1);
      });

      it('clear on a child namespace keeps the parent', async () => {
        const cache = await make();
        await cache.set('parent', 1);
        await cache.namespace('child').set('c', 1);
        await cache.namespace('child').clear();
        expect(await cache.get('parent')).toBe(1);
      });

      it('set during a load wins: the loaded value is not written over it', async () => {
        const cache = await make();
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        const loading = cache.getOrSet('race', async () => {
          await gate;
          return 'old';
        });
        await sleep(20);
        await cache.set('race', 'new');
        release();
        expect(await loading).toBe('old');
        await eventually(async () => cache.stats().writesSkipped === 1);
        expect(await cache.get('race')).toBe('new');
      });

      it('delete during a load wins: the loaded value is not written', async () => {
        const cache = await make();
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        const loading = cache.getOrSet('race', async () => {
          await gate;
          return 'old';
        });
        await sleep(20);
        await cache.delete('race');
        release();
        expect(await loading).toBe('old');
        await eventually(async () => cache.stats().writesSkipped === 1);
        expect(await cache.get('race')).toBeUndefined();
      });
    });

    describe('getOrSetMany', () => {
      it('reads all keys at once, loads only the misses in one call, and caches them', async () => {
        const cache = await make();
        await cache.setMany([
          { key: 'p1', value: 'cached 1' },
          { key: 'p3', value: 'cached 3' },
        ]);
        const loader = vi.fn(async (keys: string[]) => new Map(keys.map((k) => [k, `loaded ${k}`])));
        const values = await cache.getOrSetMany(['p1', 'p2', 'p3', 'p4', 'p2'], loader);
        expect(values).toEqual(['cached 1', 'loaded p2', 'cached 3', 'loaded p4', 'loaded p2']);
        expect(loader).toHaveBeenCalledTimes(1);
        expect(loader.mock.calls[0]![0]).toEqual(['p2', 'p4']);
        expect(await cache.getMany(['p2', 'p4'])).toEqual(['loaded p2', 'loaded p4']);
        const again = await cache.getOrSetMany(['p1', 'p2', 'p3', 'p4'], loader);
        expect(again).toEqual(['cached 1', 'loaded p2', 'cached 3', 'loaded p4']);
        expect(loader).toHaveBeenCalledTimes(1);
      });

      it('accepts an array result and caches missing entries as "not found"', async () => {
        const cache = await make();
        const loader = vi.fn(async (keys: string[]) => keys.map((k) => (k === 'gone' ? undefined : k.toUpperCase())));
        expect(await cache.getOrSetMany(['a', 'gone'], loader)).toEqual(['A', undefined]);
        expect(await cache.getOrSetMany(['a', 'gone'], loader)).toEqual(['A', undefined]);
        expect(loader).toHaveBeenCalledTimes(1);
      });

      it('shares loads with concurrent single-key calls, both ways', async () => {
        const cache = await make();
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        const single = vi.fn(async () => {
          await gate;
          return 'from single';
        });
        const batch = vi.fn(async (keys: string[]) => {
          await gate;
          return keys.map((k) => `from batch ${k}`);
        });
        // Each call starts once the previous one's loader runs (its flight is then registered).
        const first = cache.getOrSet('shared', single);
        await vi.waitFor(() => expect(single).toHaveBeenCalledTimes(1), { interval: 1 });
        const many = cache.getOrSetMany(['shared', 'other'], batch);
        await vi.waitFor(() => expect(batch).toHaveBeenCalledTimes(1), { interval: 1 });
        const second = cache.getOrSet('other', single);
        release();
        expect(await first).toBe('from single');
        expect(await many).toEqual(['from single', 'from batch other']);
        expect(await second).toBe('from batch other');
        expect(single).toHaveBeenCalledTimes(1);
        expect(batch).toHaveBeenCalledTimes(1);
        expect(batch.mock.calls[0]![0]).toEqual(['other']);
      });

      it('gives every caller the batch loader error and caches nothing', async () => {
        const cache = await make();
        const loader = vi.fn(async () => {
          throw new Error('batch failed');
        });
        await expect(cache.getOrSetMany(['x', 'y'], loader)).rejects.toThrow('batch failed');
        expect(await cache.getOrSetMany(['x', 'y'], () => ['X', 'Y'])).toEqual(['X', 'Y']);
      });

      it('replaces corrupt and expired entries met in the batch', async () => {
        const clock = new ManualClock();
        const cache = await make({ clock, ttl: 1_000, jitter: 0 });
        await cache.set('old', 'stale value');
        clock.advance(2_000);
        await h.raw.set(`${cache.prefix}junk`, 'not an entry');
        const loader = vi.fn(async (keys: string[]) => keys.map((k) => `fresh ${k}`));
        expect(await cache.getOrSetMany(['old', 'junk', 'new'], loader)).toEqual(['fresh old', 'fresh junk', 'fresh new']);
        expect(loader).toHaveBeenCalledTimes(1);
        expect(loader.mock.calls[0]![0]).toEqual(['old', 'junk', 'new']);
        expect(await cache.getMany(['old', 'junk', 'new'])).toEqual(['fresh old', 'fresh junk', 'fresh new']);
      });

      it('forceFresh reloads cached keys too', async () => {
        const cache = await make();
        await cache.set('f1', 'old');
        expect(await cache.getOrSetMany(['f1', 'f2'], (keys) => keys.map((k) => `new ${k}`), { forceFresh: true })).toEqual([
          'new f1',
          'new f2',
        ]);
        expect(await cache.get('f1')).toBe('new f1');
      });

      it('serves stale keys at once and refreshes them together, in one background call', async () => {
        const clock = new ManualClock();
        const cache = await make({ ttl: 1_000, grace: 10_000, jitter: 0, clock, earlyRefresh: false });
        await cache.getOrSetMany(['s1', 's2', 's3'], (keys) => keys.map((k) => `old ${k}`));
        // The writes settle after the call has answered, and until then a key's flight holds its
        // value: a read now would join it (no refresh). Wait for all three to be written.
        for (const k of ['s1', 's2', 's3']) await eventually(async () => (await h.raw.get(`${cache.prefix}${k}`)) !== undefined);
        await sleep(20);
        clock.advance(1_500);
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        const loader = vi.fn(async (keys: string[], { background }: { background: boolean }) => {
          if (background) await gate;
          return keys.map((k) => `new ${k}`);
        });
        expect(await cache.getOrSetMany(['s1', 's2', 's3', 's4'], loader)).toEqual(['old s1', 'old s2', 'old s3', 'new s4']);
        await vi.waitFor(() => expect(loader).toHaveBeenCalledTimes(2));
        const calls = loader.mock.calls.map(([keys, context]) => [[...keys].sort(), context.background]);
        expect(calls).toContainEqual([['s1', 's2', 's3'], true]);
        expect(calls).toContainEqual([['s4'], false]);
        // Callers arriving while the refresh runs share the stale values; nothing else loads.
        expect(await cache.getOrSet('s2', () => 'single')).toBe('old s2');
        expect(await cache.getOrSetMany(['s1', 's3'], loader)).toEqual(['old s1', 'old s3']);
        release();
        await eventually(async () => (await cache.get('s3')) === 'new s3');
        expect(await cache.getMany(['s1', 's2', 's3'])).toEqual(['new s1', 'new s2', 'new s3']);
        expect(loader).toHaveBeenCalledTimes(2);
        expect(cache.stats().refreshes).toBe(3);
        expect(cache.stats().staleHits).toBeGreaterThanOrEqual(3);
      });

      it('a failing batch refresh keeps serving the stale values and backs off', async () => {
        const clock = new ManualClock();
        const cache = await make({ ttl: 1_000, grace: 10_000, jitter: 0, clock, earlyRefresh: false, failSafeBackoff: 2_000 });
        await cache.getOrSetMany(['f1', 'f2'], (keys) => keys.map((k) => `good ${k}`));
        clock.advance(1_500);
        const errors = vi.fn();
        cache.on('load-error', errors);
        const failing = vi.fn(async (): Promise<string[]> => {
          throw new Error('db down');
        });
        expect(await cache.getOrSetMany(['f1', 'f2'], failing)).toEqual(['good f1', 'good f2']);
        await vi.waitFor(() => expect(errors).toHaveBeenCalledTimes(2));
        expect(errors).toHaveBeenCalledWith(
          expect.objectContaining({ key: `${cache.prefix}f1`, background: true, failSafe: true }),
        );
        // Backed off everywhere: the entries were kept fresh for failSafeBackoff.
        await eventually(
          async () =>
            (await cache.getOrSetMany(['f1', 'f2'], failing)).join() === 'good f1,good f2' && failing.mock.calls.length === 1,
        );
        clock.advance(2_100);
        expect(await cache.getOrSetMany(['f1', 'f2'], failing)).toEqual(['good f1', 'good f2']);
        await vi.waitFor(() => expect(errors).toHaveBeenCalledTimes(4));
        // Past grace, callers get the error. The refresh that just failed holds the keys' flights
        // until it has settled (real time; the manual clock jumps past them), so wait for that.
        clock.advance(20_000);
        await eventually(() =>
          cache.getOrSetMany(['f1', 'f2'], failing).then(
            () => false,
            (error: unknown) => error instanceof Error && error.message === 'db down',
          ),
        );
      });

      it('refreshes keys due early together, in the background, whether read from L2 or L1', async () => {
        const clock = new ManualClock();
        const cache = await make({ ttl: 1_000, jitter: 0, clock, earlyRefresh: { ahead: 0.5, beta: 0 } });
        let version = 0;
        const loader = vi.fn(async (keys: string[], _context: { background: boolean }) => {
          version++;
          return keys.map((k) => `${k} v${version}`);
        });
        await cache.getOrSetMany(['e1', 'e2', 'e3'], loader);
        clock.advance(600);
        expect(await cache.getOrSetMany(['e1', 'e2', 'e3'], loader)).toEqual(['e1 v1', 'e2 v1', 'e3 v1']);
        await vi.waitFor(() => expect(loader).toHaveBeenCalledTimes(2));
        expect([...loader.mock.calls[1]![0]].sort()).toEqual(['e1', 'e2', 'e3']);
        expect(loader.mock.calls[1]![1]).toMatchObject({ background: true });
        await eventually(async () => (await cache.get('e2')) === 'e2 v2');
        expect(await cache.getMany(['e1', 'e3'])).toEqual(['e1 v2', 'e3 v2']);
        expect(cache.stats()).toMatchObject({ misses: 3, refreshes: 3 });
      });

      it.skipIf(driver === 'memory')(
        'two instances refresh the same stale keys once (refresh locks taken in one round trip)',
        async () => {
          const clock = new ManualClock();
          const options = {
            namespace: uniqueNamespace(driver),
            ttl: 1_000,
            grace: 10_000,
            jitter: 0,
            clock,
            earlyRefresh: false as const,
          };
          const a = await make(options);
          const b = await make(options);
          await a.getOrSetMany(['x1', 'x2'], (keys) => keys.map((k) => `old ${k}`));
          clock.advance(1_500);
          let release!: () => void;
          const gate = new Promise<void>((r) => (release = r));
          const loader = vi.fn(async (keys: string[]) => {
            await gate;
            return keys.map((k) => `new ${k}`);
          });
          expect(await a.getOrSetMany(['x1', 'x2'], loader)).toEqual(['old x1', 'old x2']);
          await vi.waitFor(() => expect(loader).toHaveBeenCalledTimes(1));
          expect(await b.getOrSetMany(['x1', 'x2'], loader)).toEqual(['old x1', 'old x2']);
          release();
          await eventually(async () => (await a.get('x2')) === 'new x2');
          // b's refresh met a's locks: it neither loaded nor wrote.
          expect(loader).toHaveBeenCalledTimes(1);
          expect(b.stats().loads).toBe(0);
        },
      );

      it('rejects a batch loader that returns something else than a Map or an array', async () => {
        const cache = await make();
        await expect(cache.getOrSetMany(['x'], () => 'nope' as never)).rejects.toThrow(TypeError);
      });
    });

    describe('serializers and corrupt entries', () => {
      it('round-trips rich values with MessagePack', async () => {
        const cache = await make({ serializer: msgpackSerializer() });
        const value = {
          when: new Date('2026-01-02T03:04:05Z'),
          tags: new Set(['a']),
          big: 2n ** 70n,
          bytes: new Uint8Array([1, 2]),
        };
        await cache.set('rich', value);
        expect(await cache.get('rich')).toEqual(value);
      });

      it('accepts a custom serializer per cache and per call', async () => {
        const upper: Serializer = {
          name: 'upper',
          binary: false,
          serialize: (v) => String(v).toUpperCase(),
          deserialize: (p) => String(p),
        };
        const cache = await make();
        await cache.set('c', 'hello', { serializer: upper });
        expect(await cache.get('c', { serializer: upper })).toBe('HELLO');
        expect(() => createCache({ serializer: { name: 'bad name' } as never })).toThrow(InvalidOptionError);
      });

      it('compresses payloads above the threshold only', async () => {
        const cache = await make({ compression: { threshold: 100, algorithm: gzip } });
        const big = { text: 'x'.repeat(5_000) };
        await cache.set('big', big);
        await cache.set('small', { text: 'short' });
        const rawBig = (await h.raw.get(`${cache.prefix}big`))!;
        const rawSmall = (await h.raw.get(`${cache.prefix}small`))!;
        expect(rawBig.toString('latin1')).toContain(',json+gzip,');
        expect(rawBig.byteLength).toBeLessThan(500);
        expect(rawSmall.toString('latin1')).toContain(',json,');
        expect(await cache.get('big')).toEqual(big);
        expect(await cache.get('small')).toEqual({ text: 'short' });
      });

      it('treats a corrupt entry as a miss, deletes it and reports it', async () => {
        const cache = await make();
        const corrupt = vi.fn();
        cache.on('corrupt', corrupt);
        for (const [key, garbage] of [
          ['garbage', 'not an entry at all'],
          ['badjson', 'L1v,id,1,,,0,json,\n{"truncated":'],
          ['badheader', 'L1v,id,zz!,\n1'],
        ] as const) {
          await h.raw.set(`${cache.prefix}${key}`, garbage);
          expect(await cache.getOrSet(key, () => 'fresh')).toBe('fresh');
          expect(await cache.get(key)).toBe('fresh');
        }
        expect(corrupt).toHaveBeenCalledTimes(3);
        expect(corrupt.mock.calls.map((c) => (c[0] as { reason: string }).reason)).toEqual(['format', 'payload', 'format']);
        expect(cache.stats().corrupt).toBe(3);
        await h.raw.set(`${cache.prefix}plain`, 'junk');
        expect(await cache.get('plain')).toBeUndefined();
        await eventually(async () => (await h.raw.get(`${cache.prefix}plain`)) === undefined);
      });

      it('reads an entry written by another serializer as a miss', async () => {
        const ns = uniqueNamespace(driver);
        const store = await h.store();
        const packed = createCache({ namespace: ns, store, serializer: msgpackSerializer() });
        await packed.set('k', { a: 1 });
        const json = createCache({ namespace: ns, store });
        caches.push(json);
        const corrupt = vi.fn();
        json.on('corrupt', corrupt);
        expect(await json.getOrSet('k', () => 'json value')).toBe('json value');
        expect(corrupt).toHaveBeenCalledTimes(1);
      });

      it('still reads entries written in format v1 (old-envelope fixture)', async () => {
        const cache = await make();
        // Written by Larder 0.1 (format L1): keep this fixture as the format evolves.
        await h.raw.set(`${cache.prefix}fixture`, 'L1v,0abc.1,mhdk7xs0,,,5,json,\n{"id":1,"name":"Ada"}');
        expect(await cache.get('fixture')).toEqual({ id: 1, name: 'Ada' });
        // A tagged entry is valid while its tag keeps the version it recorded.
        const namespace = cache.prefix.split(':')[0]!;
        await h.raw.set(`${namespace}:tags:v1:t`, 'v1');
        await h.raw.set(`${cache.prefix}tagged`, 'L1v,0abc.2,mhdk7xs0,,,5,json,[["t","v1"]]\n[1,2]');
        expect(await cache.get('tagged')).toEqual([1, 2]);
        await cache.invalidateTags(['t']);
        expect(await cache.get('tagged')).toBeUndefined();
      });
    });

    describe('stale serving, early refresh and timeouts', () => {
      it('serves a stale value at once within grace and refreshes it in the background', async () => {
        const clock = new ManualClock();
        const cache = await make({ ttl: 1_000, grace: 10_000, jitter: 0, clock, earlyRefresh: false });
        await cache.getOrSet('s', () => 'v1');
        clock.advance(1_500);
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        const loader = vi.fn(async (_: LoaderContext<string>) => {
          await gate;
          return 'v2';
        });
        expect(await cache.getOrSet('s', loader)).toBe('v1');
        expect(await cache.getOrSet('s', loader)).toBe('v1');
        release();
        await eventually(async () => (await cache.get('s')) === 'v2');
        expect(loader).toHaveBeenCalledTimes(1);
        expect(loader.mock.calls[0]![0]).toMatchObject({ stale: 'v1', background: true });
        expect(cache.stats().staleHits).toBeGreaterThanOrEqual(1);
      });

      it('a hung background refresh does not pin the key past its grace', async () => {
        const cache = await make({ ttl: 100, grace: 300, jitter: 0, earlyRefresh: false });
        await cache.getOrSet('h', () => 'old');
        await sleep(150);
        let calls = 0;
        const loader = async () => (++calls === 1 ? new Promise<string>(() => undefined) : 'new');
        expect(await cache.getOrSet('h', loader)).toBe('old');
        await sleep(400);
        expect(await cache.getOrSet('h', loader)).toBe('new');
        expect(calls).toBe(2);
      });

      it('fail-safe: serves the stale value when the loader fails, backs off, then fails past grace', async () => {
        const clock = new ManualClock();
        const cache = await make({
          ttl: 1_000,
          grace: 10_000,
          jitter: 0,
          clock,
          timeout: Infinity,
          failSafeBackoff: 2_000,
          earlyRefresh: false,
        });
        await cache.getOrSet('f', () => 'good');
        clock.advance(1_500);
        const failing = vi.fn(async () => {
          throw new Error('db down');
        });
        const loadErrors = vi.fn();
        cache.on('load-error', loadErrors);
        expect(await cache.getOrSet('f', failing)).toBe('good');
        expect(loadErrors).toHaveBeenCalledWith(expect.objectContaining({ failSafe: true }));
        // Backed off: the failing source is not asked again for failSafeBackoff.
        await eventually(async () => {
          clock.advance(0);
          return (await cache.getOrSet('f', failing)) === 'good' && failing.mock.calls.length === 1;
        });
        clock.advance(2_100);
        expect(await cache.getOrSet('f', failing)).toBe('good');
        expect(failing).toHaveBeenCalledTimes(2);
        clock.advance(20_000);
        await expect(cache.getOrSet('f', failing)).rejects.toThrow('db down');
      });

      it('counts one stale hit per caller when a background refresh fails, and still backs off', async () => {
        for (const timeout of [0, 20]) {
          const clock = new ManualClock();
          const cache = await make({
            ttl: 1_000,
            grace: 60_000,
            jitter: 0,
            clock,
            timeout,
            failSafeBackoff: 5_000,
            earlyRefresh: false,
          });
          await cache.getOrSet('b', () => 'good');
          clock.advance(1_500);
          const hits = vi.fn();
          cache.on('hit', hits);
          const before = cache.stats();
          let fail!: () => void;
          const failed = new Promise<void>((r) => (fail = r));
          const failing = vi.fn(async () => {
            // With a soft timeout, fail after it: the caller was answered stale already.
            await failed;
            throw new Error('db down');
          });
          const served = cache.getOrSet('b', failing);
          if (timeout === 0) fail();
          expect(await served).toBe('good');
          fail();
          await eventually(() => cache.stats().loadErrors === 1);
          await sleep(20);
          // One caller, served stale once: one stale hit, however the refresh ended.
          const after = cache.stats();
          expect([after.hits - before.hits, after.staleHits - before.staleHits]).toEqual([1, 1]);
          expect(hits).toHaveBeenCalledTimes(1);
          // The failure backed the entry off: no second load within failSafeBackoff.
          await eventually(
            async () => (await cache.getOrSet('b', failing)) === 'good' && cache.stats().staleHits === after.staleHits,
          );
          expect(failing).toHaveBeenCalledTimes(1);
        }
      });

      it('soft timeout: answers stale after the timeout and lets the load finish in the background', async () => {
        const clock = new ManualClock();
        const cache = await make({ ttl: 1_000, grace: 60_000, jitter: 0, clock, timeout: 50, earlyRefresh: false });
        await cache.getOrSet('t', () => 'old');
        clock.advance(1_500);
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        const started = Date.now();
        expect(
          await cache.getOrSet('t', async () => {
            await gate;
            return 'new';
          }),
        ).toBe('old');
        expect(Date.now() - started).toBeLessThan(1_000);
        release();
        await eventually(async () => (await cache.get('t', { allowStale: true })) === 'new');
      });

      it('hard timeout: aborts the loader and rejects with a LoaderTimeoutError when nothing is stale', async () => {
        const cache = await make();
        let signal: AbortSignal | undefined;
        const error = await cache
          .getOrSet(
            'h',
            (ctx) => {
              signal = ctx.signal;
              return new Promise<never>(() => undefined);
            },
            { hardTimeout: 50 },
          )
          .catch((e: unknown) => e);
        expect(isLarderError(error, 'E_LOADER_TIMEOUT')).toBe(true);
        expect(signal!.aborted).toBe(true);
        expect(cache.stats().loadTimeouts).toBe(1);
      });

      it('an early refresh never holds readers: a slow one answers them at once, a hung one is dropped at expiry', async () => {
        const clock = new ManualClock();
        const cache = await make({ ttl: 1_000, jitter: 0, clock, earlyRefresh: { ahead: 0.9, beta: 0 } });
        await cache.getOrSet('e', () => 'v1');
        clock.advance(950);
        let calls = 0;
        // Hangs the first time (the early refresh), answers afterwards.
        const loader = () => (++calls === 1 ? new Promise<string>(() => undefined) : 'v2');
        const started = Date.now();
        const reads = await Promise.all(Array.from({ length: 20 }, () => cache.getOrSet('e', loader)));
        expect(reads).toEqual(Array.from({ length: 20 }, () => 'v1'));
        expect(Date.now() - started).toBeLessThan(200);
        await eventually(() => calls === 1, 5_000, 'the early refresh to call the loader');
        // Past expiry the hung refresh no longer holds the key: the next read loads.
        clock.advance(100);
        await eventually(async () => (await cache.getOrSet('e', loader)) === 'v2', 5_000, 'a load after expiry');
        expect(calls).toBe(2);
      });

      it('a failed early refresh is not retried on every read, and fail-safe backoff holds with early refresh on', async () => {
        const clock = new ManualClock();
        const cache = await make({ ttl: 1_000, grace: 60_000, jitter: 0, clock, failSafeBackoff: 5_000 });
        await cache.getOrSet('f', () => 'good');
        const failing = vi.fn(async () => {
          throw new Error('db down');
        });
        // In the refresh-ahead window: the first read refreshes and fails; the others are backed off.
        clock.advance(950);
        for (let i = 0; i < 50; i++) {
          expect(await cache.getOrSet('f', failing)).toBe('good');
          await sleep(1);
        }
        await eventually(() => cache.stats().loadErrors === 1);
        expect(failing).toHaveBeenCalledTimes(1);
        // Stale now: fail-safe serves it and backs off for 5 s (early refresh stays quiet too).
        clock.advance(6_000);
        for (let i = 0; i < 50; i++) {
          expect(await cache.getOrSet('f', failing)).toBe('good');
          await sleep(1);
        }
        await eventually(() => cache.stats().loadErrors === 2);
        expect(failing).toHaveBeenCalledTimes(2);
      });

      it('refresh-ahead starts early enough for a slow loader; XFetch alone refreshes before expiry too', async () => {
        for (const earlyRefresh of [
          { ahead: 0.9, beta: 0 },
          { ahead: 1, beta: 1 },
        ]) {
          const clock = new ManualClock();
          const cache = await make({ ttl: 1_000, jitter: 0, clock, earlyRefresh });
          let version = 0;
          // Each load takes 150 ms of the cache's clock: more than the last 10% of the TTL.
          const loader = vi.fn(async () => {
            clock.advance(150);
            return ++version;
          });
          await cache.getOrSet('slow', loader);
          const misses = vi.fn();
          cache.on('miss', misses);
          for (let t = 0; t < 3_000; t += 20) {
            clock.advance(20);
            await cache.getOrSet('slow', loader);
            await sleep(1);
          }
          expect(misses).not.toHaveBeenCalled();
          expect(cache.stats().refreshes).toBeGreaterThanOrEqual(2);
        }
      });

      it('refreshes a hot key ahead of expiry so readers never miss', async () => {
        const clock = new ManualClock();
        const cache = await make({ ttl: 1_000, jitter: 0, clock, earlyRefresh: { ahead: 0.8, beta: 0 } });
        let version = 0;
        const loader = vi.fn(async () => ++version);
        await cache.getOrSet('hot', loader);
        const misses = vi.fn();
        cache.on('miss', misses);
        for (let t = 0; t < 3_000; t += 50) {
          clock.advance(50);
          await cache.getOrSet('hot', loader);
          // let a background refresh land before time moves on
          await eventually(async () => true);
          await sleep(2);
        }
        expect(misses).not.toHaveBeenCalled();
        expect(loader.mock.calls.length).toBeGreaterThanOrEqual(3);
        expect(cache.stats().refreshes).toBeGreaterThanOrEqual(3);
      });
    });

    describe('stats, events and lifecycle', () => {
      it('counts hits, misses, loads and errors; events carry keys, never values', async () => {
        const cache = await make();
        const seen: unknown[] = [];
        for (const name of ['hit', 'miss', 'load', 'load-error'] as const) cache.on(name, (e) => seen.push({ name, ...e }));
        await cache.getOrSet('a', () => 'secret-value');
        await cache.getOrSet('a', () => 'secret-value');
        await cache.getOrSet('b', () => Promise.reject(new Error('x'))).catch(() => undefined);
        expect(cache.stats()).toMatchObject({ hits: 1, misses: 2, loads: 2, loadErrors: 1 });
        expect(JSON.stringify(seen)).not.toContain('secret-value');
        expect(seen).toContainEqual(expect.objectContaining({ name: 'hit', key: `${cache.prefix}a`, tier: 'l2' }));
      });

      it('a listener that throws does not break the cache', async () => {
        const cache = await make();
        cache.on('miss', () => {
          throw new Error('bad listener');
        });
        expect(await cache.getOrSet('k', () => 1)).toBe(1);
      });

      it('rejects calls after close with ClosedError', async () => {
        const cache = await make();
        await cache.close();
        await expect(cache.get('k')).rejects.toMatchObject({ code: 'E_CLOSED' });
        await expect(cache.getOrSet('k', () => 1)).rejects.toMatchObject({ code: 'E_CLOSED' });
      });

      it('closing a child stops the child only; closing the root stops its children', async () => {
        const cache = await make();
        const child = cache.namespace('child');
        await child.set('c', 1);
        await child.close();
        await expect(child.get('c')).rejects.toMatchObject({ code: 'E_CLOSED' });
        await expect(child.getOrSet('c', () => 2)).rejects.toMatchObject({ code: 'E_CLOSED' });
        expect(await cache.getOrSet('k', () => 'root still works')).toBe('root still works');
        expect(await cache.namespace('child').get('c')).toBe(1);
        const other = cache.namespace('other');
        await cache.close();
        await expect(other.get('x')).rejects.toMatchObject({ code: 'E_CLOSED' });
      });

      it('caches sharing a store do not close it under each other', async () => {
        const store = await h.store();
        const ns = uniqueNamespace(driver);
        const a = createCache({ namespace: ns, store, bus: { heartbeat: 50 } });
        const b = createCache({ namespace: ns, store, l1: {}, bus: { heartbeat: 50 } });
        const c = createCache({ namespace: ns, store, bus: { heartbeat: 50 } });
        caches.push(b, c);
        await a.set('shared', 'kept');
        await a.close();
        // The memory store is not emptied, and a Redis store keeps its connections for B and C:
        // C's invalidation still reaches B's L1 through the store's subscriber connection.
        await eventually(async () => (await b.get('shared')) === 'kept' && b.stats().l1Entries === 1);
        await c.set('shared', 'changed');
        await eventually(async () => (await b.get('shared')) === 'changed', 3_000, "C's invalidation to reach B");
        expect(b.store.status().ready).toBe(true);
      });
    });
  });
}
