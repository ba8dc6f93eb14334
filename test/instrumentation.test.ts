/**
 * What the core exposes for observability: counters per cache and per namespace, latency
 * histograms, events mirrored on diagnostics_channel, and tracing channels for loads and Redis
 * commands.
 */
import { subscribe, tracingChannel, unsubscribe } from 'node:diagnostics_channel';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCache, type Cache } from '../src/index.js';
import { redisStore } from '../src/stores/redis.js';
import { eventually, ManualClock, nodeRedis, uniqueNamespace, type NodeRedis } from './helpers/redis.js';

let client: NodeRedis;
beforeAll(async () => {
  client = await nodeRedis();
});
afterAll(async () => {
  await client.close();
});

function total(counts: readonly number[]): number {
  return counts.reduce((a, b) => a + b, 0);
}

/** A cache on a manual clock whose entries are due for an early refresh past half their 1 s TTL. */
function refreshingCache(): { clock: ManualClock; cache: Cache; users: Cache } {
  const clock = new ManualClock();
  const cache = createCache({
    namespace: uniqueNamespace('obs'),
    store: redisStore({ client }),
    ttl: 1_000,
    grace: 60_000,
    jitter: 0,
    clock,
    earlyRefresh: { ahead: 0.5, beta: 0 },
  });
  return { clock, cache, users: cache.namespace('users') };
}

