/**
 * Cache events. They carry keys (with their namespace), tiers and outcomes, never values: a
 * listener or log sink must not receive user data.
 *
 * Emitting costs nothing measurable when nobody listens: the cache checks for listeners before
 * building an event.
 */
import { EventEmitter } from 'node:events';
import type { CorruptReason } from './entry.js';

export type Tier = 'l1' | 'l2';

export interface HitEvent {
  readonly key: string;
  readonly tier: Tier;
  /** Served past its fresh period (stale-while-revalidate or fail-safe). */
  readonly stale: boolean;
}
export interface MissEvent {
  readonly key: string;
}
export interface LoadEvent {
  readonly key: string;
  readonly durationMs: number;
  /** Ran in the background (early refresh, stale-while-revalidate, soft timeout). */
  readonly background: boolean;
}
export interface LoadErrorEvent extends LoadEvent {
  readonly error: unknown;
  /** A stale value was served instead of the error. */
  readonly failSafe: boolean;
}
export interface RefreshEvent {
  readonly key: string;
  readonly reason: 'early' | 'stale' | 'soft-timeout';
}
export interface CorruptEvent {
  readonly key: string;
  readonly reason: CorruptReason | 'schema';
  readonly error?: unknown;
}
export interface StoreErrorEvent {
  /** The store operation that failed (`get`, `set`, `lease`, …). */
  readonly operation: string;
  readonly key?: string;
  readonly error: unknown;
}
export interface WriteSkippedEvent {
  readonly key: string;
  /** `invalidated`: the key was written or deleted while the loader ran (stale-set prevention). */
  readonly reason: 'invalidated';
}
export interface LockWaitEvent {
  readonly key: string;
  /** `value`: another process wrote it; `acquired`: it gave up and we got the lease; `timeout`: we loaded ourselves. */
  readonly outcome: 'value' | 'acquired' | 'timeout';
  readonly durationMs: number;
}
export interface BreakerEvent {
  readonly state: 'closed' | 'open' | 'half-open';
}
export interface BusEvent {
  /** `false`: this instance no longer hears the invalidation bus, and stops using its L1 until it does. */
  readonly connected: boolean;
}

export interface CacheEventMap {
  hit: [HitEvent];
  miss: [MissEvent];
  load: [LoadEvent];
  'load-error': [LoadErrorEvent];
  refresh: [RefreshEvent];
  corrupt: [CorruptEvent];
  'store-error': [StoreErrorEvent];
  'write-skipped': [WriteSkippedEvent];
  'lock-wait': [LockWaitEvent];
  breaker: [BreakerEvent];
  bus: [BusEvent];
}

export type CacheEventName = keyof CacheEventMap;

export class CacheEmitter extends EventEmitter<CacheEventMap> {
  /** Listener counts by event, kept current so checking costs a property read. */
  readonly #listening: Partial<Record<string | symbol, number>> = {};
  /** Listeners of `hit`, the one event checked on every cache hit. */
  hitListeners = 0;

  constructor() {
    super();
    this.on(
      'newListener' as never,
      ((name: string | symbol) => {
        this.#listening[name] = (this.#listening[name] ?? 0) + 1;
        if (name === 'hit') this.hitListeners++;
      }) as never,
    );
    this.on(
      'removeListener' as never,
      ((name: string | symbol) => {
        this.#listening[name] = (this.#listening[name] ?? 1) - 1;
        if (name === 'hit') this.hitListeners--;
      }) as never,
    );
  }

  /** Whether anyone listens to `name` (checked before building an event). */
  wants(name: CacheEventName): boolean {
    return (this.#listening[name] ?? 0) > 0;
  }
}
