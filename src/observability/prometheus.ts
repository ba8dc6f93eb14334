/**
 * Prometheus metrics for Larder caches, through `prom-client` (an optional peer dependency).
 *
 * Nothing is recorded per operation: every value is read from `cache.stats()` and
 * `cache.store.status()` when the registry is scraped.
 *
 * @example
 * import { registerLarderMetrics } from 'larder/prometheus';
 * registerLarderMetrics(cache); // prom-client's default registry, label cache="<namespace>"
 * // then serve `await register.metrics()` on /metrics as usual
 *
 * @see docs/observability.md
 * @module
 */
import { register as defaultRegistry, type Metric, type Registry } from 'prom-client';
import type { Cache } from '../core/cache.js';
import type { HistogramSnapshot } from '../core/metrics.js';
import {
  breakerValue,
  msToSeconds,
  Observed,
  type CacheReading,
  type Counts,
  type CounterRow,
  type ObserveOptions,
} from './shared.js';

export type { ObserveOptions } from './shared.js';

/** A prom-client registry, of either content type. */
export type PrometheusRegistry = Pick<Registry, 'registerMetric' | 'getSingleMetric' | 'removeSingleMetric'>;

/** Options of {@link registerLarderMetrics}. */
export interface PrometheusOptions extends ObserveOptions {
  /**
   * The registry to register the metrics on. Several caches can share one: each adds its series
   * (under its `cache` label) to the same metric families.
   * @default prom-client's default registry (`register`)
   */
  readonly registry?: PrometheusRegistry;
  /**
   * Prefix of every metric name. Caches registered with one prefix on one registry share metric
   * families; use another prefix to keep two sets apart.
   * @default 'larder_'
   */
  readonly prefix?: string;
}

type Labels = Record<string, string>;
interface Sample {
  readonly value: number;
  readonly labels: Labels;
  readonly metricName?: string;
}
type Kind = 'counter' | 'gauge' | 'histogram';

interface Family {
  /** Without the prefix. */
  readonly name: string;
  readonly kind: Kind;
  readonly help: string;
  samples(reading: CacheReading, into: Sample[], fullName: string): void;
}

/** A counter per namespace row. */
function rowCounter(name: string, help: string, value: (counts: Counts) => number): Family {
  return {
    name,
    kind: 'counter',
    help,
    samples(reading, into) {
      for (const row of reading.rows) into.push({ value: value(row.counts), labels: rowLabels(reading, row) });
    },
  };
}

function rowLabels(reading: CacheReading, row: CounterRow): Labels {
  return row.namespace === undefined ? { cache: reading.name } : { cache: reading.name, namespace: row.namespace };
}

/** A value of the whole cache. */
function cacheValue(name: string, kind: Kind, help: string, value: (reading: CacheReading) => number): Family {
  return {
    name,
    kind,
    help,
    samples(reading, into) {
      into.push({ value: value(reading), labels: { cache: reading.name } });
    },
  };
}

/** A value of the cache's store. */
function storeValue(name: string, kind: Kind, help: string, value: (reading: CacheReading) => number): Family {
  return {
    name,
    kind,
    help,
    samples(reading, into) {
      into.push({ value: value(reading), labels: { cache: reading.name, store: reading.store } });
    },
  };
}

/** Cumulative `le` buckets in seconds, `_sum` in seconds, `_count`. */
function pushHistogram(into: Sample[], fullName: string, labels: Labels, histogram: HistogramSnapshot): void {
  let cumulative = 0;
  for (let i = 0; i < histogram.counts.length; i++) {
    cumulative += histogram.counts[i]!;
    const bound = histogram.bounds[i];
    const le = bound === undefined ? '+Inf' : String(msToSeconds(bound));
    into.push({ metricName: `${fullName}_bucket`, value: cumulative, labels: { ...labels, le } });
  }
  into.push({ metricName: `${fullName}_sum`, value: msToSeconds(histogram.sum), labels });
  into.push({ metricName: `${fullName}_count`, value: histogram.count, labels });
}

