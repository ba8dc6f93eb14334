/**
 * What the exporters share: which caches they read and under which names, the counters of each
 * namespace row, and histogram arithmetic. Type-only imports of the core: loading this module
 * loads nothing else of Larder.
 *
 * @internal
 */
import type { Cache } from '../core/cache.js';
import type { HistogramSnapshot } from '../core/metrics.js';
import type { CacheStats, LatencyStats } from '../core/stats.js';
import type { StoreStatus } from '../stores/store.js';

/** How an exporter reads one cache: a name for the `cache` label, plus the namespaces to split out. */
export interface ObserveOptions {
  /**
   * The `cache` label (Prometheus) or `larder.cache` attribute (OpenTelemetry) of this cache's
   * series. Must be unique among the caches one registry or meter reads.
   * @default the cache's namespace (the first segment of `cache.prefix`)
   */
  readonly name?: string;
  /**
   * Child caches (from `cache.namespace(name)`) whose counters and latency histograms are
   * reported as separate series with a `namespace` label. Pass the very instances the
   * application uses: a child's counters live on its `Cache` object, and `cache.namespace('x')`
   * called again starts new ones.
   *
   * The series are disjoint, so `sum by (cache)` still gives the cache's totals: each listed
   * namespace gets its own series, and the series without a `namespace` label counts the rest
   * (the root cache and any namespace not listed). List the namespaces once, at startup: adding
   * one later moves its past counts out of the unlabelled series, which then looks like a reset.
   * @default {}
   */
  readonly namespaces?: Readonly<Record<string, Cache>>;
}

/** The counters of the namespace rows, summed. */
export type Counts = Omit<CacheStats, 'latency' | 'l1Entries' | 'l1Bytes' | 'l1Evictions'>;

export const COUNTER_KEYS = [
  'hits',
  'l1Hits',
  'l2Hits',
  'staleHits',
  'negativeHits',
  'misses',
  'loads',
  'loadErrors',
  'loadTimeouts',
  'refreshes',
  'earlyRefreshes',
  'staleRefreshes',
  'corrupt',
  'failOpen',
  'writeErrors',
  'writesSkipped',
  'lockWaits',
] as const satisfies readonly (keyof Counts)[];

/** One row of counters and histograms: the namespace it belongs to (`undefined`: the rest of the cache). */
export interface CounterRow {
  readonly namespace: string | undefined;
  readonly counts: Counts;
  readonly latency: LatencyStats;
}

/** One cache as read at one instant. */
export interface CacheReading {
  readonly name: string;
  /** The whole cache (totals, histograms, L1 figures). */
  readonly stats: CacheStats;
  /** Disjoint rows (counters and latency): the listed namespaces, then the rest. */
  readonly rows: readonly CounterRow[];
  readonly status: StoreStatus;
  readonly store: string;
}

/** A cache an exporter reads. */
export class Observed {
  readonly name: string;
  readonly cache: Cache;
  readonly namespaces: readonly (readonly [string, Cache])[];
  /** The cache's key prefix (the `cache` field of diagnostics_channel messages). */
  readonly prefix: string;

  constructor(cache: Cache, options: ObserveOptions) {
    if (typeof cache !== 'object' || cache === null || typeof cache.stats !== 'function') {
      throw new TypeError('Larder observability: expected a cache from createCache()');
    }
    this.cache = cache;
    this.prefix = cache.prefix;
    this.name = options.name ?? defaultName(cache);
    if (typeof this.name !== 'string' || this.name === '')
      throw new TypeError('Larder observability: `name` must be a non-empty string');
    const namespaces = Object.entries(options.namespaces ?? {});
    for (const [label, child] of namespaces) {
      if (typeof child !== 'object' || child === null || typeof child.stats !== 'function') {
        throw new TypeError(`Larder observability: namespace "${label}" is not a cache`);
      }
      // A child's keys hang off its parent's prefix with `/` (see core/keys.ts).
      if (!child.prefix.startsWith(`${cache.prefix.slice(0, -1)}/`)) {
        throw new TypeError(`Larder observability: namespace "${label}" is not a child of this cache (cache.namespace(...))`);
      }
    }
    this.namespaces = namespaces;
  }

  read(): CacheReading {
    const stats = this.cache.stats();
    const rows: CounterRow[] = [];
    const rest: Record<keyof Counts, number> = { ...pickCounts(stats) };
    let { l1, l2, load } = stats.latency;
    for (const [namespace, child] of this.namespaces) {
      const own = child.stats();
      const counts = pickCounts(own);
      // Each namespace's counters and observations are also in the root's totals: take them
      // out of the rest.
      for (const key of COUNTER_KEYS) rest[key] -= counts[key];
      l1 = histogramDelta(l1, own.latency.l1);
      l2 = histogramDelta(l2, own.latency.l2);
      load = histogramDelta(load, own.latency.load);
      rows.push({ namespace, counts, latency: own.latency });
    }
    for (const key of COUNTER_KEYS) if (rest[key] < 0) rest[key] = 0;
    rows.push({ namespace: undefined, counts: rest, latency: { l1, l2, load } });
    const store = this.cache.store;
    return { name: this.name, stats, rows, status: store.status(), store: store.name };
  }
}

function pickCounts(stats: CacheStats): Counts {
  const counts = {} as Record<keyof Counts, number>;
  for (const key of COUNTER_KEYS) counts[key] = stats[key];
  return counts;
}

/** The cache's namespace: its prefix up to the first `:`. */
export function defaultName(cache: Cache): string {
  const prefix = cache.prefix;
  const end = prefix.indexOf(':');
  return end > 0 ? prefix.slice(0, end) : prefix || 'default';
}

/** 0 closed, 1 half-open, 2 open. */
export function breakerValue(state: StoreStatus['breaker']): number {
  return state === 'open' ? 2 : state === 'half-open' ? 1 : 0;
}

/** Milliseconds to seconds without binary noise (0.025 ms → 0.000025, not 0.000024999…). */
export function msToSeconds(ms: number): number {
  return Number((ms / 1_000).toPrecision(12));
}

/** The per-bucket counts of `after` minus `before` (same bounds), for a window between two readings. */
export function histogramDelta(after: HistogramSnapshot, before: HistogramSnapshot | undefined): HistogramSnapshot {
  if (before === undefined) return after;
  return {
    bounds: after.bounds,
    counts: after.counts.map((c, i) => Math.max(0, c - (before.counts[i] ?? 0))),
    sum: Math.max(0, after.sum - before.sum),
    count: Math.max(0, after.count - before.count),
  };
}

/**
 * The `q` quantile (0..1) of a histogram, in its unit, interpolated linearly inside the bucket
 * that holds it (as Prometheus' `histogram_quantile` does). `undefined` when it is empty. A
 * quantile in the +Inf bucket answers the last finite bound.
 */
export function quantile(histogram: HistogramSnapshot, q: number): number | undefined {
  const total = histogram.counts.reduce((a, b) => a + b, 0);
  if (total === 0) return undefined;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < histogram.counts.length; i++) {
    const count = histogram.counts[i]!;
    if (count > 0 && seen + count >= rank) {
      const upper = histogram.bounds[i];
      if (upper === undefined) return histogram.bounds.at(-1);
      const lower = i === 0 ? 0 : histogram.bounds[i - 1]!;
      return lower + (upper - lower) * ((rank - seen) / count);
    }
    seen += count;
  }
  return histogram.bounds.at(-1);
}
