import { readChannel, type ReadMessage } from './diagnostics.js';
import { Histogram, type HistogramSnapshot, type HistogramTap } from './metrics.js';

/**
 * Latency histograms, in ms: on the root cache, of every namespace; on a child from
 * `cache.namespace()`, that namespace's own.
 */
export interface LatencyStats {
  /** `getOrSet`/`get` answered by L1 (sampled: 1 hit in 64 is timed; the rest cost nothing). */
  readonly l1: HistogramSnapshot;
  /** `getOrSet`/`get` reads of the store, decoding included. */
  readonly l2: HistogramSnapshot;
  /** Loader calls (foreground and background, batches included). */
  readonly load: HistogramSnapshot;
}

/** Counters kept by every cache; `cache.stats()` returns a snapshot. Plain fields: cheap to bump. */
export interface CacheStats {
  /** Reads answered from the cache (fresh or stale). */
  readonly hits: number;
  /** Hits answered by the in-process tier. */
  readonly l1Hits: number;
  /** Hits answered by the store. */
  readonly l2Hits: number;
  /** Hits served past their fresh period (stale-while-revalidate, soft timeout, fail-safe). */
  readonly staleHits: number;
  /** Hits on a cached "not found". */
  readonly negativeHits: number;
  /** Reads that found nothing usable. */
  readonly misses: number;
  /** Loader calls (foreground and background). */
  readonly loads: number;
  /** Loader calls that threw or timed out. */
  readonly loadErrors: number;
  /** Loader calls stopped by the hard timeout. */
  readonly loadTimeouts: number;
  /** Background refreshes started: `earlyRefreshes + staleRefreshes`. */
  readonly refreshes: number;
  /**
   * Background refreshes of a still-fresh entry, before it expires (refresh-ahead threshold or
   * XFetch, `earlyRefresh`).
   */
  readonly earlyRefreshes: number;
  /**
   * Background refreshes of an entry past its fresh period, served stale meanwhile
   * (stale-while-revalidate, and a foreground refresh that outlived the soft timeout).
   */
  readonly staleRefreshes: number;
  /** Entries that could not be read (corrupt, foreign serializer, failed schema); each was deleted. */
  readonly corrupt: number;
  /** Store failures absorbed (a read answered as a miss, a write dropped) instead of thrown. */
  readonly failOpen: number;
  /** Store writes that failed. */
  readonly writeErrors: number;
  /** Loaded values not written because the key was invalidated while loading. */
  readonly writesSkipped: number;
  /** Times a caller waited for another process's load. */
  readonly lockWaits: number;
  /** Entries in the in-process tier (0 without one). */
  readonly l1Entries: number;
  /** Bytes held by the in-process tier (serialized size of its entries). */
  readonly l1Bytes: number;
  /** Entries the in-process tier evicted to stay within its bounds. */
  readonly l1Evictions: number;
  /** Latency histograms (empty when the cache was created with `metrics: false`). */
  readonly latency: LatencyStats;
}

/** The counters a cache bumps. */
export type CounterName = Exclude<keyof CacheStats, 'l1Entries' | 'l1Bytes' | 'l1Evictions' | 'latency' | 'refreshes'>;

/**
 * Latency histograms of a cache, or of a namespace: a child's record into the cache's too (one
 * bucket search for both). Timed reads are also published on `larder:cache:read` while it has
 * subscribers (the OpenTelemetry integration's read histogram).
 */
export class Latency {
  readonly l1: Histogram;
  readonly l2: Histogram;
  readonly load: Histogram;
  /** Counts L1 hits, to time one in 64 (the root's counts for every namespace). */
  l1Sample = 0;

  /**
   * @param cache the root cache's prefix (`cache` of diagnostics_channel messages)
   * @param prefix this cache's or namespace's key prefix
   * @param parent the root cache's histograms, for a namespace
   */
  constructor(cache: string, prefix: string, parent?: Latency) {
    this.l1 = new Histogram(parent?.l1, readTap(cache, prefix, 'l1'));
    this.l2 = new Histogram(parent?.l2, readTap(cache, prefix, 'l2'));
    this.load = new Histogram(parent?.load);
  }

  snapshot(): LatencyStats {
    return Object.freeze({ l1: this.l1.snapshot(), l2: this.l2.snapshot(), load: this.load.snapshot() });
  }
}

function readTap(cache: string, prefix: string, tier: ReadMessage['tier']): HistogramTap {
  return (durationMs) => {
    if (readChannel.hasSubscribers) readChannel.publish({ cache, prefix, tier, durationMs } satisfies ReadMessage);
  };
}

/** Figures of the in-process tier, read when a snapshot is taken. */
export interface TierFigures {
  readonly entries: number;
  readonly bytes: number;
  readonly evictions: number;
}

export class Counters implements Record<CounterName, number> {
  hits = 0;
  l1Hits = 0;
  l2Hits = 0;
  staleHits = 0;
  negativeHits = 0;
  misses = 0;
  loads = 0;
  loadErrors = 0;
  loadTimeouts = 0;
  earlyRefreshes = 0;
  staleRefreshes = 0;
  corrupt = 0;
  failOpen = 0;
  writeErrors = 0;
  writesSkipped = 0;
  lockWaits = 0;

  snapshot(l1: TierFigures | undefined, latency: Latency): CacheStats {
    return Object.freeze({
      latency: latency.snapshot(),
      l1Entries: l1?.entries ?? 0,
      l1Bytes: l1?.bytes ?? 0,
      l1Evictions: l1?.evictions ?? 0,
      hits: this.hits,
      l1Hits: this.l1Hits,
      l2Hits: this.l2Hits,
      staleHits: this.staleHits,
      negativeHits: this.negativeHits,
      misses: this.misses,
      loads: this.loads,
      loadErrors: this.loadErrors,
      loadTimeouts: this.loadTimeouts,
      refreshes: this.earlyRefreshes + this.staleRefreshes,
      earlyRefreshes: this.earlyRefreshes,
      staleRefreshes: this.staleRefreshes,
      corrupt: this.corrupt,
      failOpen: this.failOpen,
      writeErrors: this.writeErrors,
      writesSkipped: this.writesSkipped,
      lockWaits: this.lockWaits,
    });
  }
}