const FAMILIES: readonly Family[] = [
  {
    name: 'cache_hits_total',
    kind: 'counter',
    help: 'Reads answered from the cache (fresh or stale), by tier.',
    samples(reading, into) {
      for (const row of reading.rows) {
        const labels = rowLabels(reading, row);
        into.push({ value: row.counts.l1Hits, labels: { ...labels, tier: 'l1' } });
        into.push({ value: row.counts.l2Hits, labels: { ...labels, tier: 'l2' } });
      }
    },
  },
  rowCounter('cache_misses_total', 'Reads that found nothing usable.', (c) => c.misses),
  rowCounter(
    'cache_stale_served_total',
    'Hits served past their fresh period (stale-while-revalidate, soft timeout, fail-safe).',
    (c) => c.staleHits,
  ),
  rowCounter('cache_negative_hits_total', 'Hits on a cached "not found".', (c) => c.negativeHits),
  rowCounter('cache_loads_total', 'Loader calls (foreground and background).', (c) => c.loads),
  rowCounter('cache_load_errors_total', 'Loader calls that threw or timed out.', (c) => c.loadErrors),
  rowCounter('cache_load_timeouts_total', 'Loader calls stopped by the hard timeout.', (c) => c.loadTimeouts),
  {
    name: 'cache_refreshes_total',
    kind: 'counter',
    help: 'Background refreshes started, by reason: early (refresh-ahead, XFetch, before expiry) or stale (stale-while-revalidate, soft timeout).',
    samples(reading, into) {
      for (const row of reading.rows) {
        const labels = rowLabels(reading, row);
        into.push({ value: row.counts.earlyRefreshes, labels: { ...labels, reason: 'early' } });
        into.push({ value: row.counts.staleRefreshes, labels: { ...labels, reason: 'stale' } });
      }
    },
  },
  rowCounter('cache_lock_waits_total', "Times a caller waited for another process's load.", (c) => c.lockWaits),
  rowCounter('cache_fail_open_total', 'Store failures absorbed (a read answered as a miss, a write dropped).', (c) => c.failOpen),
  rowCounter('cache_corrupt_total', 'Entries that could not be read (and were deleted).', (c) => c.corrupt),
  rowCounter('cache_write_errors_total', 'Store writes that failed.', (c) => c.writeErrors),
  rowCounter(
    'cache_writes_skipped_total',
    'Loaded values not written because the key was invalidated while loading.',
    (c) => c.writesSkipped,
  ),
  cacheValue(
    'cache_evictions_total',
    'counter',
    'Entries the in-process tier (L1) evicted to stay within its bounds.',
    (r) => r.stats.l1Evictions,
  ),
  cacheValue('cache_l1_entries', 'gauge', 'Entries in the in-process tier (L1).', (r) => r.stats.l1Entries),
  cacheValue('cache_l1_bytes', 'gauge', 'Bytes held by the in-process tier (L1), serialized size.', (r) => r.stats.l1Bytes),
  {
    name: 'cache_get_duration_seconds',
    kind: 'histogram',
    help: 'Reads answered by a tier, in seconds. The l1 tier is sampled (one hit in 64 is timed).',
    samples(reading, into, fullName) {
      for (const row of reading.rows) {
        const labels = rowLabels(reading, row);
        pushHistogram(into, fullName, { ...labels, tier: 'l1' }, row.latency.l1);
        pushHistogram(into, fullName, { ...labels, tier: 'l2' }, row.latency.l2);
      }
    },
  },
  {
    name: 'cache_load_duration_seconds',
    kind: 'histogram',
    help: 'Loader calls, in seconds (foreground and background, batches included).',
    samples(reading, into, fullName) {
      for (const row of reading.rows) pushHistogram(into, fullName, rowLabels(reading, row), row.latency.load);
    },
  },
  {
    name: 'store_command_duration_seconds',
    kind: 'histogram',
    help: 'Store (Redis) commands, in seconds, round trip included.',
    samples(reading, into, fullName) {
      const latency = reading.status.latency;
      if (latency !== undefined) pushHistogram(into, fullName, { cache: reading.name, store: reading.store }, latency);
    },
  },
  storeValue('store_ready', 'gauge', '1 when the store can send commands now, else 0.', (r) => (r.status.ready ? 1 : 0)),
  storeValue('store_breaker_state', 'gauge', 'Circuit breaker of the store: 0 closed, 1 half-open, 2 open.', (r) =>
    breakerValue(r.status.breaker),
  ),
  storeValue(
    'store_breaker_opens_total',
    'counter',
    'Times the circuit breaker of the store opened.',
    (r) => r.status.breakerOpens ?? 0,
  ),
  storeValue('store_pending_commands', 'gauge', 'Commands sent to the store and not answered yet.', (r) => r.status.pending),
  {
    name: 'store_pool_connections',
    kind: 'gauge',
    help: 'Connections of the store client pool (node-redis createClientPool), by state: idle or used (running a command, or connecting).',
    samples(reading, into) {
      const pool = reading.status.pool;
      if (pool === undefined) return;
      const labels = { cache: reading.name, store: reading.store };
      into.push({ value: pool.idle, labels: { ...labels, state: 'idle' } });
      into.push({ value: pool.inUse, labels: { ...labels, state: 'used' } });
    },
  },
  {
    name: 'store_pool_pending_requests',
    kind: 'gauge',
    help: 'Commands waiting for a connection of the store client pool (it is at its maximum).',
    samples(reading, into) {
      const pool = reading.status.pool;
      if (pool !== undefined) into.push({ value: pool.waiting, labels: { cache: reading.name, store: reading.store } });
    },
  },
  {
    name: 'store_detail',
    kind: 'gauge',
    help: 'Numeric and boolean (0/1) connection details the store client reports, by detail name.',
    samples(reading, into) {
      for (const [detail, value] of Object.entries(reading.status.details ?? {})) {
        if (typeof value === 'string') continue;
        into.push({ value: Number(value), labels: { cache: reading.name, store: reading.store, detail } });
      }
    },
  },
  {
    name: 'store_info',
    kind: 'gauge',
    help: 'Textual connection details the store client reports (value label), always 1.',
    samples(reading, into) {
      for (const [detail, value] of Object.entries(reading.status.details ?? {})) {
        if (typeof value !== 'string') continue;
        into.push({ value: 1, labels: { cache: reading.name, store: reading.store, detail, value } });
      }
    },
  },
];

