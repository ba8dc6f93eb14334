/**
 * Coalescing on a single Redis, both drivers, on a private redis-server so `INFO commandstats`
 * counts only this file's commands:
 * - reads issued while others are in flight go out as one `MGET` per tick (text and bytes apart,
 *   at most MAX_BATCH keys each); a lone read is a `GET`;
 * - a refused `MGET` (an ACL) falls back to `GET`s for good; a transient error fails one batch;
 * - a batch that times out fails open; `close()` sends a pending batch first;
 * - the leases and compare-and-set writes of concurrent misses go out as one script call each;
 *   a key of another type fails only its own lease or write; refused scripts (an ACL) fall back
 *   to `SET NX GET` leases;
 * - `CROSSSLOT` (a multi-key command over several slots, refused as a sharding proxy does) turns
 *   all three kinds of batch off for good.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createCache,
  InvalidOptionError,
  isAbortError,
  isLarderError,
  msgpackSerializer,
  StoreError,
  type Cache,
} from '../src/index.js';
import { ioredisStore } from '../src/stores/ioredis.js';
import { MAX_BATCH, MAX_SCRIPT_BATCH } from '../src/stores/tick-batch.js';
import { redisStore } from '../src/stores/redis.js';
import type { RedisConnectionOptions } from '../src/stores/redis-store.js';
import type { Store } from '../src/stores/store.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { commandStats, ioredis, nodeRedis, statsDelta, uniqueNamespace, type NodeRedis } from './helpers/redis.js';

type Driver = 'redis' | 'ioredis';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

interface SetupOptions extends RedisConnectionOptions {
  /** Connect as this ACL user, with `rules` on top of every permission (default: no `MGET`). */
  user?: string;
  rules?: string[];
  serverArgs?: string[];
}

async function setup(driver: Driver, options: SetupOptions = {}) {
  const { user, rules = ['-mget'], serverArgs, ...storeOptions } = options;
  const redis: RedisServer = await startRedis({ args: serverArgs ?? [] });
  cleanups.push(() => redis.stop());
  const inspector: NodeRedis = await nodeRedis(redis.url);
  cleanups.push(() => inspector.close());
  if (user !== undefined) await inspector.sendCommand(['ACL', 'SETUSER', user, 'on', 'nopass', '~*', '&*', '+@all', ...rules]);
  const url = user === undefined ? redis.url : redis.url.replace('redis://', `redis://${user}:any@`);
  let store: Store;
  if (driver === 'redis') {
    const client = await nodeRedis(url);
    cleanups.push(async () => client.isOpen && client.destroy());
    store = redisStore({ client, ...storeOptions });
  } else {
    const client = await ioredis(url);
    cleanups.push(async () => client.disconnect());
    store = ioredisStore({ client, ...storeOptions });
  }
  const cacheOn = (extra: Parameters<typeof createCache>[0] = {}): Cache => {
    const cache = createCache({ namespace: uniqueNamespace('batch'), store, bus: false, ...extra });
    cleanups.push(() => cache.close());
    return cache;
  };
  /** Calls per command during `work` (INFO itself left out). */
  const counted = async (work: () => Promise<unknown>): Promise<Record<string, number>> => {
    const before = await commandStats(inspector);
    await work();
    const delta = statsDelta(before, await commandStats(inspector));
    delete delta.info;
    return delta;
  };
  return { redis, inspector, store, cacheOn, counted };
}

const keys = (n: number, prefix = 'k') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

