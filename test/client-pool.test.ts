/**
 * The node-redis store over a client pool (`createClientPool()`), on a real Redis: commands spread
 * over the pool's connections, pub/sub on a connection of its own, pool figures in
 * `store.status()` and in both exporters. (The whole cache suite also runs over a pool:
 * test/cache.node-redis-pool.test.ts.)
 */
import { MeterProvider, MetricReader, AggregationTemporality, type DataPoint } from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';
import { createClientPool } from 'redis';
import { afterEach, describe, expect, it } from 'vitest';
import { createCache, type Cache } from '../src/index.js';
import { instrumentLarder } from '../src/observability/otel.js';
import { registerLarderMetrics } from '../src/observability/prometheus.js';
import { redisStore } from '../src/stores/redis.js';
import { eventually, REDIS_URL, sleep, uniqueNamespace } from './helpers/redis.js';
import { parseExposition, sampleValue } from './observability/exposition.js';

function newPool(options: { minimum?: number; maximum?: number }) {
  return createClientPool({ url: REDIS_URL, socket: { reconnectStrategy: 50 } }, { minimum: 1, maximum: 4, ...options });
}
type Pool = ReturnType<typeof newPool>;

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});

async function pool(options: { minimum?: number; maximum?: number } = {}): Promise<Pool> {
  const p = newPool(options);
  p.on('error', () => undefined);
  await p.connect();
  cleanup.push(async () => p.isOpen && (await p.close()));
  return p;
}

function cacheOver(p: Pool, options: { l1?: boolean } = {}): Cache {
  const cache = createCache({
    namespace: uniqueNamespace('pool'),
    store: redisStore({ client: p }),
    ...(options.l1 === true ? { l1: {} } : {}),
  });
  cleanup.push(async () => {
    await cache.clear().catch(() => undefined);
    await cache.close();
  });
  return cache;
}

class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

