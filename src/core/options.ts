/**
 * Options: every option is documented once, on {@link CacheOptions}; per-call option types are
 * `Pick`s of it, so documentation and types cannot drift apart.
 *
 * Durations are milliseconds everywhere. For each one the JSDoc says what `0` and `Infinity`
 * mean; `undefined` always means "use the default" (the cache's, then the library's).
 *
 * Options resolve in three layers (library defaults, then the cache's, then the call's) into a
 * frozen {@link ResolvedEntryOptions}; the defaults are never mutated.
 */
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { InvalidOptionError } from '../errors.js';
import type { BusOptions } from '../bus/bus.js';
import type { CompressionOptions } from '../serializers/compression.js';
import type { EvictionPolicy } from '../tiers/memory-tier.js';
import type { Serializer } from '../serializers/serializer.js';
import type { Store } from '../stores/store.js';
import type { Clock } from './clock.js';
import { checkDuration, checkRatio } from './durations.js';
import { checkOptionNames, optionNames, type OptionNames } from './option-names.js';

export interface EarlyRefreshOptions {
  /**
   * XFetch aggressiveness (Vattani et al., VLDB 2015): a read refreshes the entry in the
   * background when `now - loadMs * beta * ln(random()) >= freshUntil`, so slow loaders start
   * earlier and refreshes spread over the fleet without coordination. `0` turns XFetch off.
   * @default 1
   */
  beta?: number;
  /**
   * Refresh-ahead threshold, as a fraction of the fresh period: the first read after this much
   * of it has elapsed refreshes in the background (`0.9`: in the last 10%), or earlier when the
   * entry's last load took more than half of what remains (so the refresh lands in time). `1`
   * turns it off.
   * @default 0.9
   */
  ahead?: number;
}

export interface LockOptions {
  /**
   * How long a lease (the "I am loading this key" marker) lives, in ms. The holder renews it
   * (every third of it) while its loader runs; if the holder dies, others take over after at
   * most this long. Short, so a dead holder costs little; a holder whose event loop stalls for
   * longer loses its lease, and a second load may run (its write still cannot overwrite newer).
   * @default 2_000
   */
  ttl?: number;
  /**
   * Longest time a caller waits for another process's load, in ms, before it runs the loader
   * itself (its result is written only if the key was not written meanwhile). `0`: never wait.
   * Well above `ttl`, so a waiter outlasts a dead holder's lease and takes it over instead of
   * loading beside it.
   * @default 10_000
   */
  wait?: number;
}

export interface L1Options {
  /**
   * Most entries kept in memory.
   * @default 10_000
   */
  maxEntries?: number;
  /**
   * Most bytes kept in memory, counted as the entries' serialized size. An entry larger than
   * this is not kept in L1.
   * @default 33_554_432 (32 MiB)
   */
  maxBytes?: number;
  /**
   * Longest an entry stays in L1, in ms; it never outlives its fresh period in L2. `Infinity`:
   * as long as it is fresh. Without a bus (`bus: false`) this is how stale another instance's
   * write can leave this L1.
   * @default Infinity
   */
  ttl?: number;
  /**
   * Eviction policy: `'tinylfu'` (W-TinyLFU: admission by frequency, resists scans; the better
   * of the two on every trace in `bench/l1.ts`) or `'lru'`.
   * @default 'tinylfu'
   */
  policy?: EvictionPolicy;
  /**
   * L1 hands out the very objects it holds: callers must not mutate them. `true` returns a
   * `structuredClone` on every L1 hit instead (slower), or pass your own copy function.
   * @default false
   */
  clone?: boolean | ((value: unknown) => unknown);
}