describe('instrumentation', () => {
  it('counts per cache and per namespace, and fills the latency histograms', async () => {
    const cache = createCache({ namespace: uniqueNamespace('obs'), store: redisStore({ client }) });
    const users = cache.namespace('users');
    await users.getOrSet('1', () => 'Ada');
    await users.getOrSet('1', () => 'Ada');
    await cache.getOrSet('x', () => 'X');
    await cache.getOrSet('boom', () => Promise.reject(new Error('db'))).catch(() => undefined);
    await cache.get('x');
    expect(users.stats()).toMatchObject({ hits: 1, misses: 1, loads: 1, loadErrors: 0 });
    expect(cache.stats()).toMatchObject({ hits: 2, misses: 3, loads: 3, loadErrors: 1 });
    const { latency } = cache.stats();
    expect(latency.l2.count).toBe(5);
    expect(latency.load.count).toBe(3);
    // The namespace's histograms are its own; the root's cover it too.
    const own = users.stats().latency;
    expect(own.l2.count).toBe(2);
    expect(own.load.count).toBe(1);
    expect(total(own.l2.counts)).toBe(2);
    expect(own.l2.sum).toBeLessThanOrEqual(latency.l2.sum);
    expect(cache.namespace('other').stats().latency.l2.count).toBe(0);
    expect(total(latency.l2.counts)).toBe(latency.l2.count);
    expect(latency.l2.sum).toBeGreaterThan(0);
    const status = cache.store.status();
    expect(status.latency!.count).toBeGreaterThanOrEqual(8);
    expect(status.breakerOpens).toBe(0);
    await cache.close();
  });

  it('counts early refreshes (before expiry) and stale refreshes (past fresh) apart; refreshes is their sum', async () => {
    const { clock, cache, users } = refreshingCache();
    const reasons: string[] = [];
    cache.on('refresh', (event) => reasons.push(event.reason));
    let version = 0;
    const loader = () => ++version;
    // Early: read past half of the fresh period, still fresh; answered with the cached value.
    await users.getOrSet('a', loader);
    clock.advance(600);
    expect(await users.getOrSet('a', loader)).toBe(1);
    await eventually(() => users.stats().loads === 2, 5_000, 'the early refresh');
    // Stale: past the fresh period (earlyRefresh off for this read), served stale, refreshed.
    await cache.getOrSet('b', loader, { earlyRefresh: false });
    clock.advance(1_500);
    expect(await cache.getOrSet('b', loader, { earlyRefresh: false })).toBe(3);
    await eventually(() => cache.stats().loads === 4, 5_000, 'the stale refresh');
    expect(reasons).toEqual(['early', 'stale']);
    expect(users.stats()).toMatchObject({ earlyRefreshes: 1, staleRefreshes: 0, refreshes: 1 });
    expect(cache.stats()).toMatchObject({ earlyRefreshes: 1, staleRefreshes: 1, refreshes: 2, staleHits: 1 });
    await eventually(() => cache.store.status().pending === 0, 5_000, 'writes in flight');
    await cache.clear();
    await cache.close();
  });

  it('counts getOrSetMany batch refreshes by reason too: stale past fresh, early before expiry', async () => {
    const { clock, cache, users } = refreshingCache();
    let version = 0;
    const loader = (keys: string[]) => keys.map((k) => `${k}${++version}`);
    await users.getOrSetMany(['a', 'b'], loader);
    await eventually(() => cache.store.status().pending === 0, 5_000, 'writes in flight');
    clock.advance(600);
    await users.getOrSetMany(['a', 'b'], loader);
    await eventually(() => users.stats().loads === 2, 5_000, 'the early batch refresh');
    await eventually(() => cache.store.status().pending === 0, 5_000, 'writes in flight');
    clock.advance(1_500);
    await users.getOrSetMany(['a', 'b'], loader);
    await eventually(() => users.stats().loads === 3, 5_000, 'the stale batch refresh');
    expect(users.stats()).toMatchObject({ earlyRefreshes: 2, staleRefreshes: 2, refreshes: 4 });
    expect(users.stats().latency.load.count).toBe(3);
    await eventually(() => cache.store.status().pending === 0, 5_000, 'writes in flight');
    await cache.clear();
    await cache.close();
  });

  it('publishes timed reads on larder:cache:read, with the namespace that read', async () => {
    const cache = createCache({ namespace: uniqueNamespace('obs'), store: redisStore({ client }) });
    const users = cache.namespace('users');
    const reads: { cache: string; prefix: string; tier: string; durationMs: number }[] = [];
    const onRead = (message: unknown) => void reads.push(message as (typeof reads)[number]);
    subscribe('larder:cache:read', onRead);
    try {
      await users.getOrSet('1', () => 'Ada');
      await cache.get('x');
    } finally {
      unsubscribe('larder:cache:read', onRead);
    }
    await users.getOrSet('1', () => 'Ada');
    expect(reads).toHaveLength(2);
    expect(reads[0]).toMatchObject({ cache: cache.prefix, prefix: users.prefix, tier: 'l2' });
    expect(reads[1]).toMatchObject({ cache: cache.prefix, prefix: cache.prefix, tier: 'l2' });
    expect(reads[0]!.durationMs).toBeGreaterThan(0);
    await cache.clear();
    await cache.close();
  });

  it('times one L1 hit in 64', async () => {
    const cache = createCache({ namespace: uniqueNamespace('obs'), l1: {} });
    await cache.getOrSet('k', () => 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    for (let i = 0; i < 640; i++) await cache.getOrSet('k', () => 1);
    const { latency, l1Hits } = cache.stats();
    expect(l1Hits).toBeGreaterThanOrEqual(600);
    expect(latency.l1.count).toBeGreaterThanOrEqual(9);
    expect(latency.l1.count).toBeLessThanOrEqual(11);
    await cache.close();
  });

  it('records nothing in histograms with metrics: false', async () => {
    const cache = createCache({ namespace: uniqueNamespace('obs'), metrics: false });
    await cache.getOrSet('k', () => 1);
    await cache.getOrSet('k', () => 1);
    expect(cache.stats().latency.l2.count).toBe(0);
    expect(cache.stats().hits).toBe(1);
    await cache.close();
  });

  it('mirrors events on diagnostics_channel with the cache name, and traces loads and commands', async () => {
    const cache: Cache = createCache({ namespace: uniqueNamespace('obs'), store: redisStore({ client }) });
    const hits: unknown[] = [];
    const onHit = (message: unknown) => hits.push(message);
    subscribe('larder:cache:hit', onHit);
    const loads: string[] = [];
    const commands: string[] = [];
    const load = tracingChannel('larder:cache:load');
    const command = tracingChannel('larder:store:command');
    const none = () => undefined;
    const loadHandlers = {
      start: (ctx: object) => void loads.push(`start ${(ctx as { key: string }).key}`),
      asyncEnd: (ctx: object) => void loads.push(`end ${(ctx as { key: string }).key}`),
      end: none,
      asyncStart: none,
      error: none,
    };
    const commandHandlers = {
      start: (ctx: object) => void commands.push((ctx as { command: string }).command),
      end: none,
      asyncStart: none,
      asyncEnd: none,
      error: none,
    };
    load.subscribe(loadHandlers);
    command.subscribe(commandHandlers);
    try {
      await cache.getOrSet('k', () => 'v');
      await cache.getOrSet('k', () => 'v');
    } finally {
      unsubscribe('larder:cache:hit', onHit);
      load.unsubscribe(loadHandlers);
      command.unsubscribe(commandHandlers);
    }
    expect(hits).toEqual([expect.objectContaining({ cache: cache.prefix, key: `${cache.prefix}k`, tier: 'l2', stale: false })]);
    expect(loads).toEqual([`start ${cache.prefix}k`, `end ${cache.prefix}k`]);
    // Miss, lease, compare-and-set (a new store's first script use sends the source), hit.
    expect(commands).toEqual(['GET', 'SET', 'EVAL', 'GET']);
    await cache.close();
  });

  it('traces batch loads with their keys, and pipelines and multi-key commands with their size', async () => {
    // No bus: its PUBLISHes are traced too, but are not the subject here.
    const cache: Cache = createCache({ namespace: uniqueNamespace('obs'), store: redisStore({ client }), bus: false });
    const loads: { key: string; keys: string[] }[] = [];
    const commands: { command: string; key: string | undefined; count: number | undefined }[] = [];
    const none = () => undefined;
    const loadHandlers = {
      start: (ctx: object) => void loads.push(ctx as never),
      end: none,
      asyncStart: none,
      asyncEnd: none,
      error: none,
    };
    const commandHandlers = {
      start: (ctx: object) => {
        const { command, key, count } = ctx as { command: string; key?: string; count?: number };
        commands.push({ command, key, count });
      },
      end: none,
      asyncStart: none,
      asyncEnd: none,
      error: none,
    };
    const load = tracingChannel('larder:cache:load');
    const command = tracingChannel('larder:store:command');
    load.subscribe(loadHandlers);
    command.subscribe(commandHandlers);
    try {
      await cache.set('a', 1);
      await cache.getOrSetMany(['a', 'b', 'c'], (keys) => keys.map((k) => k.toUpperCase()));
      await cache.setMany([
        { key: 'd', value: 4 },
        { key: 'e', value: 5 },
      ]);
    } finally {
      load.unsubscribe(loadHandlers);
      command.unsubscribe(commandHandlers);
    }
    const p = cache.prefix;
    expect(loads).toEqual([expect.objectContaining({ key: `${p}b`, keys: [`${p}b`, `${p}c`] })]);
    expect(commands).toEqual([
      { command: 'SET', key: `${p}a`, count: undefined },
      { command: 'MGET', key: `${p}a`, count: 3 },
      // Leases for the two misses, then their compare-and-set writes: one pipeline each.
      { command: 'SET', key: `${p}b`, count: 2 },
      { command: 'EVAL', key: `${p}b`, count: 2 },
      { command: 'SET', key: `${p}d`, count: 2 },
    ]);
    await cache.close();
  });
});