describe('node-redis client pool', () => {
  it('serves the cache over the pool, and reports its connections and waiting commands', async () => {
    const p = await pool({ maximum: 2 });
    const cache = cacheOver(p);
    expect(cache.store.status()).toMatchObject({
      ready: true,
      pool: { total: 1, idle: 1, inUse: 0, waiting: 0 },
      details: { topology: 'pool', cluster: false, open: true, ready: true },
    });
    // 40 concurrent misses on a pool of at most 2: commands queue for a connection.
    let maxWaiting = 0;
    const state = { sampling: true };
    const sampler = (async () => {
      while (state.sampling) {
        maxWaiting = Math.max(maxWaiting, cache.store.status().pool!.waiting);
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const values = await Promise.all(Array.from({ length: 40 }, (_, i) => cache.getOrSet(`k${i}`, () => i)));
    state.sampling = false;
    await sampler;
    expect(values).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(maxWaiting).toBeGreaterThan(0);
    await eventually(() => cache.store.status().pending === 0, 5_000, 'writes in flight');
    const { pool: figures } = cache.store.status();
    expect(figures).toMatchObject({ total: 2, inUse: 0, idle: 2, waiting: 0 });
    // Hits, multi-key reads, clear() (SCAN over the pool) work as on a client.
    expect(await cache.getMany(['k1', 'k2', 'nope'])).toEqual([1, 2, undefined]);
    expect(await cache.getOrSet('k3', () => -1)).toBe(3);
    expect(await cache.clear()).toBeGreaterThanOrEqual(40);
    expect(await cache.get('k1')).toBeUndefined();
  });

  it('exports the pool figures: larder_store_pool_* in Prometheus, db.client.connection.* in OpenTelemetry', async () => {
    const p = await pool({ minimum: 2, maximum: 4 });
    const cache = cacheOver(p);
    await cache.getOrSet('a', () => 'A');
    await eventually(() => cache.store.status().pending === 0, 5_000, 'writes in flight');

    const registry = new Registry();
    const unregister = registerLarderMetrics(cache, { registry, name: 'pooled' });
    cleanup.push(async () => unregister());
    const families = parseExposition(await registry.metrics());
    const labels = { cache: 'pooled', store: 'redis' };
    expect(families.get('larder_store_pool_connections')?.type).toBe('gauge');
    expect(sampleValue(families, 'larder_store_pool_connections', { ...labels, state: 'idle' })).toBe(2);
    expect(sampleValue(families, 'larder_store_pool_connections', { ...labels, state: 'used' })).toBe(0);
    expect(sampleValue(families, 'larder_store_pool_pending_requests', labels)).toBe(0);
    expect(sampleValue(families, 'larder_store_info', { ...labels, detail: 'topology', value: 'pool' })).toBe(1);

    const reader = new TestReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    cleanup.push(() => meterProvider.shutdown());
    const otel = instrumentLarder({ meterProvider, loads: false, commands: false, caches: [{ cache, name: 'pooled' }] });
    cleanup.push(async () => otel.disable());
    const metrics = (await reader.collect()).resourceMetrics.scopeMetrics.find((s) => s.scope.name === 'larder')!.metrics;
    const connections = metrics.find((m) => m.descriptor.name === 'db.client.connection.count')!;
    const byState = Object.fromEntries(
      (connections.dataPoints as DataPoint<number>[]).map((d) => [d.attributes['db.client.connection.state'], d]),
    );
    expect(byState.idle!.value).toBe(2);
    expect(byState.used!.value).toBe(0);
    expect(byState.idle!.attributes).toMatchObject({
      'larder.cache': 'pooled',
      'larder.store': 'redis',
      'db.client.connection.pool.name': 'pooled',
    });
    const pending = metrics.find((m) => m.descriptor.name === 'db.client.connection.pending_requests')!;
    expect((pending.dataPoints as DataPoint<number>[])[0]!.value).toBe(0);
  });

  it('runs pub/sub on a connection of its own: the bus and lease waits work, and close() leaves the pool open', async () => {
    const p = await pool({ minimum: 1, maximum: 2 });
    const namespace = uniqueNamespace('pool');
    const a = createCache({ namespace, store: redisStore({ client: p }), l1: {} });
    const b = createCache({ namespace, store: redisStore({ client: p }), l1: {} });
    cleanup.push(() => Promise.all([a.clear().catch(() => undefined), a.close(), b.close()]));
    // L1 answers once the bus is up; an invalidation on one reaches the other's L1.
    await eventually(async () => (await a.getOrSet('k', () => 1)) === 1 && a.stats().l1Hits > 0, 10_000, 'a L1 hit on a');
    await eventually(async () => (await b.getOrSet('k', () => 2)) === 1 && b.stats().l1Hits > 0, 10_000, 'a L1 hit on b');
    await a.set('k', 3);
    await eventually(async () => (await b.getOrSet('k', () => 4)) === 3, 5_000, 'b to hear the invalidation');
    // A lease wait: b waits for a's slow load and wakes on its message (no second load).
    let loads = 0;
    const slow = a.getOrSet('slow', async () => {
      loads++;
      await sleep(150);
      return 'slow';
    });
    await sleep(30);
    expect(await b.getOrSet('slow', () => (loads++, 'b'))).toBe('slow');
    expect(await slow).toBe('slow');
    expect(loads).toBe(1);
    expect(b.stats().lockWaits).toBe(1);
    // The subscriber connections are the stores'; the pool is the caller's.
    await a.close();
    await b.close();
    expect(p.isOpen).toBe(true);
    expect(await p.sendCommand(['PING'])).toBe('PONG');
    expect(p.totalClients).toBeLessThanOrEqual(2);
  });

  it('fails open, never crashes, once the pool is closed: ready false, the loader answers', async () => {
    const p = await pool();
    const cache = cacheOver(p, { l1: true });
    await p.close();
    expect(cache.store.status().ready).toBe(false);
    const errors: string[] = [];
    cache.on('store-error', (event) => errors.push(event.operation));
    expect(await cache.getOrSet('k', () => 'loaded')).toBe('loaded');
    expect(await cache.getOrSet('k', () => 'again')).toBe('again');
    await eventually(() => errors.length > 0, 5_000, 'a store error');
    expect(cache.stats().failOpen).toBeGreaterThan(0);
  });
});