export interface CacheOptions {
  /**
   * Where entries live: `redisStore()` / `ioredisStore()` for Redis, or `memoryStore()`.
   * @default memoryStore()
   */
  store?: Store;
  /**
   * First segment of every key (`<namespace>:v<version>:<key>`); `clear()` removes exactly this
   * namespace. 1-64 characters from `[A-Za-z0-9_.-]`.
   * @default 'larder'
   */
  namespace?: string;
  /**
   * Key version: bump it when the shape of cached values changes and every old entry becomes
   * invisible at once (they expire on their own). A non-negative integer or a short token.
   * @default 1
   */
  version?: number | string;
  /**
   * How long an entry stays fresh, in ms. `0`: values are not cached (loaders always run, still
   * deduplicated). `Infinity`: entries never expire — the only way to store without a TTL.
   * @default 60_000
   */
  ttl?: number;
  /**
   * Random reduction of each TTL, as a fraction (`0.05`: up to 5% shorter), so keys written
   * together do not expire together. `0` turns it off.
   * @default 0.05
   */
  jitter?: number;
  /**
   * How long after it stops being fresh an entry may still be served stale, in ms: while the
   * loader refreshes it (stale-while-revalidate), or when the loader fails (fail-safe). `0`:
   * never serve stale. `Infinity`: keep stale entries forever.
   * @default 0
   */
  grace?: number;
  /**
   * TTL of "not found" entries (a loader returned `undefined`), in ms. `0`: not-found results
   * are not cached. `Infinity` is refused.
   * @default Math.min(ttl, 30_000)
   */
  negativeTtl?: number;
  /**
   * Soft loader timeout, in ms, when a stale value exists: after this long the caller gets the
   * stale value and the load goes on in the background. `0`: return stale at once
   * (stale-while-revalidate). `Infinity`: always wait for the loader.
   * @default 0
   */
  timeout?: number;
  /**
   * Hard loader timeout, in ms: the loader's signal is aborted and the caller gets the stale
   * value (fail-safe) or a `LoaderTimeoutError`. `Infinity`: none.
   * @default Infinity
   */
  hardTimeout?: number;
  /**
   * When the loader fails and a stale value is served, the entry is kept fresh for this long so a
   * failing database is not asked again on every request, in ms. `0`: retry on the next read.
   * @default 5_000
   */
  failSafeBackoff?: number;
  /**
   * Refresh hot entries before they expire, in the background. `false` turns it off.
   * @default { beta: 1, ahead: 0.9 }
   */
  earlyRefresh?: EarlyRefreshOptions | false;
  /**
   * Leases: a miss takes the key's lease, so each loader runs once across every process sharing
   * the store, and the loaded value is written only if the key was not written or deleted
   * meanwhile (no stale sets). `false`: no leases — each process loads on its own (still once per
   * process) and writes unconditionally (last write wins): one round trip less per miss, for data
   * where a late write after an invalidation is acceptable.
   * @default { ttl: 2_000, wait: 10_000 }
   */
  lock?: LockOptions | false;
  /**
   * Turns values into stored payloads. Entries written by another serializer read as misses.
   * @default jsonSerializer
   */
  serializer?: Serializer;
  /**
   * Compress payloads above a size threshold. `false`: never.
   * @default false
   */
  compression?: CompressionOptions | false;
  /**
   * Longest accepted key (after the namespace), in UTF-16 code units. Longer keys throw an
   * `InvalidKeyError` before any I/O.
   * @default 1024
   */
  maxKeyLength?: number;
  /**
   * When the store fails on `get`, `has`, `getMany`, `set`, `setMany`, `delete`, `deleteMany` or
   * `clear`: `true` answers as if the key were absent (reads) or skips the write, and reports a
   * `store-error` event; `false` rejects with a `StoreError`. `getOrSet` always fails open: it
   * has a loader to answer from.
   * @default true
   */
  failOpen?: boolean;
  /** Time source. @default the system clock */
  clock?: Clock;
  /**
   * An in-process tier in front of the store: hot values are served from memory, decoded. Kept
   * coherent across instances by the invalidation bus. `false`: off.
   * @default false
   */
  l1?: L1Options | false;
  /**
   * The invalidation bus (Redis pub/sub) that tells other instances what `set`, `delete`,
   * `clear` and `invalidateTags` changed, so their L1 and tag versions follow. `false`: off (an
   * L1 is then only as fresh as `l1.ttl`). Ignored for unshared stores.
   * @default { heartbeat: 1_000 }
   */
  bus?: BusOptions | false;
  /**
   * Record latency histograms (L1 and store reads, loader calls) in `stats()`. Counters are
   * always kept. The cost is measured in `bench/` (well under 5% of an L2 hit).
   * @default true
   */
  metrics?: boolean;
  /**
   * How long a tag's version is kept in the store after an invalidation, in ms. Entries carrying
   * tags never live longer than this (their TTL is capped), so no entry can outlive the version
   * that invalidated it.
   * @default 86_400_000 (one day)
   */
  tagTtl?: number;
}

