/**
 * `larder/prometheus` against a real Redis: a scripted sequence of hits, misses, loader errors
 * and stale serves, then the registry's text output parsed and checked against `cache.stats()`.
 */
import { createServer } from 'node:net';
import { Registry, register as globalRegistry, type OpenMetricsContentType } from 'prom-client';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createCache, type Cache } from '../../src/index.js';
import { registerLarderMetrics } from '../../src/observability/prometheus.js';
import { ioredisStore } from '../../src/stores/ioredis.js';
import { redisStore } from '../../src/stores/redis.js';
import { eventually, ioredis, ManualClock, nodeRedis, uniqueNamespace, type NodeRedis } from '../helpers/redis.js';
import { parseExposition, sampleValue, samples, type Family } from './exposition.js';

let client: NodeRedis;
const caches: Cache[] = [];
beforeAll(async () => {
  client = await nodeRedis();
});
afterAll(async () => {
  await Promise.all(caches.map((c) => c.clear().catch(() => undefined)));
  await Promise.all(caches.map((c) => c.close()));
  await client.close();
}, 10_000);

function track(cache: Cache): Cache {
  caches.push(cache);
  return cache;
}

/** Runs the script; returns the cache, its `users` namespace and the clock. */
async function scripted(): Promise<{ cache: Cache; users: Cache; clock: ManualClock }> {
  const clock = new ManualClock();
  const cache = track(
    createCache({
      namespace: uniqueNamespace('prom'),
      store: redisStore({ client }),
      ttl: 1_000,
      grace: 60_000,
      jitter: 0,
      clock,
      earlyRefresh: false,
      failSafeBackoff: 60_000,
    }),
  );
  const users = cache.namespace('users');
  // users: a miss (load), then two L2 hits.
  await users.getOrSet('1', () => 'Ada');
  await users.getOrSet('1', () => 'Ada');
  await users.getOrSet('1', () => 'Ada');
  // root: a miss (load), a hit, a loader error.
  await cache.getOrSet('x', () => 'X');
  await cache.getOrSet('x', () => 'X');
  await expect(cache.getOrSet('boom', () => Promise.reject(new Error('db down')))).rejects.toThrow('db down');
  // A "not found" cached, then hit.
  await cache.getOrSet('nobody', () => undefined);
  await cache.getOrSet('nobody', () => undefined);
  // Past its fresh period: the stale value answers at once and is refreshed in the background.
  clock.advance(1_500);
  expect(await cache.getOrSet('x', () => 'X2')).toBe('X');
  await eventually(() => cache.stats().loads === 5, 5_000, 'the background refresh');
  return { cache, users, clock };
}

function checkHistogram(families: Map<string, Family>, family: string, labels: Record<string, string>): number[] {
  // Exactly these labels (plus `le`): a namespace's series and the rest's are distinct.
  const buckets = samples(families, family, labels, `${family}_bucket`).filter(
    (b) => Object.keys(b.labels).length === Object.keys(labels).length + 1,
  );
  expect(buckets.length).toBe(20);
  const les = buckets.map((b) => b.labels.le!);
  expect(les.at(-1)).toBe('+Inf');
  const bounds = les.slice(0, -1).map(Number);
  expect(bounds).toEqual([...bounds].sort((a, b) => a - b));
  expect(bounds[0]).toBe(0.00001);
  expect(bounds.at(-1)).toBe(10);
  const counts = buckets.map((b) => b.value);
  for (let i = 1; i < counts.length; i++) expect(counts[i]).toBeGreaterThanOrEqual(counts[i - 1]!);
  expect(counts.at(-1)).toBe(sampleValue(families, family, labels, `${family}_count`));
  return counts;
}