describe.each<Driver>(['redis', 'ioredis'])('read coalescing over %s', (driver) => {
  it('reads issued while one is in flight leave together as one MGET; a lone read is a GET', async () => {
    const { cacheOn, counted } = await setup(driver);
    const cache = cacheOn();
    const names = keys(50);
    await cache.setMany(names.map((key, i) => ({ key, value: { i } })));
    let values: unknown[] = [];
    // The first finds nothing in flight and goes at once; the other 49 wait for the tick.
    const burst = await counted(async () => (values = await Promise.all(names.map((k) => cache.getOrSet(k, () => 'loaded')))));
    expect(values).toEqual(names.map((_, i) => ({ i })));
    expect(burst).toEqual({ get: 1, mget: 1 });
    expect(cache.stats().hits).toBe(50);
    const lone = await counted(async () => expect(await cache.get('k7')).toEqual({ i: 7 }));
    expect(lone).toEqual({ get: 1 });
    // Misses in a batch answer as misses (one MGET, then each key's own load).
    const missed = await Promise.all(keys(5, 'cold').map((k) => cache.getOrSet(k, () => `loaded ${k}`)));
    expect(missed).toEqual(keys(5, 'cold').map((k) => `loaded ${k}`));
  });

  it('text and binary reads go in separate MGETs, and a batch holds at most MAX_BATCH keys', async () => {
    const { cacheOn, counted } = await setup(driver);
    const json = cacheOn();
    const packed = cacheOn({ serializer: msgpackSerializer() });
    await json.setMany(keys(10).map((key, i) => ({ key, value: `j${i}` })));
    await packed.setMany(keys(10).map((key, i) => ({ key, value: new Date(i * 1_000) })));
    let text: unknown[] = [];
    let bytes: unknown[] = [];
    const mixed = await counted(async () => {
      const lone = json.get('k0');
      [text, bytes] = await Promise.all([
        Promise.all(keys(10).map((k) => json.get(k))),
        Promise.all(keys(10).map((k) => packed.get(k))),
        lone,
      ]);
    });
    expect(text).toEqual(keys(10).map((_, i) => `j${i}`));
    expect(bytes).toEqual(keys(10).map((_, i) => new Date(i * 1_000)));
    expect(mixed).toEqual({ get: 1, mget: 2 });

    const many = 2 * MAX_BATCH + 44;
    await json.setMany(keys(many, 'b').map((key, i) => ({ key, value: i })));
    let read: unknown[] = [];
    const big = await counted(async () => (read = await Promise.all(keys(many, 'b').map((k) => json.get(k)))));
    expect(read).toEqual(keys(many, 'b').map((_, i) => i));
    // One GET went at once; the rest in batches of at most MAX_BATCH.
    expect(big).toEqual({ get: 1, mget: Math.ceil((many - 1) / MAX_BATCH) });
  });

  it('a refused MGET (an ACL that allows GET only) is read key by key, and reads are GETs from then on', async () => {
    const { cacheOn, counted } = await setup(driver, { user: 'getonly' });
    const cache = cacheOn();
    const storeErrors: unknown[] = [];
    cache.on('store-error', ({ error }) => storeErrors.push(error));
    await cache.setMany(keys(20).map((key, i) => ({ key, value: i })));
    let first: unknown[] = [];
    const refused = await counted(async () => (first = await Promise.all(keys(20).map((k) => cache.get(k)))));
    expect(first).toEqual(keys(20).map((_, i) => i));
    // The refused MGET is not counted as a call; every key was read again with GET.
    expect(refused.get).toBe(20);
    expect(refused.mget).toBeUndefined();
    expect(storeErrors).toEqual([]);
    const after = await counted(async () => Promise.all(keys(20).map((k) => cache.getOrSet(k, () => -1))));
    expect(after).toEqual({ get: 20 });
  });

  it('coalesce: false sends every read as its own GET; a value other than a boolean is refused', async () => {
    const { cacheOn, counted } = await setup(driver, { coalesce: false });
    const cache = cacheOn();
    await cache.setMany(keys(10).map((key, i) => ({ key, value: i })));
    let values: unknown[] = [];
    const burst = await counted(async () => (values = await Promise.all(keys(10).map((k) => cache.getOrSet(k, () => -1)))));
    expect(values).toEqual(keys(10).map((_, i) => i));
    expect(burst).toEqual({ get: 10 });
    const client = await nodeRedis();
    cleanups.push(() => client.close());
    expect(() => redisStore({ client, coalesce: 'yes' as never })).toThrow(InvalidOptionError);
  });

  it('a server without MGET (renamed away, as some proxies lack it) is read key by key too', async () => {
    const { cacheOn, counted } = await setup(driver, { serverArgs: ['--rename-command', 'MGET', '""'] });
    const cache = cacheOn();
    for (const [i, key] of keys(5).entries()) await cache.set(key, i);
    let values: unknown[] = [];
    const refused = await counted(async () => (values = await Promise.all(keys(5).map((k) => cache.getOrSet(k, () => -1)))));
    expect(values).toEqual([0, 1, 2, 3, 4]);
    // The lone read, then the batch's four again one by one after MGET was refused.
    expect(refused).toEqual({ get: 5 });
    const after = await counted(async () => Promise.all(keys(5).map((k) => cache.getOrSet(k, () => -1))));
    expect(after).toEqual({ get: 5 });
  });

  it('a transient error reply (BUSY) fails the batch it meets, and reads are coalesced again afterwards', async () => {
    const { redis, cacheOn, counted } = await setup(driver, { breaker: false });
    const cache = cacheOn({ failOpen: false });
    await cache.setMany(keys(5).map((key, i) => ({ key, value: i })));
    const blocker = await nodeRedis(redis.url);
    cleanups.push(async () => blocker.destroy());
    await blocker.configSet('busy-reply-threshold', '50');
    // A script busy for 400 ms on another connection: Redis answers BUSY to everything else meanwhile.
    const busyFor400ms =
      'local t = redis.call("TIME") while true do local n = redis.call("TIME") ' +
      'if (n[1] - t[1]) * 1e6 + (n[2] - t[2]) > 400000 then break end end return 1';
    const script = blocker.eval(busyFor400ms, { keys: [], arguments: [] });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const during = await Promise.all(keys(5).map((k) => cache.get(k).catch((e: unknown) => e)));
    for (const error of during) expect(String((error as StoreError).cause)).toMatch(/BUSY/);
    await script;
    let values: unknown[] = [];
    const after = await counted(async () => (values = await Promise.all(keys(5).map((k) => cache.get(k)))));
    expect(values).toEqual([0, 1, 2, 3, 4]);
    expect(after).toEqual({ get: 1, mget: 1 });
  });

  it('close() sends the reads waiting for the end of the tick before it closes the connection', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    // A store made from a URL: closing the cache closes its client.
    const store = driver === 'redis' ? redisStore({ url: redis.url }) : ioredisStore({ url: redis.url });
    const cache = createCache({ namespace: uniqueNamespace('batch'), store, bus: false, failOpen: false });
    await cache.setMany(keys(5).map((key, i) => ({ key, value: i })));
    const reads = keys(5).map((k) => cache.get(k));
    const closing = cache.close();
    expect(await Promise.all(reads)).toEqual([0, 1, 2, 3, 4]);
    await closing;
  });

  it('an abort rejects its own caller at once; the batched read still answers those who share it', async () => {
    const { cacheOn } = await setup(driver);
    const cache = cacheOn();
    await cache.setMany(keys(4).map((key, i) => ({ key, value: i })));
    const controller = new AbortController();
    const lone = cache.getOrSet('k0', () => -1);
    const aborted = keys(4)
      .slice(1)
      .map((k) => cache.getOrSet(k, () => -1, { signal: controller.signal }).catch((e: unknown) => e));
    const shared = cache.getOrSet('k1', () => -1);
    controller.abort();
    for (const error of await Promise.all(aborted)) expect(isAbortError(error)).toBe(true);
    expect(await Promise.all([lone, shared])).toEqual([0, 1]);
    expect(await cache.getOrSet('k3', () => -1)).toBe(3);
  });

  it('a key holding another type reads as a miss in a batch (MGET answers nil), and getOrSet still answers', async () => {
    const { redis, cacheOn } = await setup(driver);
    const cache = cacheOn();
    const storeErrors: string[] = [];
    cache.on('store-error', ({ operation }) => storeErrors.push(operation));
    await cache.setMany(keys(3).map((key, i) => ({ key, value: i })));
    const inspector = await nodeRedis(redis.url);
    cleanups.push(() => inspector.close());
    await inspector.hSet(`${cache.prefix}hash`, 'field', 'x');
    const answers = await Promise.all(['k0', 'hash', 'k1', 'k2'].map((k) => cache.getOrSet(k, () => `loaded ${k}`)));
    expect(answers).toEqual([0, 'loaded hash', 1, 2]);
    // Its lease met WRONGTYPE: reported, and the value came from the loader.
    expect(storeErrors).toContain('lease');
  });

  it('a batch that times out fails open: getOrSet answers from its loader, get rejects with a StoreError', async () => {
    const { redis, cacheOn } = await setup(driver, { commandTimeout: 100, breaker: false });
    const open = cacheOn();
    const strict = cacheOn({ failOpen: false });
    await open.setMany(keys(10).map((key) => ({ key, value: 'cached' })));
    redis.pause();
    try {
      const answers = await Promise.all(keys(10).map((k) => open.getOrSet(k, () => `loaded ${k}`)));
      expect(answers).toEqual(keys(10).map((k) => `loaded ${k}`));
      const errors = await Promise.all(keys(10).map((k) => strict.get(k).catch((e: unknown) => e)));
      for (const error of errors) {
        expect(error).toBeInstanceOf(StoreError);
        expect(isLarderError(error, 'E_COMMAND_TIMEOUT')).toBe(true);
      }
    } finally {
      redis.resume();
    }
  });
});