/** Options of one `getOrSet` call. */
export interface GetOrSetOptions<T = unknown> extends Pick<
  CacheOptions,
  | 'ttl'
  | 'jitter'
  | 'grace'
  | 'negativeTtl'
  | 'timeout'
  | 'hardTimeout'
  | 'failSafeBackoff'
  | 'earlyRefresh'
  | 'lock'
  | 'serializer'
> {
  /** Aborts this caller's wait (and the load, once every caller waiting on it has aborted). */
  signal?: AbortSignal;
  /**
   * A Standard Schema (zod, valibot, arktype, …). A cached value that does not fit is a miss and
   * is replaced; a loaded value that does not fit rejects with a `ValidationError` and is not
   * cached.
   */
  schema?: StandardSchemaV1<unknown, T>;
  /** Skip the cache read and load now (the result is still cached). */
  forceFresh?: boolean;
  /**
   * Tags of the entry: `invalidateTags([tag])` invalidates every entry carrying it, in O(1).
   * The versions are taken before the loader runs, so a load racing an invalidation is stale on
   * arrival and never served.
   */
  tags?: readonly string[];
}

/** Options of one `getOrSetMany` call. */
export type GetOrSetManyOptions<T = unknown> = GetOrSetOptions<T>;

/** How one entry of `set` / `setMany` is stored. */
export type EntryOptions = Pick<CacheOptions, 'ttl' | 'jitter' | 'grace' | 'negativeTtl' | 'serializer'> &
  Pick<GetOrSetOptions, 'tags'>;

/** Options of a write (`set`, `setMany`, `delete`, `deleteMany`, `clear`, `invalidateTags`). */
export interface WriteOptions {
  /**
   * Rejects the call with an `AbortError` when it fires. Before anything is sent, nothing is
   * written; once the write is on its way it cannot be called back, so it completes (with its
   * invalidation messages) in the background and may or may not have landed when you are told.
   */
  signal?: AbortSignal | undefined;
}

/** Options of one `set` call. */
export type SetOptions = EntryOptions & WriteOptions;

/** Options of one `get` / `getMany` / `has` call. */
export interface GetOptions<T = unknown> extends Pick<CacheOptions, 'serializer'> {
  /** Also return a stale value (past its fresh period, within grace). @default false */
  allowStale?: boolean;
  /** Like `GetOrSetOptions.schema`: a value that does not fit reads as a miss. */
  schema?: StandardSchemaV1<unknown, T>;
  signal?: AbortSignal;
}

/** The options a cache sets for its entries and each call may set for its own. */
const ENTRY_OPTION_NAMES = {
  ttl: true,
  jitter: true,
  grace: true,
  negativeTtl: true,
  timeout: true,
  hardTimeout: true,
  failSafeBackoff: true,
  earlyRefresh: true,
  lock: true,
  serializer: true,
} as const;

export const CACHE_OPTION_NAMES = optionNames<CacheOptions>({
  ...ENTRY_OPTION_NAMES,
  store: true,
  namespace: true,
  version: true,
  compression: true,
  maxKeyLength: true,
  failOpen: true,
  clock: true,
  l1: true,
  bus: true,
  tagTtl: true,
  metrics: true,
});