describe('larder/prometheus', () => {
  it('exports counters, L1 gauges, histograms and store health that match cache.stats()', async () => {
    const { cache, users } = await scripted();
    const registry = new Registry();
    const unregister = registerLarderMetrics(cache, { registry, name: 'app', namespaces: { users } });
    await eventually(() => cache.store.status().pending === 0, 5_000, 'writes in flight');
    const text = await registry.metrics();
    const families = parseExposition(text);

    const total = cache.stats();
    const own = users.stats();
    expect(own).toMatchObject({ hits: 2, l2Hits: 2, misses: 1, loads: 1, loadErrors: 0 });
    expect(total).toMatchObject({
      hits: 5,
      l2Hits: 5,
      l1Hits: 0,
      staleHits: 1,
      negativeHits: 1,
      misses: 4,
      loads: 5,
      loadErrors: 1,
      refreshes: 1,
    });

    // Counters: the users row and the rest are disjoint, and add up to the totals.
    const hits = (labels: Record<string, string>) => sampleValue(families, 'larder_cache_hits_total', labels);
    expect(hits({ cache: 'app', namespace: 'users', tier: 'l2' })).toBe(2);
    expect(hits({ cache: 'app', tier: 'l2' })).toBe(3);
    expect(hits({ cache: 'app', tier: 'l1' })).toBe(0);
    const sum = (family: string) => samples(families, family, { cache: 'app' }).reduce((a, s) => a + s.value, 0);
    expect(sum('larder_cache_hits_total')).toBe(total.hits);
    expect(sum('larder_cache_misses_total')).toBe(total.misses);
    expect(sum('larder_cache_loads_total')).toBe(total.loads);
    expect(sum('larder_cache_load_errors_total')).toBe(1);
    expect(sampleValue(families, 'larder_cache_load_errors_total', { cache: 'app', namespace: 'users' })).toBe(0);
    expect(sampleValue(families, 'larder_cache_stale_served_total', { cache: 'app' })).toBe(1);
    expect(sampleValue(families, 'larder_cache_negative_hits_total', { cache: 'app' })).toBe(1);
    expect(sampleValue(families, 'larder_cache_misses_total', { cache: 'app', namespace: 'users' })).toBe(1);
    for (const family of [
      'larder_cache_refreshes_total',
      'larder_cache_lock_waits_total',
      'larder_cache_fail_open_total',
      'larder_cache_corrupt_total',
      'larder_cache_load_timeouts_total',
      'larder_cache_write_errors_total',
      'larder_cache_writes_skipped_total',
    ]) {
      expect(families.get(family)?.type).toBe('counter');
      expect(sum(family)).toBe(total[familyKey(family)]);
    }
    // Refreshes by reason: the scripted one was a stale-while-revalidate.
    expect(sampleValue(families, 'larder_cache_refreshes_total', { cache: 'app', reason: 'stale' })).toBe(1);
    expect(sampleValue(families, 'larder_cache_refreshes_total', { cache: 'app', reason: 'early' })).toBe(0);
    expect(sampleValue(families, 'larder_cache_refreshes_total', { cache: 'app', namespace: 'users', reason: 'stale' })).toBe(0);
    expect(total).toMatchObject({ earlyRefreshes: 0, staleRefreshes: 1 });
    expect(sampleValue(families, 'larder_cache_evictions_total', { cache: 'app' })).toBe(0);
    expect(sampleValue(families, 'larder_cache_l1_entries', { cache: 'app' })).toBe(0);
    expect(sampleValue(families, 'larder_cache_l1_bytes', { cache: 'app' })).toBe(0);

    // Histograms: seconds, cumulative buckets, _sum and _count.
    expect(families.get('larder_cache_get_duration_seconds')?.type).toBe('histogram');
    // The users namespace has its own series (its three reads); the unlabelled one has the rest.
    const l2 = checkHistogram(families, 'larder_cache_get_duration_seconds', { cache: 'app', tier: 'l2' });
    const usersL2 = checkHistogram(families, 'larder_cache_get_duration_seconds', {
      cache: 'app',
      namespace: 'users',
      tier: 'l2',
    });
    expect(own.latency.l2.count).toBe(3);
    expect(usersL2.at(-1)).toBe(3);
    expect(l2.at(-1)).toBe(total.latency.l2.count - 3);
    expect(total.latency.l2.count).toBeGreaterThanOrEqual(9);
    expect(
      sampleValue(
        families,
        'larder_cache_get_duration_seconds',
        { cache: 'app', tier: 'l2' },
        'larder_cache_get_duration_seconds_sum',
      ),
    ).toBeCloseTo((total.latency.l2.sum - own.latency.l2.sum) / 1_000, 9);
    checkHistogram(families, 'larder_cache_get_duration_seconds', { cache: 'app', tier: 'l1' });
    const loads = checkHistogram(families, 'larder_cache_load_duration_seconds', { cache: 'app' });
    const usersLoads = checkHistogram(families, 'larder_cache_load_duration_seconds', { cache: 'app', namespace: 'users' });
    expect(usersLoads.at(-1)).toBe(1);
    expect(loads.at(-1)).toBe(total.latency.load.count - 1);
    const commands = checkHistogram(families, 'larder_store_command_duration_seconds', { cache: 'app', store: 'redis' });
    expect(commands.at(-1)).toBeGreaterThanOrEqual(10);

    // Store health: connected, breaker closed, nothing pending, the client's details.
    expect(sampleValue(families, 'larder_store_ready', { cache: 'app', store: 'redis' })).toBe(1);
    expect(sampleValue(families, 'larder_store_breaker_state', { cache: 'app', store: 'redis' })).toBe(0);
    expect(sampleValue(families, 'larder_store_breaker_opens_total', { cache: 'app', store: 'redis' })).toBe(0);
    expect(sampleValue(families, 'larder_store_pending_commands', { cache: 'app', store: 'redis' })).toBe(0);
    expect(sampleValue(families, 'larder_store_detail', { cache: 'app', store: 'redis', detail: 'open' })).toBe(1);

    // HELP on every family; counter families end in _total.
    for (const family of families.values()) expect(family.help.length).toBeGreaterThan(10);
    const counters = [...families.values()].filter((f) => f.type === 'counter').map((f) => f.name);
    expect(counters.length).toBeGreaterThanOrEqual(15);
    expect(counters.filter((name) => !name.endsWith('_total'))).toEqual([]);
    unregister();
    expect(await registry.metrics()).toBe('\n');
  });

  it('reads on scrape: later operations show up in the next scrape', async () => {
    const cache = track(createCache({ namespace: uniqueNamespace('prom'), store: redisStore({ client }) }));
    const registry = new Registry();
    registerLarderMetrics(cache, { registry, name: 'live' });
    const before = parseExposition(await registry.metrics());
    expect(sampleValue(before, 'larder_cache_misses_total', { cache: 'live' })).toBe(0);
    await cache.getOrSet('a', () => 1);
    await cache.getOrSet('a', () => 1);
    const after = parseExposition(await registry.metrics());
    expect(sampleValue(after, 'larder_cache_misses_total', { cache: 'live' })).toBe(1);
    expect(sampleValue(after, 'larder_cache_hits_total', { cache: 'live', tier: 'l2' })).toBe(1);
    expect(sampleValue(after, 'larder_cache_loads_total', { cache: 'live' })).toBe(1);
  });

  it('serves several caches from one registry, refuses a duplicate name, and unregisters one at a time', async () => {
    const a = track(createCache({ namespace: uniqueNamespace('prom'), store: redisStore({ client }) }));
    const b = track(createCache({ namespace: uniqueNamespace('prom'), l1: {} }));
    await a.getOrSet('k', () => 1);
    // L1 answers once its invalidation bus is up (it hears itself).
    await eventually(async () => (await b.getOrSet('k', () => 2)) === 2 && b.stats().l1Hits > 0, 10_000, 'an L1 hit');
    const registry = new Registry();
    const offA = registerLarderMetrics(a, { registry, name: 'a' });
    const offB = registerLarderMetrics(b, { registry, name: 'b' });
    expect(() => registerLarderMetrics(a, { registry, name: 'b' })).toThrow(/already registered/);
    let families = parseExposition(await registry.metrics());
    expect(sampleValue(families, 'larder_cache_misses_total', { cache: 'a' })).toBe(1);
    expect(sampleValue(families, 'larder_cache_hits_total', { cache: 'b', tier: 'l1' })).toBe(b.stats().l1Hits);
    expect(sampleValue(families, 'larder_cache_hits_total', { cache: 'b', tier: 'l2' })).toBe(b.stats().l2Hits);
    expect(sampleValue(families, 'larder_cache_l1_entries', { cache: 'b' })).toBe(1);
    expect(sampleValue(families, 'larder_cache_l1_bytes', { cache: 'b' })).toBeGreaterThan(0);
    expect(sampleValue(families, 'larder_store_ready', { cache: 'b', store: 'memory' })).toBe(1);
    // The memory store records no command latency: no series for it.
    expect(
      samples(families, 'larder_store_command_duration_seconds', { cache: 'b' }, 'larder_store_command_duration_seconds_count'),
    ).toEqual([]);
    offA();
    families = parseExposition(await registry.metrics());
    expect(samples(families, 'larder_cache_misses_total', { cache: 'a' })).toEqual([]);
    expect(sampleValue(families, 'larder_cache_misses_total', { cache: 'b' })).toBe(1);
    offB();
    expect(registry.getMetricsAsArray()).toEqual([]);
    offB();
  });

  it('uses the default registry, a custom prefix and the cache namespace as the default name', async () => {
    const namespace = uniqueNamespace('prom');
    const cache = track(createCache({ namespace, store: redisStore({ client }) }));
    await cache.getOrSet('k', () => 1);
    const off = registerLarderMetrics(cache, { prefix: 'myapp_larder_' });
    try {
      const families = parseExposition(await globalRegistry.metrics());
      expect(sampleValue(families, 'myapp_larder_cache_misses_total', { cache: namespace })).toBe(1);
    } finally {
      off();
    }
    expect(globalRegistry.getSingleMetric('myapp_larder_cache_misses_total')).toBeUndefined();
    expect(() => registerLarderMetrics(cache, { registry: new Registry(), prefix: 'bad-prefix' })).toThrow(/prefix/);
  });

  it('writes valid OpenMetrics text too', async () => {
    const cache = track(createCache({ namespace: uniqueNamespace('prom'), store: redisStore({ client }) }));
    await cache.getOrSet('k', () => 1);
    // prom-client's declarations omit the constructor's content type argument.
    const OpenMetricsRegistry = Registry as unknown as new (contentType: string) => Registry<OpenMetricsContentType>;
    const registry = new OpenMetricsRegistry(Registry.OPENMETRICS_CONTENT_TYPE);
    registerLarderMetrics(cache, { registry, name: 'om' });
    for (let i = 0; i < 2; i++) {
      const text = await registry.metrics();
      expect(text.endsWith('# EOF\n')).toBe(true);
      const families = parseExposition(text);
      // OpenMetrics names the counter family without `_total`, and its sample with it.
      expect(families.get('larder_cache_misses')?.type).toBe('counter');
      expect(sampleValue(families, 'larder_cache_misses', { cache: 'om' }, 'larder_cache_misses_total')).toBe(1);
      checkHistogram(families, 'larder_cache_get_duration_seconds', { cache: 'om', tier: 'l2' });
    }
  });

  it('reports the ioredis connection state as store info', async () => {
    const io = await ioredis();
    onTestFinished(() => void io.quit());
    const cache = track(createCache({ namespace: uniqueNamespace('prom'), store: ioredisStore({ client: io }) }));
    await cache.getOrSet('k', () => 1);
    const registry = new Registry();
    registerLarderMetrics(cache, { registry, name: 'io' });
    const families = parseExposition(await registry.metrics());
    expect(sampleValue(families, 'larder_store_ready', { cache: 'io', store: 'ioredis' })).toBe(1);
    expect(sampleValue(families, 'larder_store_info', { cache: 'io', store: 'ioredis', detail: 'status', value: 'ready' })).toBe(
      1,
    );
    expect(samples(families, 'larder_store_info', { cache: 'io', store: 'ioredis', detail: 'topology' })).toHaveLength(1);
    expect(sampleValue(families, 'larder_store_detail', { cache: 'io', store: 'ioredis', detail: 'cluster' })).toBe(0);
    expect(
      samples(
        families,
        'larder_store_command_duration_seconds',
        { cache: 'io' },
        'larder_store_command_duration_seconds_count',
      )[0]!.value,
    ).toBeGreaterThan(0);
  });

  it('reports a store that is down: not ready, breaker open, opens counted', async () => {
    // A client of our own to a port nothing listens on (closed with destroy(): close() would wait
    // for the commands node-redis keeps queued while it reconnects).
    const down = createClient({ url: `redis://127.0.0.1:${await unusedPort()}`, socket: { reconnectStrategy: 50 } });
    down.on('error', () => undefined);
    down.connect().catch(() => undefined);
    onTestFinished(() => down.destroy());
    const store = redisStore({ client: down, commandTimeout: 100, breaker: { failureThreshold: 2, cooldown: 60_000 } });
    const cache = createCache({ namespace: uniqueNamespace('prom'), store });
    const registry = new Registry();
    registerLarderMetrics(cache, { registry, name: 'down' });
    // Fail-open: the loader answers while Redis cannot.
    for (let i = 0; i < 3; i++) expect(await cache.getOrSet(`k${i}`, () => i)).toBe(i);
    await eventually(() => store.status().breaker === 'open', 5_000, 'the breaker to open');
    const families = parseExposition(await registry.metrics());
    expect(sampleValue(families, 'larder_store_ready', { cache: 'down', store: 'redis' })).toBe(0);
    expect(sampleValue(families, 'larder_store_breaker_state', { cache: 'down', store: 'redis' })).toBe(2);
    expect(sampleValue(families, 'larder_store_breaker_opens_total', { cache: 'down', store: 'redis' })).toBe(1);
    // node-redis reports `open` (not closed by its owner) even while it reconnects: ready is the signal.
    expect(samples(families, 'larder_store_detail', { cache: 'down', store: 'redis', detail: 'open' })).toHaveLength(1);
    expect(sampleValue(families, 'larder_cache_fail_open_total', { cache: 'down' })).toBeGreaterThanOrEqual(2);
  });
});

function familyKey(
  family: string,
): keyof ReturnType<Cache['stats']> &
  ('refreshes' | 'lockWaits' | 'failOpen' | 'corrupt' | 'loadTimeouts' | 'writeErrors' | 'writesSkipped') {
  const map = {
    larder_cache_refreshes_total: 'refreshes',
    larder_cache_lock_waits_total: 'lockWaits',
    larder_cache_fail_open_total: 'failOpen',
    larder_cache_corrupt_total: 'corrupt',
    larder_cache_load_timeouts_total: 'loadTimeouts',
    larder_cache_write_errors_total: 'writeErrors',
    larder_cache_writes_skipped_total: 'writesSkipped',
  } as const;
  return map[family as keyof typeof map];
}

function unusedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
