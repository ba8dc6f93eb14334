/**
 * `larder/otel` with the real OpenTelemetry SDK (in-memory span exporter, a pull metric reader)
 * and a real Redis: loader spans (nested under the caller's span, parents of the loader's own
 * spans), Redis command spans, error status, key attributes, metrics, and `disable()`.
 */
import { channel, tracingChannel } from 'node:diagnostics_channel';
import { context, trace, SpanKind, SpanStatusCode, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  DataPointType,
  MeterProvider,
  MetricReader,
  type DataPoint,
  type Histogram,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createClient } from 'redis';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createCache, type Cache } from '../../src/index.js';
import { instrumentLarder, type LarderInstrumentation, type OtelOptions } from '../../src/observability/otel.js';
import { redisStore } from '../../src/stores/redis.js';
import { eventually, nodeRedis, uniqueNamespace, type NodeRedis } from '../helpers/redis.js';

class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

let client: NodeRedis;
const contextManager = new AsyncLocalStorageContextManager();
const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer: Tracer = tracerProvider.getTracer('test');
const caches: Cache[] = [];
let instrumentation: LarderInstrumentation | undefined;

beforeAll(async () => {
  client = await nodeRedis();
  // The SDK's Node context manager, as NodeSDK registers it.
  context.setGlobalContextManager(contextManager.enable());
});
afterEach(async () => {
  // Writes still in flight end their spans late: let them land before the next test starts.
  await eventually(() => caches.every((c) => c.store.status().pending === 0), 5_000, 'writes in flight');
  instrumentation?.disable();
  instrumentation = undefined;
  exporter.reset();
});
afterAll(async () => {
  await Promise.all(caches.map((c) => c.clear().catch(() => undefined)));
  await Promise.all(caches.map((c) => c.close()));
  await client.close();
  context.disable();
});

function instrument(options: OtelOptions = {}): LarderInstrumentation {
  instrumentation = instrumentLarder({ tracerProvider, ...options });
  return instrumentation;
}

function redisCache(): Cache {
  const cache = createCache({ namespace: uniqueNamespace('otel'), store: redisStore({ client }), earlyRefresh: false });
  caches.push(cache);
  return cache;
}

const spans = (name?: string): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => name === undefined || s.name === name);
const parentOf = (span: ReadableSpan): string | undefined => span.parentSpanContext?.spanId;

function metric(metrics: MetricData[], name: string): MetricData {
  const found = metrics.find((m) => m.descriptor.name === name);
  if (found === undefined) throw new Error(`no metric ${name} in ${metrics.map((m) => m.descriptor.name).join(', ')}`);
  return found;
}
function point(data: MetricData, attributes: Record<string, string | number | boolean>): number {
  const matches = (data.dataPoints as DataPoint<number>[]).filter(
    (p) =>
      Object.keys(p.attributes).length === Object.keys(attributes).length &&
      Object.entries(attributes).every(([k, v]) => p.attributes[k] === v),
  );
  if (matches.length !== 1)
    throw new Error(`${data.descriptor.name}: ${matches.length} points match ${JSON.stringify(attributes)}`);
  return matches[0]!.value;
}