/**
 * The names any per-call options object may hold: the union of every call's options, not each
 * call's own, so one object shared by calls that take different options (`getOrSet` and `set`,
 * `get` and `has`) passes, as TypeScript lets it. A name no call takes is refused.
 */
export const CALL_OPTION_NAMES = optionNames<GetOrSetOptions & GetOptions & SetOptions & WriteOptions>({
  ...ENTRY_OPTION_NAMES,
  signal: true,
  schema: true,
  forceFresh: true,
  tags: true,
  allowStale: true,
});

/**
 * The names a `setMany` entry may hold: its key and value, and any per-call option but `signal`
 * (`set` passes its options on, its signal apart; an entry's own signal would be ignored).
 */
export const ENTRY_NAMES: OptionNames = Object.freeze(
  Object.assign(Object.create(null) as OptionNames, CALL_OPTION_NAMES, { key: true, value: true, signal: undefined }),
);

/**
 * The names of the write-only calls' options (`setMany`, `delete`, `deleteMany`, `clear`,
 * `invalidateTags`): `signal` alone, so that `setMany(entries, { ttl })` is refused rather than
 * writing with the defaults (an entry's options go on the entry).
 */
export const WRITE_OPTION_NAMES = optionNames<WriteOptions>({ signal: true });

const EARLY_REFRESH_OPTION_NAMES = optionNames<EarlyRefreshOptions>({ beta: true, ahead: true });
const LOCK_OPTION_NAMES = optionNames<LockOptions>({ ttl: true, wait: true });

/** Everything an entry's lifetime depends on, resolved and frozen. */
export interface ResolvedEntryOptions {
  readonly ttl: number;
  readonly jitter: number;
  readonly grace: number;
  readonly negativeTtl: number;
  readonly timeout: number;
  readonly hardTimeout: number;
  readonly failSafeBackoff: number;
  readonly earlyRefresh: Readonly<Required<EarlyRefreshOptions>> | false;
  readonly lock: Readonly<Required<LockOptions>> | false;
}

export const LIBRARY_DEFAULTS: ResolvedEntryOptions = Object.freeze({
  ttl: 60_000,
  jitter: 0.05,
  grace: 0,
  negativeTtl: 30_000,
  timeout: 0,
  hardTimeout: Infinity,
  failSafeBackoff: 5_000,
  earlyRefresh: Object.freeze({ beta: 1, ahead: 0.9 }),
  lock: Object.freeze({ ttl: 2_000, wait: 10_000 }),
});

type EntryOptionsInput = Pick<CacheOptions, keyof ResolvedEntryOptions>;

function resolveEarlyRefresh(
  value: EarlyRefreshOptions | false | undefined,
  base: ResolvedEntryOptions['earlyRefresh'],
): ResolvedEntryOptions['earlyRefresh'] {
  if (value === undefined) return base;
  if (value === false) return false;
  if (typeof value !== 'object' || value === null) throw new InvalidOptionError('earlyRefresh', 'expected an object or false');
  checkOptionNames(value, EARLY_REFRESH_OPTION_NAMES, 'earlyRefresh');
  const from = base === false ? LIBRARY_DEFAULTS.earlyRefresh : base;
  if (from === false) return false;
  const beta = value.beta === undefined ? from.beta : value.beta;
  if (typeof beta !== 'number' || !(beta >= 0) || !Number.isFinite(beta)) {
    throw new InvalidOptionError('earlyRefresh.beta', `expected a finite number >= 0, got ${String(beta)}`);
  }
  const ahead = value.ahead === undefined ? from.ahead : checkRatio('earlyRefresh.ahead', value.ahead);
  return Object.freeze({ beta, ahead });
}