/** Script calls (by source or by SHA) in a `counted` delta. */
const scriptCalls = (delta: Record<string, number>): number => (delta.eval ?? 0) + (delta.evalsha ?? 0);

/** A promise and its release: loaders held until the test lets them all finish in one tick. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

/** Misses on every key at once, their loaders held until all have leased, then let go in one tick. */
async function coldBurst(cache: Cache, names: readonly string[]): Promise<unknown[]> {
  const loaders = gate();
  const all = Promise.all(
    names.map((k) =>
      cache.getOrSet(k, async () => {
        await loaders.wait;
        return `v ${k}`;
      }),
    ),
  );
  await settle();
  loaders.open();
  return all;
}

describe.each<Driver>(['redis', 'ioredis'])('lease and write coalescing over %s', (driver) => {
  it('concurrent misses take their leases and write in script calls of up to MAX_SCRIPT_BATCH keys, every key with its TTL', async () => {
    const { cacheOn, counted, inspector } = await setup(driver);
    const cache = cacheOn();
    const names = keys(2 * MAX_SCRIPT_BATCH + 1, 'cold');
    let values: unknown[] = [];
    const burst = await counted(async () => (values = await coldBurst(cache, names)));
    expect(values).toEqual(names.map((k) => `v ${k}`));
    // Reads: a GET at once, an MGET of the others. Leases: the first alone (SET NX GET), the
    // others in two script calls. Writes: the first alone, the others in two script calls.
    // (INFO counts the scripts' own GETs and SETs as calls too.)
    expect(burst.mget).toBe(1);
    expect(scriptCalls(burst)).toBe(5);
    for (const k of names) {
      const ttl = await inspector.pTTL(`${cache.prefix}${k}`);
      expect(ttl).toBeGreaterThan(0);
    }
    expect(await Promise.all(names.map((k) => cache.get(k)))).toEqual(values);
  });

  it('a key of another type fails only its own lease or write in a batch; getOrSet still answers', async () => {
    const { cacheOn, inspector } = await setup(driver);
    const cache = cacheOn();
    const failures: string[] = [];
    cache.on('store-error', ({ operation, key }) => failures.push(`${operation} ${String(key).slice(cache.prefix.length)}`));
    // `hash` holds a hash from the start: its lease meets WRONGTYPE (its read, in an MGET, sees nil).
    await inspector.hSet(`${cache.prefix}hash`, 'field', 'x');
    const loaders = gate();
    const names = ['a', 'hash', 'b', 'c', 'late'];
    const answers = Promise.all(
      names.map((k) =>
        cache.getOrSet(k, async () => {
          // `late` becomes a hash while its loader runs: its write meets WRONGTYPE.
          if (k === 'late') {
            await inspector.del(`${cache.prefix}late`);
            await inspector.hSet(`${cache.prefix}late`, 'field', 'x');
          }
          await loaders.wait;
          return `v ${k}`;
        }),
      ),
    );
    await settle();
    loaders.open();
    expect(await answers).toEqual(names.map((k) => `v ${k}`));
    // getOrSet answers once its loader has; the writes report a little later.
    await settle();
    // `hash`: its lease, then its write (SET_IF reads the key first). `late`: its write, then the
    // release of the lease it no longer holds. Nothing else failed.
    expect(failures.sort()).toEqual(['lease hash', 'release late', 'set hash', 'set late']);
    // The others were written, and the odd keys left as they were.
    expect(await Promise.all(['a', 'b', 'c'].map((k) => cache.get(k)))).toEqual(['v a', 'v b', 'v c']);
    expect(await inspector.type(`${cache.prefix}hash`)).toBe('hash');
    expect(await inspector.type(`${cache.prefix}late`)).toBe('hash');
  });

  it('refused scripts (an ACL without EVAL) take each lease with SET NX GET; getOrSet answers from the loader', async () => {
    const { cacheOn, counted, inspector } = await setup(driver, { user: 'noscripts', rules: ['-@scripting'] });
    /** Script calls the ACL refused so far. */
    const refusedScripts = async () => {
      const info = await inspector.info('commandstats');
      let refused = 0;
      for (const match of info.matchAll(/^cmdstat_eval(?:sha)?:.*rejected_calls=(\d+)/gm)) refused += Number(match[1]);
      return refused;
    };
    const cache = cacheOn();
    const failures: string[] = [];
    cache.on('store-error', ({ operation }) => failures.push(operation));
    let values: unknown[] = [];
    const first = await counted(async () => {
      values = await Promise.all(keys(10, 'x').map((k) => cache.getOrSet(k, () => k)));
      await settle();
    });
    expect(values).toEqual(keys(10, 'x'));
    // Every lease was taken (natively): none failed. The writes and the releases that follow
    // them, scripts too, were refused.
    const count = (operation: string) => failures.filter((o) => o === operation).length;
    expect([count('lease'), count('set'), count('release')]).toEqual([0, 10, 10]);
    expect(first.set).toBe(10);
    // From then on no lease is sent as a script: only the writes and releases are refused.
    failures.length = 0;
    const before = await refusedScripts();
    const again = await counted(async () => {
      await Promise.all(keys(10, 'y').map((k) => cache.getOrSet(k, () => k)));
      await settle();
    });
    expect(again.set).toBe(10);
    expect([count('lease'), count('set'), count('release')]).toEqual([0, 10, 10]);
    expect((await refusedScripts()) - before).toBe(20);

    // Nothing was cached: the next call loads again. `lock: false` writes with plain SETs, so
    // under such an ACL it caches (the README's advice).
    let loads = 0;
    expect(await cache.getOrSet('x0', () => `again ${++loads}`)).toBe('again 1');
    const plain = cacheOn({ lock: false });
    const plainFailures: string[] = [];
    plain.on('store-error', ({ operation }) => plainFailures.push(operation));
    const cached = await Promise.all(keys(10, 'z').map((k) => plain.getOrSet(k, () => `${k} ${++loads}`)));
    await settle();
    expect(await Promise.all(keys(10, 'z').map((k) => plain.getOrSet(k, () => 'loaded twice')))).toEqual(cached);
    expect(plainFailures).toEqual([]);
  });

  it('coalesce: false sends each lease and write as its own command', async () => {
    const { cacheOn, counted } = await setup(driver, { coalesce: false });
    const cache = cacheOn();
    const burst = await counted(async () => {
      await Promise.all(keys(10, 'solo').map((k) => cache.getOrSet(k, () => k)));
      await settle();
    });
    // Ten SET NX GET leases, and ten scripted writes (their inner SETs counted as SETs too).
    expect(scriptCalls(burst)).toBe(10);
    expect(burst.set).toBe(20);
  });

  it('close() sends the leases and writes waiting for the end of the tick before it closes the connection', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const store = driver === 'redis' ? redisStore({ url: redis.url }) : ioredisStore({ url: redis.url });
    const cache = createCache({ namespace: uniqueNamespace('batch'), store, bus: false, failOpen: false });
    const inspector = await nodeRedis(redis.url);
    cleanups.push(() => inspector.close());
    const lease = (key: string) => ({ key: `${cache.prefix}${key}`, value: 'lease', ttl: 60_000 });
    const leases = await store.lease(keys(3, 'l').map(lease), false);
    expect(leases).toEqual([undefined, undefined, undefined]);
    const before = await commandStats(inspector);
    // Something in flight, so that both the leases and the writes below wait for the tick.
    const inFlight = cache.get('other');
    const pending = [
      store.lease([lease('p0')], false),
      store.lease([lease('p1')], false),
      store.setIf([{ key: `${cache.prefix}l0`, value: 'written', ttl: 60_000, expect: 'lease' }]),
      store.setIf([{ key: `${cache.prefix}l1`, value: 'written', ttl: 60_000, expect: 'lease' }]),
      inFlight,
    ];
    const closing = cache.close();
    expect(await Promise.all(pending)).toEqual([[undefined], [undefined], [true], [true], undefined]);
    await closing;
    // The two leases as one script call, the two writes as another.
    expect(scriptCalls(statsDelta(before, await commandStats(inspector)))).toBe(2);
    expect(await inspector.mGet([`${cache.prefix}l0`, `${cache.prefix}l1`, `${cache.prefix}p0`])).toEqual([
      'written',
      'written',
      'lease',
    ]);
  });
});