/** The metric names {@link registerLarderMetrics} registers, without the prefix. */
export const METRIC_NAMES: readonly string[] = Object.freeze(FAMILIES.map((f) => f.name));

/** A prom-client metric object whose values are read on scrape. */
interface ScrapedMetric {
  name: string;
  readonly help: string;
  readonly type: Kind;
  readonly aggregator: 'sum';
  readonly labelNames: readonly string[];
  get(): Promise<{ name: string; help: string; type: Kind; aggregator: 'sum'; values: Sample[] }>;
  reset(): void;
}

/** The caches read by one registry under one prefix, and the metric objects serving them. */
class Collector {
  readonly #observed = new Map<string, Observed>();
  /** Each metric and the name it is registered under (an OpenMetrics registry renames counters later). */
  readonly #metrics: { readonly key: string; readonly metric: ScrapedMetric }[];
  /** Readings of the scrape in progress (all metrics of one scrape read in the same tick). */
  #readings: CacheReading[] | undefined;

  constructor(
    readonly registry: PrometheusRegistry,
    readonly prefix: string,
  ) {
    this.#metrics = FAMILIES.map((family) => ({ key: prefix + family.name, metric: this.#metric(family) }));
  }

  #metric(family: Family): ScrapedMetric {
    const fullName = this.prefix + family.name;
    const metric: ScrapedMetric = {
      name: fullName,
      help: family.help,
      type: family.kind,
      aggregator: 'sum',
      labelNames: [],
      get: async () => {
        const values: Sample[] = [];
        for (const reading of this.#read()) family.samples(reading, values, fullName);
        // `metric.name`, not `fullName`: a registry in OpenMetrics mode renames counters.
        return { name: metric.name, help: family.help, type: family.kind, aggregator: 'sum', values };
      },
      reset: () => undefined,
    };
    return metric;
  }

  #read(): CacheReading[] {
    if (this.#readings === undefined) {
      this.#readings = [...this.#observed.values()].map((o) => o.read());
      queueMicrotask(() => (this.#readings = undefined));
    }
    return this.#readings;
  }

  get size(): number {
    return this.#observed.size;
  }

  add(observed: Observed): void {
    if (this.#observed.has(observed.name)) {
      throw new Error(
        `Larder metrics: a cache named "${observed.name}" is already registered on this registry (pass another \`name\`)`,
      );
    }
    for (const { key, metric } of this.#metrics) {
      const existing = this.registry.getSingleMetric(key) as unknown;
      if (existing !== undefined && existing !== metric)
        throw new Error(`Larder metrics: the registry already has a metric named ${key}`);
    }
    // Registering again is harmless, and restores metrics a `registry.clear()` removed.
    for (const { metric } of this.#metrics) this.registry.registerMetric(metric as unknown as Metric);
    this.#observed.set(observed.name, observed);
  }

  remove(observed: Observed): void {
    if (this.#observed.get(observed.name) !== observed) return;
    this.#observed.delete(observed.name);
    if (this.#observed.size > 0) return;
    for (const { key, metric } of this.#metrics) {
      if ((this.registry.getSingleMetric(key) as unknown) === metric) this.registry.removeSingleMetric(key);
    }
  }
}

const collectors = new WeakMap<PrometheusRegistry, Map<string, Collector>>();

/**
 * Registers the metrics of `cache` on a prom-client registry: counters, L1 gauges, latency
 * histograms (seconds, cumulative `le` buckets) and store health, all labelled
 * `cache="<name>"`. Values are read from `cache.stats()` and `cache.store.status()` on each
 * scrape; nothing is recorded per operation.
 *
 * Call it once per cache (each with its own `name`); caches on one registry share the metric
 * families. Returns a function that unregisters this cache (and the metric families, when it
 * was the last one).
 *
 * @see docs/observability.md for the metric list
 */
export function registerLarderMetrics(cache: Cache, options: PrometheusOptions = {}): () => void {
  const registry = options.registry ?? defaultRegistry;
  const prefix = options.prefix ?? 'larder_';
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) throw new TypeError(`Larder metrics: invalid metric name prefix "${prefix}"`);
  const observed = new Observed(cache, options);
  let byPrefix = collectors.get(registry);
  if (byPrefix === undefined) collectors.set(registry, (byPrefix = new Map()));
  let collector = byPrefix.get(prefix);
  if (collector === undefined) byPrefix.set(prefix, (collector = new Collector(registry, prefix)));
  collector.add(observed);
  const owner = collector;
  return () => {
    owner.remove(observed);
    if (owner.size === 0 && byPrefix.get(prefix) === owner) byPrefix.delete(prefix);
  };
}