function resolveLock(value: LockOptions | false | undefined, base: ResolvedEntryOptions['lock']): ResolvedEntryOptions['lock'] {
  if (value === undefined) return base;
  if (value === false) return false;
  if (typeof value !== 'object' || value === null) throw new InvalidOptionError('lock', 'expected an object or false');
  checkOptionNames(value, LOCK_OPTION_NAMES, 'lock');
  const from = base === false ? LIBRARY_DEFAULTS.lock : base;
  if (from === false) return false;
  return Object.freeze({
    ttl: value.ttl === undefined ? from.ttl : checkDuration('lock.ttl', value.ttl, { zero: false }),
    wait: value.wait === undefined ? from.wait : checkDuration('lock.wait', value.wait),
  });
}

/**
 * Applies `input` over `base`. Returns `base` itself when `input` sets nothing, so calls without
 * entry options allocate nothing.
 */
export function resolveEntryOptions(base: ResolvedEntryOptions, input: EntryOptionsInput | undefined): ResolvedEntryOptions {
  if (input === undefined) return base;
  const { ttl, jitter, grace, negativeTtl, timeout, hardTimeout, failSafeBackoff, earlyRefresh, lock } = input;
  const onlyTtl =
    jitter === undefined &&
    grace === undefined &&
    negativeTtl === undefined &&
    timeout === undefined &&
    hardTimeout === undefined &&
    failSafeBackoff === undefined &&
    earlyRefresh === undefined &&
    lock === undefined;
  if (onlyTtl && ttl === undefined) return base;
  // A per-call TTL is the common case (`{ ttl }` on every call): resolved once per value, not on
  // every call (an L1 hit costs little more than resolving options would).
  const byTtl = onlyTtl ? ttlResolutions(base) : undefined;
  const known = byTtl?.get(ttl);
  if (known !== undefined) return known;
  const resolved = applyEntryOptions(base, input);
  if (byTtl !== undefined && byTtl.size < MAX_TTL_RESOLUTIONS) byTtl.set(ttl, resolved);
  return resolved;
}

/** Per base options, the options resolved for a TTL alone (bounded: see resolveEntryOptions). */
const resolvedByTtl = new WeakMap<ResolvedEntryOptions, Map<unknown, ResolvedEntryOptions>>();
const MAX_TTL_RESOLUTIONS = 64;

function ttlResolutions(base: ResolvedEntryOptions): Map<unknown, ResolvedEntryOptions> {
  let byTtl = resolvedByTtl.get(base);
  if (byTtl === undefined) resolvedByTtl.set(base, (byTtl = new Map()));
  return byTtl;
}

function applyEntryOptions(base: ResolvedEntryOptions, input: EntryOptionsInput): ResolvedEntryOptions {
  const { ttl, jitter, grace, negativeTtl, timeout, hardTimeout, failSafeBackoff, earlyRefresh, lock } = input;
  const resolvedTtl = ttl === undefined ? base.ttl : checkDuration('ttl', ttl, { infinity: true });
  // Not frozen: this runs per call with options, and the result is internal and readonly-typed.
  return {
    ttl: resolvedTtl,
    jitter: jitter === undefined ? base.jitter : checkRatio('jitter', jitter),
    grace: grace === undefined ? base.grace : checkDuration('grace', grace, { infinity: true }),
    // The negative TTL follows an explicitly shorter TTL unless it is set itself.
    negativeTtl: negativeTtl === undefined ? Math.min(base.negativeTtl, resolvedTtl) : checkDuration('negativeTtl', negativeTtl),
    timeout: timeout === undefined ? base.timeout : checkDuration('timeout', timeout, { infinity: true }),
    hardTimeout:
      hardTimeout === undefined ? base.hardTimeout : checkDuration('hardTimeout', hardTimeout, { infinity: true, zero: false }),
    failSafeBackoff: failSafeBackoff === undefined ? base.failSafeBackoff : checkDuration('failSafeBackoff', failSafeBackoff),
    earlyRefresh: resolveEarlyRefresh(earlyRefresh, base.earlyRefresh),
    lock: resolveLock(lock, base.lock),
  };
}