/**
 * A plain client on a cluster node that owns every slot: single-key commands work, and a
 * multi-key command over several slots is refused with `CROSSSLOT`, as some sharding proxies
 * do. No test here runs the cluster drivers (test/cluster does).
 */
describe.each<Driver>(['redis', 'ioredis'])('coalescing refused with CROSSSLOT, over %s', (driver) => {
  async function crossSlotSetup() {
    const config = `larder-crossslot-${process.pid}-${Math.random().toString(36).slice(2)}.conf`;
    const ctx = await setup(driver, { serverArgs: ['--cluster-enabled', 'yes', '--cluster-config-file', config] });
    cleanups.push(async () => rmSync(join(tmpdir(), config), { force: true }));
    await ctx.inspector.sendCommand(['CLUSTER', 'ADDSLOTSRANGE', '0', '16383']);
    for (let i = 0; !(await ctx.inspector.clusterInfo()).includes('cluster_state:ok'); i++) {
      if (i === 200) throw new Error('the one-node cluster did not come up');
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    return ctx;
  }

  /** Commands Redis refused so far (CROSSSLOT counts as a rejected call), per command. */
  const rejected = async (inspector: NodeRedis): Promise<Record<string, number>> => {
    const info = await inspector.info('commandstats');
    const counts: Record<string, number> = {};
    for (const [, name, n] of info.matchAll(/^cmdstat_(\w+):.*rejected_calls=(\d+)/gm)) counts[name!] = Number(n);
    return counts;
  };

  it('reads, leases and writes are sent key by key after the first refusal; nothing fails, every key gets its TTL', async () => {
    const { cacheOn, counted, inspector } = await crossSlotSetup();
    const cache = cacheOn();
    const failures: unknown[] = [];
    cache.on('store-error', ({ error }) => failures.push(error));
    const names = keys(12, 'slot');
    let values: unknown[] = [];
    const before = await rejected(inspector);
    await counted(async () => {
      values = await coldBurst(cache, names);
      await settle();
    });
    expect(values).toEqual(names.map((k) => `v ${k}`));
    expect(failures).toEqual([]);
    // Script batches were refused, then sent key by key: at least two (the leases' and the
    // writes', each kind turning itself off), and more when several lease batches left before the
    // first refusal was back. That happens on a loaded machine: the burst's MGET is refused first,
    // so its misses are read by GETs whose replies can span several ticks, each tick's leases
    // leaving as a batch. (A count of at least two does not tell the kinds apart; the burst below
    // shows that neither kind is tried again.)
    const after = await rejected(inspector);
    const refusedScripts = (after.evalsha ?? 0) + (after.eval ?? 0) - (before.evalsha ?? 0) - (before.eval ?? 0);
    expect(refusedScripts).toBeGreaterThanOrEqual(2);
    expect(refusedScripts).toBeLessThanOrEqual(names.length);
    for (const k of names) expect(await inspector.pTTL(`${cache.prefix}${k}`)).toBeGreaterThan(0);

    // Reads: the MGET of a burst is refused once, then every read is a GET.
    const reads = await counted(async () => (values = await Promise.all(names.map((k) => cache.get(k)))));
    expect(values).toEqual(names.map((k) => `v ${k}`));
    expect(reads.get).toBe(names.length);
    expect((await rejected(inspector)).mget! - (before.mget ?? 0)).toBe(1);

    // From then on, nothing multi-key is tried: a new burst of misses is refused nothing.
    const settled = await rejected(inspector);
    const again = await counted(async () => {
      values = await Promise.all(keys(12, 'later').map((k) => cache.getOrSet(k, () => k)));
      await settle();
    });
    expect(values).toEqual(keys(12, 'later'));
    expect(await rejected(inspector)).toEqual(settled);
    // Twelve leases (SET NX GET) and twelve single-key scripted writes.
    expect(scriptCalls(again)).toBe(12);
    expect(failures).toEqual([]);
  });
});