describe('larder/otel traces', () => {
  it('records a larder.load span per loader call, under the caller span, with the loader spans under it', async () => {
    instrument();
    const cache = redisCache();
    await tracer.startActiveSpan('GET /users/1', async (request) => {
      const value = await cache.getOrSet('user:1', () => {
        // What a database client instrumentation would do inside the loader.
        tracer.startSpan('SELECT users').end();
        return { id: 1 };
      });
      expect(value).toEqual({ id: 1 });
      request.end();
    });
    const [load] = spans('larder.load');
    const [request] = spans('GET /users/1');
    const [query] = spans('SELECT users');
    expect(load).toBeDefined();
    expect(parentOf(load!)).toBe(request!.spanContext().spanId);
    expect(parentOf(query!)).toBe(load!.spanContext().spanId);
    expect(load!.attributes).toEqual({ 'larder.cache': cache.prefix.split(':')[0], 'larder.background': false });
    expect(load!.status.code).toBe(SpanStatusCode.UNSET);
    // Keys stay out of spans unless asked for.
    for (const span of spans()) expect(span.attributes['larder.key']).toBeUndefined();
  });

  it('records redis.<COMMAND> client spans under the caller span, with db attributes', async () => {
    instrument();
    const cache = redisCache();
    await cache.set('k', 'v');
    exporter.reset();
    await tracer.startActiveSpan('request', async (request) => {
      expect(await cache.getOrSet('k', () => 'loaded')).toBe('v');
      request.end();
    });
    const [get] = spans('redis.GET');
    expect(get).toBeDefined();
    expect(get!.kind).toBe(SpanKind.CLIENT);
    expect(get!.attributes).toMatchObject({
      'db.system': 'redis',
      'db.system.name': 'redis',
      'db.operation.name': 'GET',
      'larder.store': 'redis',
    });
    expect(parentOf(get!)).toBe(spans('request')[0]!.spanContext().spanId);
    expect(get!.status.code).toBe(SpanStatusCode.UNSET);
    expect(spans('larder.load')).toEqual([]);
  });

  it('records a multi-key read as one span with its batch size, and a batch load with its size', async () => {
    instrument();
    const cache = redisCache();
    await cache.getOrSetMany(['a', 'b', 'c'], (keys) => keys.map((k) => k.toUpperCase()));
    const [mget] = spans('redis.MGET');
    expect(mget!.attributes).toMatchObject({ 'db.operation.name': 'MGET', 'db.operation.batch.size': 3 });
    const [load] = spans('larder.load');
    expect(load!.attributes['larder.batch.size']).toBe(3);
    expect(spans('redis.GET')).toEqual([]);
  });

  it('marks a failed loader span as an error, with the exception recorded', async () => {
    instrument();
    const cache = redisCache();
    await expect(cache.getOrSet('boom', () => Promise.reject(new TypeError('db down')))).rejects.toThrow('db down');
    const [load] = spans('larder.load');
    expect(load!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'db down' });
    expect(load!.attributes['error.type']).toBe('TypeError');
    expect(load!.events.map((e) => e.name)).toContain('exception');
    expect(load!.events[0]!.attributes?.['exception.message']).toBe('db down');
  });

  it('marks failed Redis commands as errors', async () => {
    instrument();
    const down = createClient({ url: 'redis://127.0.0.1:1', socket: { reconnectStrategy: 50 } });
    down.on('error', () => undefined);
    down.connect().catch(() => undefined);
    onTestFinished(() => down.destroy());
    const cache = createCache({
      namespace: uniqueNamespace('otel'),
      store: redisStore({ client: down, commandTimeout: 50, breaker: false }),
    });
    onTestFinished(() => cache.close());
    expect(await cache.getOrSet('k', () => 'from the loader')).toBe('from the loader');
    await eventually(() => spans().some((s) => s.name.startsWith('redis.') && s.status.code === SpanStatusCode.ERROR));
    const failed = spans().filter((s) => s.name.startsWith('redis.') && s.status.code === SpanStatusCode.ERROR);
    expect(failed[0]!.attributes['error.type']).toMatch(/^E_/);
    expect(failed[0]!.events.map((e) => e.name)).toContain('exception');
  });

  it('puts keys in spans only when asked: hashed or raw', async () => {
    instrument({ keys: 'hash' });
    const cache = redisCache();
    await cache.getOrSet('alice@example.com', () => 1);
    const hashed = spans('larder.load')[0]!.attributes['larder.key'];
    expect(hashed).toMatch(/^[0-9a-f]{16}$/);
    expect(JSON.stringify(spans().map((s) => s.attributes))).not.toContain('alice');
    expect(spans('redis.GET')[0]?.attributes['larder.key'] ?? hashed).toBe(hashed);
    instrumentation!.disable();
    exporter.reset();
    instrument({ keys: 'raw' });
    await cache.getOrSet('bob', () => 2);
    expect(spans('larder.load')[0]!.attributes['larder.key']).toBe(`${cache.prefix}bob`);
    instrumentation!.disable();
    exporter.reset();
    instrument({ keys: (key) => key.slice(-3) });
    await cache.getOrSet('carol', () => 3);
    expect(spans('larder.load')[0]!.attributes['larder.key']).toBe('rol');
    expect(() => instrumentLarder({ keys: 'nope' as never })).toThrow(/`keys` must be/);
  });

  it('can trace loads only, or commands only', async () => {
    const cache = redisCache();
    instrument({ commands: false, metrics: false });
    await cache.getOrSet('a', () => 1);
    expect(spans().map((s) => s.name)).toEqual(['larder.load']);
    instrumentation!.disable();
    exporter.reset();
    instrument({ loads: false, metrics: false });
    await cache.getOrSet('b', () => 1);
    expect(spans().length).toBeGreaterThan(0);
    expect(spans().every((s) => s.name.startsWith('redis.'))).toBe(true);
  });

  it('disable() unsubscribes: no spans afterwards, the channels are back to zero cost', async () => {
    const load = tracingChannel('larder:cache:load');
    const command = tracingChannel('larder:store:command');
    expect(load.hasSubscribers).toBe(false);
    const handle = instrument();
    expect(load.hasSubscribers).toBe(true);
    expect(command.hasSubscribers).toBe(true);
    handle.disable();
    handle.disable();
    expect(load.hasSubscribers).toBe(false);
    expect(command.hasSubscribers).toBe(false);
    const cache = redisCache();
    await cache.getOrSet('k', () => 1);
    expect(spans()).toEqual([]);
  });
});

