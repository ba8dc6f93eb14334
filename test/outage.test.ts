/**
 * Redis down is not the app down: each scenario runs a private redis-server (and, where the
 * network must misbehave, a fault-injecting proxy), for both drivers.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createCache, isLarderError, StoreError, type Cache } from '../src/index.js';
import { ioredisStore } from '../src/stores/ioredis.js';
import { memoryStore } from '../src/stores/memory.js';
import { redisStore } from '../src/stores/redis.js';
import { LuaScript, type RedisConnectionOptions, type RedisStore } from '../src/stores/redis-store.js';
import type { Store } from '../src/stores/store.js';
import { startProxy, type FaultProxy } from './helpers/proxy.js';
import { sparePort, startRedis, type RedisServer } from './helpers/redis-server.js';
import { commandStats, eventually, ioredis, nodeRedis, sleep, statsDelta, uniqueNamespace } from './helpers/redis.js';

type Driver = 'redis' | 'ioredis';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function storeFor(
  driver: Driver,
  url: string,
  options: RedisConnectionOptions = {},
): Promise<{ store: Store; closeClient: () => Promise<unknown>; isOpen: () => boolean }> {
  if (driver === 'redis') {
    const client = await nodeRedis(url);
    // destroy, not close: close() waits for a server that may be gone.
    cleanups.push(async () => client.isOpen && client.destroy());
    return { store: redisStore({ client, ...options }), closeClient: () => client.close(), isOpen: () => client.isOpen };
  }
  const client = await ioredis(url);
  cleanups.push(async () => client.disconnect());
  return {
    store: ioredisStore({ client, ...options }),
    closeClient: () => client.quit(),
    isOpen: () => client.status === 'ready',
  };
}

async function server(): Promise<RedisServer> {
  const s = await startRedis();
  cleanups.push(() => s.stop());
  return s;
}

async function proxyTo(s: RedisServer): Promise<FaultProxy> {
  const p = await startProxy(s.port);
  cleanups.push(() => p.close());
  return p;
}

function cacheOn(store: Store, extra: Parameters<typeof createCache>[0] = {}): Cache {
  const cache = createCache({ namespace: uniqueNamespace('outage'), store, ...extra });
  cleanups.push(() => cache.close());
  return cache;
}

describe.each<Driver>(['redis', 'ioredis'])('outages over %s', (driver) => {
  it('getOrSet still answers from the loader when Redis is stopped, and recovers', async () => {
    const redis = await server();
    const { store } = await storeFor(driver, redis.url, { commandTimeout: 200, breaker: { failureThreshold: 3, cooldown: 200 } });
    const cache = cacheOn(store);
    const storeErrors = vi.fn();
    cache.on('store-error', storeErrors);
    expect(await cache.getOrSet('k', () => 'v1')).toBe('v1');
    await redis.stop();
    for (let i = 0; i < 10; i++) expect(await cache.getOrSet(`down${i}`, () => `loaded ${i}`)).toBe(`loaded ${i}`);
    expect(storeErrors).toHaveBeenCalled();
    expect(cache.stats().failOpen).toBeGreaterThan(0);
    // Plain reads fail open by default, and writes are dropped with an event.
    expect(await cache.get('k')).toBeUndefined();
    await cache.set('k', 'x');
    expect(await cache.delete('k')).toBe(false);
    await redis.restart();
    await eventually(
      async () => (await cache.getOrSet('after', () => 'back')) === 'back' && store.status().breaker === 'closed',
      15_000,
      'recovery',
    );
    await eventually(async () => (await cache.get('after')) === 'back', 15_000, 'writes after recovery');
  });

  it('the timeline: stop, restart, pause, resume while requests flow; none fails, the breaker opens and closes, few commands reach Redis while it is open', async () => {
    const redis = await server();
    const proxy = await proxyTo(redis);
    const transitions: string[] = [];
    const { store } = await storeFor(driver, proxy.url, {
      commandTimeout: 100,
      breaker: { failureThreshold: 3, cooldown: 200, maxCooldown: 400 },
      onEvent: (event) => event.type === 'breaker' && transitions.push(event.state),
    });
    const cache = cacheOn(store);
    const cacheTransitions: string[] = [];
    cache.on('breaker', ({ state }) => cacheTransitions.push(state));
    let failures = 0;
    let served = 0;
    const state = { running: true };
    const flow = (async () => {
      for (let i = 0; state.running; i++) {
        await cache
          .getOrSet(`k${i % 20}`, () => `v${i}`)
          .then(
            () => served++,
            () => failures++,
          );
        await sleep(2);
      }
    })();
    const until = async (condition: () => boolean, what: string) => eventually(condition, 15_000, what);
    // Reconnection handshakes are the client's own (its reconnect strategy), not Larder's traffic.
    const handshake = new Set(['HELLO', 'CLIENT', 'AUTH', 'SELECT', 'PING', 'INFO']);
    const larderCommands = () => [...proxy.commandsByName].reduce((sum, [name, n]) => sum + (handshake.has(name) ? 0 : n), 0);
    /** Larder's commands that reached the proxy during `ms` with the breaker open. */
    const whileOpen = async (ms: number) => {
      await until(() => store.status().breaker === 'open', 'the breaker to open');
      const before = larderCommands();
      await sleep(ms);
      return larderCommands() - before;
    };
    await sleep(200);
    // 1. Redis stops.
    await redis.stop();
    const sentWhileStopped = await whileOpen(1_000);
    // 2. It comes back.
    await redis.restart();
    await until(() => store.status().breaker === 'closed', 'the breaker to close after the restart');
    await sleep(200);
    // 3. It hangs (SIGSTOP): connections stay up, nothing answers.
    redis.pause();
    const sentWhilePaused = await whileOpen(1_000);
    // 4. It resumes.
    redis.resume();
    await until(() => store.status().breaker === 'closed', 'the breaker to close after the pause');
    await sleep(200);
    state.running = false;
    await flow;
    expect(failures).toBe(0);
    expect(served).toBeGreaterThan(300);
    expect(transitions).toContain('open');
    expect(transitions.at(-1)).toBe('closed');
    // The cache re-emits them as its `breaker` event.
    expect(cacheTransitions).toEqual(transitions);
    // A probe every 200-400 ms: at most a handful of commands per second reach a dead Redis.
    expect(sentWhileStopped).toBeLessThanOrEqual(10);
    expect(sentWhilePaused).toBeLessThanOrEqual(10);
    expect(await cache.getOrSet('after', () => 'ok')).toBe('ok');
  });

  it('plain get rejects with a StoreError when failOpen is false', async () => {
    const redis = await server();
    const { store } = await storeFor(driver, redis.url, { commandTimeout: 200, breaker: false });
    const cache = cacheOn(store, { failOpen: false });
    await redis.stop();
    const error = await cache.get('k').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreError);
    expect(isLarderError(error)).toBe(true);
    await expect(cache.set('k', 1)).rejects.toBeInstanceOf(StoreError);
    // getOrSet has a loader: it never fails because of the store.
    expect(await cache.getOrSet('k', () => 'loaded')).toBe('loaded');
  });

  it('a paused Redis costs at most the command timeout, then the breaker answers at once', async () => {
    const redis = await server();
    const { store } = await storeFor(driver, redis.url, {
      commandTimeout: 150,
      breaker: { failureThreshold: 2, cooldown: 60_000 },
    });
    const cache = cacheOn(store);
    await cache.set('warm', 1);
    const breaker = vi.fn();
    cache.on('breaker', breaker);
    redis.pause();
    cleanups.push(async () => redis.resume());
    const started = Date.now();
    expect(await cache.getOrSet('a', () => 'A')).toBe('A');
    const first = Date.now() - started;
    expect(first).toBeGreaterThanOrEqual(140);
    expect(first).toBeLessThan(1_000);
    expect(await cache.getOrSet('b', () => 'B')).toBe('B');
    expect(store.status().breaker).toBe('open');
    const fast = Date.now();
    for (let i = 0; i < 20; i++) expect(await cache.getOrSet(`c${i}`, () => i)).toBe(i);
    expect(Date.now() - fast).toBeLessThan(150);
    redis.resume();
  });

  it('while the breaker is open at most one probe per cooldown reaches Redis; it closes on its own', async () => {
    const redis = await server();
    const proxy = await proxyTo(redis);
    const { store } = await storeFor(driver, proxy.url, {
      commandTimeout: 100,
      breaker: { failureThreshold: 3, cooldown: 300, maxCooldown: 300 },
    });
    const cache = cacheOn(store);
    await cache.set('warm', 1);
    proxy.blackhole(true);
    // Requests keep flowing the whole time; none may fail.
    let failures = 0;
    let served = 0;
    const flowUntil = async (done: () => boolean, timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      while (!done() && Date.now() < deadline) {
        await cache
          .getOrSet(`k${served % 50}`, () => served)
          .then(
            () => served++,
            () => failures++,
          );
        await sleep(2);
      }
    };
    await flowUntil(() => store.status().breaker === 'open', 5_000);
    expect(store.status().breaker).toBe('open');
    const sentWhenOpen = proxy.commands;
    const servedWhenOpen = served;
    const openFor = Date.now() + 1_500;
    await flowUntil(() => Date.now() >= openFor, 2_000);
    const sentWhileOpen = proxy.commands - sentWhenOpen;
    // ~1.5 s / 300 ms cooldown: about 5 probes, each a single command.
    expect(sentWhileOpen).toBeLessThanOrEqual(8);
    expect(served - servedWhenOpen).toBeGreaterThan(100);
    expect(failures).toBe(0);
    // The network heals (the black-holed connections are reset, as TCP would eventually do).
    proxy.blackhole(false);
    proxy.resetAll();
    await flowUntil(() => store.status().breaker === 'closed', 10_000);
    expect(store.status().breaker).toBe('closed');
    expect(failures).toBe(0);
    expect(await cache.getOrSet('recovered', () => 'yes')).toBe('yes');
  });

  it('after a restart, script-only traffic closes the breaker (a NOSCRIPT reply is Redis answering)', async () => {
    const redis = await server();
    const { store } = await storeFor(driver, redis.url, {
      commandTimeout: 200,
      breaker: { failureThreshold: 2, cooldown: 200, maxCooldown: 200 },
    });
    const scripted = store as RedisStore;
    const write = new LuaScript(`return redis.call('SET', KEYS[1], ARGV[1])`);
    await scripted.script(write, ['k'], ['before']);
    await redis.stop();
    await eventually(
      async () => {
        await scripted.script(write, ['k'], ['down']).catch(() => undefined);
        return store.status().breaker === 'open';
      },
      5_000,
      'the breaker to open',
    );
    // The new process has no scripts: the half-open probe is an EVALSHA answered NOSCRIPT.
    await redis.restart();
    await eventually(
      async () =>
        await scripted.script(write, ['k'], ['after']).then(
          () => true,
          () => false,
        ),
      10_000,
      'a script to run again',
    );
    expect(store.status().breaker).toBe('closed');
    const inspector = await nodeRedis(redis.url);
    cleanups.push(() => inspector.close());
    expect(await inspector.get('k')).toBe('after');
  });

  it('connection resets and added latency never fail a request', async () => {
    const redis = await server();
    const proxy = await proxyTo(redis);
    const { store } = await storeFor(driver, proxy.url, { commandTimeout: 300 });
    const cache = cacheOn(store);
    let failures = 0;
    const work = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; i < 60; i++) {
        await cache.getOrSet(`k${(w * 7 + i) % 20}`, () => i).catch(() => failures++);
        await sleep(3);
      }
    });
    const chaos = (async () => {
      for (let i = 0; i < 4; i++) {
        await sleep(60);
        proxy.setLatency(i % 2 === 0 ? 120 : 0);
        proxy.resetAll();
      }
      proxy.setLatency(0);
    })();
    await Promise.all([...work, chaos]);
    expect(failures).toBe(0);
  });

  it('getMany of 100 keys is one round trip (one MGET, no GET)', async () => {
    const redis = await server();
    const { store } = await storeFor(driver, redis.url);
    const cache = cacheOn(store);
    const keys = Array.from({ length: 100 }, (_, i) => `k${i}`);
    await cache.setMany(keys.map((key, i) => ({ key, value: i })));
    const inspector = await nodeRedis(redis.url);
    cleanups.push(() => inspector.close());
    const before = await commandStats(inspector);
    const values = await cache.getMany(keys);
    const delta = statsDelta(before, await commandStats(inspector));
    expect(values).toEqual(keys.map((_, i) => i));
    expect(delta).toEqual({ mget: 1, info: 1 });
  });

  it('a miss costs GET, lease and compare-and-set; with lock: false a GET and a plain SET', async () => {
    const redis = await server();
    const { store } = await storeFor(driver, redis.url);
    const inspector = await nodeRedis(redis.url);
    cleanups.push(() => inspector.close());
    const strict = cacheOn(store);
    const fast = cacheOn(store, { lock: false });
    // Writes settle after getOrSet returns: wait for the counts to arrive, then compare.
    const countsSince = (before: Map<string, number>, expected: Record<string, number>) =>
      vi.waitFor(async () => {
        const delta = statsDelta(before, await commandStats(inspector));
        delete delta.info;
        expect(delta).toEqual(expected);
      });
    // The first use of a script sends its source (EVAL), so that it cannot be answered NOSCRIPT
    // and re-sent after later commands; later uses send the SHA.
    let before = await commandStats(inspector);
    await strict.getOrSet('first', () => 0);
    await countsSince(before, { get: 2, set: 2, eval: 1 });
    before = await commandStats(inspector);
    await strict.getOrSet('k', () => 1);
    // GET (miss), SET NX PX GET (lease), EVALSHA (compare-and-set, running a GET and a SET inside:
    // Redis counts those too). Once misses dominate, reads use the lease command directly and a
    // miss is two commands.
    await countsSince(before, { get: 2, set: 2, evalsha: 1 });
    before = await commandStats(inspector);
    // Ten concurrent misses share one GET, and an instant load cannot end before a late reply.
    const loader = vi.fn(() => 1);
    await Promise.all(Array.from({ length: 10 }, () => fast.getOrSet('k', loader)));
    expect(loader).toHaveBeenCalledTimes(1);
    await countsSince(before, { get: 1, set: 1 });
    // Nothing else arrives later.
    await sleep(50);
    await countsSince(before, { get: 1, set: 1 });
  });

  it('clear scans and unlinks in batches, never KEYS', async () => {
    const redis = await server();
    const { store } = await storeFor(driver, redis.url);
    const cache = cacheOn(store);
    await cache.setMany(Array.from({ length: 2500 }, (_, i) => ({ key: `k${i}`, value: i })));
    const inspector = await nodeRedis(redis.url);
    cleanups.push(() => inspector.close());
    const before = await commandStats(inspector);
    expect(await cache.clear()).toBe(2500);
    const delta = statsDelta(before, await commandStats(inspector));
    expect(delta.keys).toBeUndefined();
    expect(delta.scan).toBeGreaterThanOrEqual(3);
    expect(delta.unlink).toBeGreaterThanOrEqual(3);
  });

  it('status() says standalone for a plain client, and whether it is ready while Redis is away', async () => {
    const redis = await server();
    const { store } = await storeFor(driver, redis.url, { commandTimeout: 100 });
    const readyDetail = driver === 'redis' ? { ready: true } : { status: 'ready', commandQueue: 0 };
    expect(store.status()).toMatchObject({ ready: true, details: { topology: 'standalone', cluster: false, ...readyDetail } });
    await redis.stop();
    await eventually(() => !store.status().ready, 5_000, 'the store to notice');
    const details = store.status().details!;
    expect(driver === 'redis' ? details.ready : details.status !== 'ready').toBe(driver !== 'redis');
  });

  it('refuses misspelt store option names, in the breaker options too, before connecting', async () => {
    const redis = await server();
    const inspector = await nodeRedis(redis.url);
    cleanups.push(() => inspector.close());
    const connections = async () => Number(/connected_clients:(\d+)/.exec(await inspector.info('clients'))![1]);
    const alone = await connections();
    const make = driver === 'redis' ? redisStore : ioredisStore;
    expect(() => make({ url: redis.url, comandTimeout: 5 } as never)).toThrow(/^comandTimeout: unknown option/);
    expect(() => make({ url: redis.url, breaker: { cooldwn: 5 } } as never)).toThrow(/^breaker\.cooldwn: unknown option/);
    expect(() => make({ url: redis.url, commandTimeout: 'soon' } as never)).toThrow(/^commandTimeout:/);
    // Refused before a client connects: none is left behind (it would keep the process alive).
    await sleep(100);
    expect(await connections()).toBe(alone);
    await expect(storeFor(driver, redis.url, { coalese: false } as never)).rejects.toThrow(/^coalese: unknown option/);
    expect(() => memoryStore({ maxEntires: 5 } as never)).toThrow(/^maxEntires: unknown option/);
    expect(() => memoryStore(null as never)).toThrow(/^options: expected an object/);
    // Every name the types document passes.
    const { store } = await storeFor(driver, redis.url, {
      commandTimeout: 500,
      breaker: { failureThreshold: 5, cooldown: 1_000, maxCooldown: 30_000 },
      onEvent: () => undefined,
      clock: { now: () => Date.now() },
      metrics: true,
      coalesce: true,
    });
    expect(await cacheOn(store).getOrSet('k', () => 1)).toBe(1);
  });

  it('never closes a client it did not create', async () => {
    const redis = await server();
    const { store, isOpen } = await storeFor(driver, redis.url);
    const cache = createCache({ namespace: uniqueNamespace(), store });
    await cache.getOrSet('k', () => 1);
    await cache.close();
    expect(isOpen()).toBe(true);
  });

  it('close() returns promptly when Redis is down or hung, and the connection is gone', async () => {
    for (const fault of ['stopped', 'paused', 'never there'] as const) {
      const redis = await server();
      const url = fault === 'never there' ? `redis://127.0.0.1:${await sparePort()}` : redis.url;
      const store = driver === 'redis' ? redisStore({ url, commandTimeout: 100 }) : ioredisStore({ url, commandTimeout: 100 });
      const cache = createCache({ namespace: uniqueNamespace(), store });
      expect(await cache.getOrSet('k', () => 1)).toBe(1);
      if (fault === 'stopped') await redis.stop();
      if (fault === 'paused') redis.pause();
      // Commands in flight or queued while Redis is away.
      const pending = cache.getOrSet('k2', () => 2);
      const started = Date.now();
      await cache.close();
      // The fault named in the diff if it fails.
      expect({ fault, slow: Date.now() - started >= 2_000 }).toEqual({ fault, slow: false });
      expect(await pending).toBe(2);
      redis.resume();
      if (fault !== 'stopped') {
        const inspector = await nodeRedis(redis.url);
        cleanups.push(() => inspector.close());
        await eventually(async () => (await inspector.clientList()).length === 1, 5_000, 'the client to disconnect');
      }
    }
  });

  it('closes the client it created from a URL', async () => {
    const redis = await server();
    const store = driver === 'redis' ? redisStore({ url: redis.url }) : ioredisStore({ url: redis.url });
    const cache = createCache({ namespace: uniqueNamespace(), store });
    expect(await cache.getOrSet('k', () => 1)).toBe(1);
    await eventually(async () => (await cache.get('k')) === 1);
    await cache.close();
    const inspector = await nodeRedis(redis.url);
    cleanups.push(() => inspector.close());
    // Only the inspector remains connected.
    await eventually(async () => (await inspector.clientList()).length === 1, 5_000, 'client to disconnect');
  });
});