describe('larder/otel metrics', () => {
  it('exports counters, gauges and duration histograms read from the caches', async () => {
    const reader = new TestReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    onTestFinished(() => meterProvider.shutdown());
    const cache = redisCache();
    const users = cache.namespace('users');
    const other = createCache({ namespace: uniqueNamespace('otel'), l1: {} });
    onTestFinished(() => other.close());
    const handle = instrument({ meterProvider, caches: [{ cache, name: 'app', namespaces: { users } }] });
    const stopOther = handle.observe(other, { name: 'local' });
    expect(() => handle.observe(other, { name: 'local' })).toThrow(/already observed/);

    await users.getOrSet('1', () => 'Ada');
    await users.getOrSet('1', () => 'Ada');
    await cache.getOrSet('x', () => 'X');
    await expect(cache.getOrSet('boom', () => Promise.reject(new Error('db down')))).rejects.toThrow('db down');
    // L1 answers once its invalidation bus is up (it hears itself).
    await eventually(async () => (await other.getOrSet('k', () => 1)) === 1 && other.stats().l1Hits > 0, 10_000, 'an L1 hit');
    await eventually(() => cache.store.status().pending === 0, 5_000, 'writes in flight');

    const { resourceMetrics, errors } = await reader.collect();
    expect(errors).toEqual([]);
    const metrics = resourceMetrics.scopeMetrics.find((s) => s.scope.name === 'larder')!.metrics;
    const hits = metric(metrics, 'larder.cache.hits');
    expect(hits.dataPointType).toBe(DataPointType.SUM);
    expect(point(hits, { 'larder.cache': 'app', 'larder.namespace': 'users', 'larder.tier': 'l2' })).toBe(1);
    expect(point(hits, { 'larder.cache': 'app', 'larder.tier': 'l2' })).toBe(0);
    const localHits = other.stats().l1Hits;
    expect(point(hits, { 'larder.cache': 'local', 'larder.tier': 'l1' })).toBe(localHits);
    const misses = metric(metrics, 'larder.cache.misses');
    expect(point(misses, { 'larder.cache': 'app', 'larder.namespace': 'users' })).toBe(1);
    expect(point(misses, { 'larder.cache': 'app' })).toBe(2);
    expect(point(metric(metrics, 'larder.cache.load_errors'), { 'larder.cache': 'app' })).toBe(1);
    const refreshes = metric(metrics, 'larder.cache.refreshes');
    expect(point(refreshes, { 'larder.cache': 'app', 'larder.refresh.reason': 'early' })).toBe(0);
    expect(point(refreshes, { 'larder.cache': 'app', 'larder.refresh.reason': 'stale' })).toBe(0);
    expect(point(refreshes, { 'larder.cache': 'app', 'larder.namespace': 'users', 'larder.refresh.reason': 'stale' })).toBe(0);
    expect(point(metric(metrics, 'larder.cache.l1.entries'), { 'larder.cache': 'local' })).toBe(1);
    expect(point(metric(metrics, 'larder.store.ready'), { 'larder.cache': 'app', 'larder.store': 'redis' })).toBe(1);
    expect(point(metric(metrics, 'larder.store.breaker.state'), { 'larder.cache': 'app', 'larder.store': 'redis' })).toBe(0);
    expect(point(metric(metrics, 'larder.store.pending_commands'), { 'larder.cache': 'app', 'larder.store': 'redis' })).toBe(0);
    expect(
      point(metric(metrics, 'larder.store.detail'), {
        'larder.cache': 'app',
        'larder.store': 'redis',
        'larder.store.detail': 'open',
      }),
    ).toBe(1);

    // Load durations: one point per cache, listed namespace and outcome, in seconds, Larder's buckets.
    const loads = metric(metrics, 'larder.load.duration');
    expect(loads.descriptor.unit).toBe('s');
    const loadPoints = loads.dataPoints as DataPoint<Histogram>[];
    const app = (p: DataPoint<Histogram>, namespace?: string) =>
      p.attributes['larder.cache'] === 'app' && p.attributes['larder.namespace'] === namespace;
    const ok = loadPoints.find((p) => app(p) && p.attributes['error.type'] === undefined)!;
    const failed = loadPoints.find((p) => app(p) && p.attributes['error.type'] === 'Error')!;
    const usersOk = loadPoints.find((p) => app(p, 'users') && p.attributes['error.type'] === undefined)!;
    expect(ok.value.count).toBe(1);
    expect(failed.value.count).toBe(1);
    expect(usersOk.value.count).toBe(1);

    // Reads by tier, as Prometheus' larder_cache_get_duration_seconds: the same counts as stats().
    const reads = metric(metrics, 'larder.cache.get.duration');
    expect(reads.descriptor.unit).toBe('s');
    expect(reads.dataPointType).toBe(DataPointType.HISTOGRAM);
    const readPoints = reads.dataPoints as DataPoint<Histogram>[];
    const readPoint = (attributes: Record<string, string>) => {
      const found = readPoints.filter(
        (p) =>
          Object.keys(p.attributes).length === Object.keys(attributes).length &&
          Object.entries(attributes).every(([k, v]) => p.attributes[k] === v),
      );
      expect(found).toHaveLength(1);
      return found[0]!.value;
    };
    const usersReads = readPoint({ 'larder.cache': 'app', 'larder.namespace': 'users', 'larder.tier': 'l2' });
    expect(usersReads.count).toBe(users.stats().latency.l2.count);
    expect(usersReads.count).toBe(2);
    expect(usersReads.buckets.boundaries[0]).toBe(0.00001);
    expect(usersReads.sum).toBeCloseTo(users.stats().latency.l2.sum / 1_000, 9);
    const restReads = readPoint({ 'larder.cache': 'app', 'larder.tier': 'l2' });
    expect(restReads.count).toBe(cache.stats().latency.l2.count - 2);
    expect(ok.value.buckets.boundaries[0]).toBe(0.00001);
    expect(ok.value.sum).toBeLessThan(1);
    const commands = metric(metrics, 'db.client.operation.duration');
    const gets = (commands.dataPoints as DataPoint<Histogram>[]).find((p) => p.attributes['db.operation.name'] === 'GET')!;
    expect(gets.attributes).toMatchObject({ 'db.system.name': 'redis', 'larder.store': 'redis' });
    expect(gets.value.count).toBeGreaterThanOrEqual(3);

    // Values are read at each collection; a cache no longer observed is no longer read.
    stopOther();
    await users.getOrSet('1', () => 'Ada');
    await other.getOrSet('k', () => 1);
    const collect = async () =>
      (await reader.collect()).resourceMetrics.scopeMetrics.find((s) => s.scope.name === 'larder')!.metrics;
    let after = await collect();
    expect(
      point(metric(after, 'larder.cache.hits'), { 'larder.cache': 'app', 'larder.namespace': 'users', 'larder.tier': 'l2' }),
    ).toBe(2);
    expect(point(metric(after, 'larder.cache.hits'), { 'larder.cache': 'local', 'larder.tier': 'l1' })).toBe(localHits);
    handle.disable();
    await users.getOrSet('1', () => 'Ada');
    await cache.getOrSet('x', () => 'X');
    await eventually(() => cache.store.status().pending === 0, 5_000, 'writes in flight');
    after = await collect();
    expect(
      point(metric(after, 'larder.cache.hits'), { 'larder.cache': 'app', 'larder.namespace': 'users', 'larder.tier': 'l2' }),
    ).toBe(2);
    const getsAfter = (metric(after, 'db.client.operation.duration').dataPoints as DataPoint<Histogram>[]).find(
      (p) => p.attributes['db.operation.name'] === 'GET',
    )!;
    // One GET while enabled (users:1 above), none recorded after disable().
    expect(getsAfter.value.count).toBe(gets.value.count + 1);
  });

  it('records L1 reads in larder.cache.get.duration as sampled by stats(), and stops at disable()', async () => {
    const reader = new TestReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    onTestFinished(() => meterProvider.shutdown());
    const cache = createCache({ namespace: uniqueNamespace('otel'), l1: {} });
    onTestFinished(() => cache.close());
    const handle = instrument({ meterProvider, caches: [{ cache, name: 'mem' }] });
    expect(channel('larder:cache:read').hasSubscribers).toBe(true);
    await cache.getOrSet('k', () => 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    for (let i = 0; i < 640; i++) await cache.getOrSet('k', () => 1);
    const { latency, l1Hits } = cache.stats();
    expect(l1Hits).toBeGreaterThanOrEqual(600);
    const metrics = (await reader.collect()).resourceMetrics.scopeMetrics.find((s) => s.scope.name === 'larder')!.metrics;
    const points = metric(metrics, 'larder.cache.get.duration').dataPoints as DataPoint<Histogram>[];
    const l1 = points.find((p) => p.attributes['larder.cache'] === 'mem' && p.attributes['larder.tier'] === 'l1')!;
    expect(l1.value.count).toBe(latency.l1.count);
    expect(l1.value.count).toBeGreaterThanOrEqual(9);
    handle.disable();
    expect(channel('larder:cache:read').hasSubscribers).toBe(false);
  });

  it('names spans after the observed cache', async () => {
    const cache = redisCache();
    instrument({ caches: [{ cache, name: 'catalog' }], metrics: false });
    await cache.getOrSet('p', () => 1);
    expect(spans('larder.load')[0]!.attributes['larder.cache']).toBe('catalog');
  });
});

describe('larder/otel without a tracer from the SDK', () => {
  it('starts no span until an SDK registers a global tracer provider, then traces', async () => {
    const handle = instrumentLarder();
    onTestFinished(() => handle.disable());
    const cache = redisCache();
    expect(await cache.getOrSet('k', () => 1)).toBe(1);
    expect(await cache.getOrSet('k', () => 1)).toBe(1);
    await eventually(() => cache.store.status().pending === 0, 5_000, 'writes in flight');
    expect(spans()).toEqual([]);
    // The SDK starts later (NodeSDK.start() registers its provider globally).
    trace.setGlobalTracerProvider(tracerProvider);
    onTestFinished(() => trace.disable());
    await cache.getOrSet('other', () => 2);
    expect(spans('larder.load')).toHaveLength(1);
    expect(spans('redis.GET').length).toBeGreaterThan(0);
  });
});
