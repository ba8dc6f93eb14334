/**
 * The cache: typed cache-aside over a store, with single flight in the process and across
 * processes, stale serving, early refresh, loader timeouts and fail-open reads.
 *
 * Reading order for a `getOrSet`:
 * 1. The flight of the key, if one is running in this process: join it.
 * 2. The store. A fresh entry answers (and may schedule an early refresh); a stale one within
 *    grace answers at once or after the soft timeout while it is refreshed; a corrupt or invalid
 *    one is deleted and counts as a miss.
 * 3. A miss takes the key's lease (`SET placeholder NX PX GET`): one process loads, the others
 *    wait for its write (pub/sub, with polling as a fallback). The write is a compare-and-set on
 *    the lease, so a `set`/`delete` during the load wins over the loaded value (no stale sets).
 *
 * A store failure never fails a `getOrSet`: the loader answers, and the write is attempted.
 */
import type { StandardSchemaV1 } from '@standard-schema/spec';
import {
  AbortError,
  ClosedError,
  InvalidOptionError,
  isAbortError,
  isStoreError,
  LoaderTimeoutError,
  SerializationError,
  StoreError,
} from '../errors.js';
import { jsonSerializer } from '../serializers/json.js';
import { resolveCompression, type ResolvedCompression } from '../serializers/compression.js';
import type { Serializer } from '../serializers/serializer.js';
import { memoryStore } from '../stores/memory.js';
import type { ConditionalWrite, Store, StoreWrite } from '../stores/store.js';
import { systemClock, type Clock } from './clock.js';
import { Coherence } from './coherence.js';
import { eventChannel, loadTrace } from './diagnostics.js';
import { Coordination, POLL_MAX_MS, POLL_START_MS } from './coordination.js';
import { checkCount, checkDuration, describe } from './durations.js';
import {
  casPrefix,
  CorruptEntry,
  EntryCodec,
  newEntryId,
  placeholderWire,
  type Entry,
  type EntryKind,
  type TagStamp,
  type Wire,
} from './entry.js';
import { CacheEmitter, type CacheEventMap, type CacheEventName, type Tier } from './events.js';
import { checkNamespace, checkVersion, DEFAULT_MAX_KEY_LENGTH, KeySpace } from './keys.js';
import { checkOptionNames, optionNames } from './option-names.js';
import {
  Abortable,
  runLoader,
  softTimeout,
  TIMED_OUT,
  type InferringLoader,
  type LoaderValue,
  type Loader,
  type LoaderContext,
} from './loader.js';
import {
  CACHE_OPTION_NAMES,
  CALL_OPTION_NAMES,
  ENTRY_NAMES,
  WRITE_OPTION_NAMES,
  LIBRARY_DEFAULTS,
  resolveEntryOptions,
  type CacheOptions,
  type GetOptions,
  type GetOrSetManyOptions,
  type GetOrSetOptions,
  type ResolvedEntryOptions,
  type EntryOptions,
  type SetOptions,
  type WriteOptions,
} from './options.js';
import { Renewals, type Lease } from './renewals.js';
import { Flights, type Flight } from './single-flight.js';
import { Counters, Latency, type CacheStats, type CounterName } from './stats.js';
import { TagVersions } from './tags.js';
import { validate, type SchemaResult } from './validate.js';

const HIT_CHANNEL = eventChannel('hit');

/** Loads many keys at once: a `Map` by key, or an array in the order of `keys`. Missing keys are "not found". */
export type BatchLoader<T> = (
  keys: string[],
  /** `background`: a refresh of entries callers were already served (stale or refreshed early). */
  context: { readonly signal: AbortSignal; readonly background: boolean },
) => Promise<ReadonlyMap<string, T> | readonly (T | undefined)[]> | ReadonlyMap<string, T> | readonly (T | undefined)[];

/** One entry of `setMany`. */
export type SetManyEntry<T = unknown> = EntryOptions & {
  readonly key: string;
  readonly value: T;
};

/** What the cache state of a key looked like when read. */
type Read =
  | { readonly state: 'absent' }
  | { readonly state: 'leased'; readonly lease: Lease }
  | { readonly state: 'error' }
  | { readonly state: 'corrupt' }
  | { readonly state: 'fresh' | 'stale' | 'expired' | 'pending' | 'invalid'; readonly entry: Entry };

/** What `#readKey` reads with (its overloads differ only in `owner`). */
type ReadKeyArgs<T> = [
  shared: SharedRead,
  fullKey: string,
  userKey: string,
  loader: Loader<T>,
  options: GetOrSetOptions<T> | undefined,
  opts: ResolvedEntryOptions,
  codec: EntryCodec,
  forceFresh: boolean,
  shareable: boolean,
];

/** A read of one key in progress, shared by the `getOrSet` callers that arrive meanwhile. */
interface SharedRead {
  /** Callers waiting for the read's answer (created by the first to join). */
  joiners: ((read: Read) => void)[] | undefined;
  /** The flight the first caller past a miss started or joined; later callers join it too. */
  flight: Flight<unknown> | undefined;
}

/** What a write after a load puts in the store, and the entry it is (for L1). */
interface EntryWrite {
  readonly write: StoreWrite;
  readonly entry: Entry;
}

const ABSENT: Read = Object.freeze({ state: 'absent' });
const ERROR: Read = Object.freeze({ state: 'error' });
const CORRUPT: Read = Object.freeze({ state: 'corrupt' });
const DONE: Promise<void> = Promise.resolve();
/**
 * Longest a flight stays registered for a background refresh. A refresh whose loader hangs must
 * not pin the key: after this, the next caller reads the store again.
 */
const MAX_HOLD_MS = 10_000;
/** Lease TTL when `lock` is off: leases still fence out stale writes, nobody waits on them. */
const DEFAULT_LEASE_TTL = 5_000;

function leaseTtl(opts: ResolvedEntryOptions): number {
  return opts.lock === false ? DEFAULT_LEASE_TTL : opts.lock.ttl;
}

/**
 * A value for the callers, and the background work (a refresh) the flight stays registered for,
 * so callers arriving meanwhile join it instead of starting the same refresh again. Writes are
 * not part of it: once issued they are on the connection ahead of any later read.
 */
interface Outcome<T> {
  readonly value: T;
  readonly done: Promise<unknown>;
  /** While `done` runs, joiners get `value` until this time at the latest (its `staleUntil`). */
  readonly until?: number;
}

/** A loaded value and its write (issued already; settles when the store answered). */
interface Loaded<T> {
  readonly value: T;
  readonly written: Promise<unknown>;
}

/** Everything one load of one key needs. */
interface Job<T> {
  readonly flight: Flight<T>;
  readonly key: string;
  readonly userKey: string;
  readonly loader: Loader<T>;
  readonly opts: ResolvedEntryOptions;
  readonly codec: EntryCodec;
  readonly schema: StandardSchemaV1<unknown, T> | undefined;
  /** Tags of the entry (checked and deduplicated). */
  readonly tags: readonly string[] | undefined;
  /**
   * Tell the other instances when the value is written (`forceFresh`: it replaces a value they
   * may still hold). Ordinary loads replace an expired value, which nobody serves any more.
   */
  readonly announce: boolean;
}

function checkSerializer(serializer: unknown): Serializer {
  const s = serializer as Partial<Serializer> | null;
  if (
    typeof s !== 'object' ||
    s === null ||
    typeof s.name !== 'string' ||
    !/^[A-Za-z0-9_.-]{1,32}$/.test(s.name) ||
    typeof s.serialize !== 'function' ||
    typeof s.deserialize !== 'function' ||
    typeof s.binary !== 'boolean'
  ) {
    throw new InvalidOptionError(
      'serializer',
      'expected { name, binary, serialize, deserialize } with a name of 1-32 characters from [A-Za-z0-9_.-]',
    );
  }
  return s as Serializer;
}

const NAMESPACE_OPTION_NAMES = optionNames<{ version: unknown }>({ version: true });
const INVALIDATE_TARGET_NAMES = optionNames<{ keys: unknown; tags: unknown }>({ keys: true, tags: true });

/** The lock key guarding the refresh of an existing entry (a lease lives in the key itself). */
function refreshLockKey(key: string): string {
  return `${key}\u0000lock`;
}

/** State shared by a cache and its namespaced children. */
class CacheCore {
  readonly store: Store;
  readonly clock: Clock;
  readonly defaults: ResolvedEntryOptions;
  readonly defaultCodec: EntryCodec;
  readonly compression: ResolvedCompression | undefined;
  readonly codecs = new WeakMap<Serializer, EntryCodec>();
  readonly flights = new Flights();
  /** `getOrSet` reads on the wire, by full key (see `#readThrough`). */
  readonly reads = new Map<string, SharedRead>();
  readonly counters = new Counters();
  readonly latency: Latency;
  /** Record latency histograms (`metrics` option). */
  readonly metrics: boolean;
  readonly events = new CacheEmitter();
  /** The namespace prefix, as the `cache` field of diagnostics_channel messages. */
  readonly name: string;
  readonly coordination: Coordination;
  readonly renewals: Renewals;
  readonly coherence: Coherence;
  readonly tagTtl: number;
  readonly failOpen: boolean;
  /** Recent share of `getOrSet` reads that missed (exponentially weighted). */
  missRate = 0;
  /** Whether `getOrSet` reads with the lease command (see `leaseFirst`). */
  leaseFirst = false;
  /**
   * Until when reads stay GET-first because Redis refused the lease command on a read (OOM, an
   * ACL, a replica during failover); see {@link LEASE_FIRST_RETRY}.
   */
  leaseFirstRefusedUntil = 0;
  closed = false;
  /** Keys whose refresh failed recently: not refreshed early again until their backoff ends. */
  readonly refreshBackoff = new Backoffs();
  #unwatchBreaker: (() => void) | undefined;

  constructor(options: CacheOptions, rootPrefix: string, namespace: string, version: string, maxKeyLength: number) {
    this.name = rootPrefix;
    this.latency = new Latency(rootPrefix, rootPrefix);
    this.metrics = options.metrics ?? true;
    if (typeof this.metrics !== 'boolean') throw new InvalidOptionError('metrics', 'expected a boolean');
    this.store = options.store ?? memoryStore(options.clock === undefined ? {} : { clock: options.clock });
    this.clock = options.clock ?? systemClock;
    this.defaults = resolveEntryOptions(LIBRARY_DEFAULTS, options);
    this.compression = resolveCompression(options.compression);
    this.defaultCodec = new EntryCodec(checkSerializer(options.serializer ?? jsonSerializer), this.compression);
    this.codecs.set(this.defaultCodec.serializer, this.defaultCodec);
    this.failOpen = options.failOpen ?? true;
    if (typeof this.failOpen !== 'boolean') throw new InvalidOptionError('failOpen', 'expected a boolean');
    this.coordination = new Coordination(this.store, `larder:${rootPrefix}written`, (error) =>
      this.storeError('subscribe', undefined, error),
    );
    this.renewals = new Renewals(this.store, this.clock, (key, error) => this.storeError('renew', key, error));
    this.tagTtl = options.tagTtl === undefined ? 86_400_000 : checkDuration('tagTtl', options.tagTtl, { zero: false });
    this.coherence = new Coherence(
      this.store,
      {
        l1: options.l1,
        bus: options.bus,
        channel: `larder:bus:${namespace}`,
        // Outside `<namespace>:v<version>:`, so no user key can collide with a tag.
        tagKey: (tag) => `${namespace}:tags:v${version}:${tag}`,
        tagTtl: this.tagTtl,
        maxKeyLength,
        clock: this.clock,
      },
      this.flights,
      {
        busConnection: (connected) => {
          if (this.wants('bus')) this.emit('bus', { connected });
        },
      },
    );
    // The store's breaker transitions, as the cache's `breaker` event.
    this.#unwatchBreaker = this.store.watchBreaker?.((state) => {
      if (this.wants('breaker')) this.emit('breaker', { state });
    });
  }

  /** Stops re-emitting the store's breaker transitions (on `close()`). */
  unwatchBreaker(): void {
    this.#unwatchBreaker?.();
  }

  /** The tag versions (tags in use start the bus, which keeps local copies current). */
  get tags(): TagVersions {
    this.coherence.listen();
    return this.coherence.tags;
  }

  codec(serializer: Serializer | undefined): EntryCodec {
    if (serializer === undefined) return this.defaultCodec;
    let codec = this.codecs.get(serializer);
    if (codec === undefined) {
      codec = new EntryCodec(checkSerializer(serializer), this.compression);
      this.codecs.set(serializer, codec);
    }
    return codec;
  }

  /**
   * Adapts the read command to the workload. On a shared store a miss takes the key's lease
   * anyway, and `SET <placeholder> NX PX GET` both reads and leases in one round trip; on a hit it
   * writes nothing but costs a little more than `GET`. So reads use it while misses are common
   * (over 20% recently) and plain `GET` while they are rare (under 10%).
   */
  noteRead(missed: boolean): void {
    this.missRate = this.missRate * 0.98 + (missed ? 0.02 : 0);
    if (this.leaseFirst ? this.missRate < 0.1 : this.missRate > 0.2)
      this.leaseFirst = !this.leaseFirst && this.clock.now() >= this.leaseFirstRefusedUntil;
  }

  /** Whether anyone listens to `name`, as an event or on its diagnostics channel. */
  wants(name: CacheEventName): boolean {
    return this.events.wants(name) || eventChannel(name).hasSubscribers;
  }

  /** `wants('hit')`, as cheap as a property read (checked on every hit). */
  get hitWanted(): boolean {
    return this.events.hitListeners > 0 || HIT_CHANNEL.hasSubscribers;
  }

  emit<K extends CacheEventName>(name: K, event: CacheEventMap[K][0]): void {
    // Listeners are user code: one that throws must not break a cache operation.
    try {
      (this.events.emit as (name: K, event: CacheEventMap[K][0]) => boolean)(name, event);
    } catch {
      // Ignored on purpose: see above.
    }
    const ch = eventChannel(name);
    if (ch.hasSubscribers) {
      try {
        ch.publish({ cache: this.name, ...event });
      } catch {
        // Same as above: subscribers must not break the cache.
      }
    }
  }

  /** Reports a store failure; `failedOpen: false` when the call still got its answer from the store. */
  storeError(operation: string, key: string | undefined, error: unknown, failedOpen = true): void {
    if (failedOpen) this.counters.failOpen++;
    if (this.wants('store-error')) this.emit('store-error', key === undefined ? { operation, error } : { operation, key, error });
  }
}

/**
 * A cache over one store and one namespace. Create it with {@link createCache}; derive children
 * with {@link Cache.namespace}. All methods are safe to call concurrently.
 */
export class Cache {
  readonly #core: CacheCore;
  readonly #keys: KeySpace;
  /** The cache's totals, plus this namespace's own counters for a child. */
  readonly #counters: readonly Counters[];
  /** A child namespace's own counters (`undefined` on the root). */
  readonly #own: Counters | undefined;
  /** The latency histograms: the core's on the root, a namespace's own (feeding the core's) on a child. */
  readonly #latency: Latency;

  /** @internal Use {@link createCache}. */
  /** A child closed on its own (the root's closing is `core.closed`). */
  #closed = false;

  constructor(core: CacheCore, keys: KeySpace, own?: Counters) {
    this.#core = core;
    this.#keys = keys;
    this.#own = own;
    this.#counters = own === undefined ? [core.counters] : [core.counters, own];
    this.#latency = own === undefined ? core.latency : new Latency(core.name, keys.prefix, core.latency);
  }

  #countOwnHit(entry: Entry, tier: Tier): void {
    const own = this.#own!;
    own.hits++;
    if (tier === 'l1') own.l1Hits++;
    else own.l2Hits++;
    if (entry.kind === 'n') own.negativeHits++;
  }

  /** The prefix of every key of this cache (`<namespace>:v<version>:`). */
  get prefix(): string {
    return this.#keys.prefix;
  }

  /** The store this cache writes to. */
  get store(): Store {
    return this.#core.store;
  }

  /**
   * A child cache whose keys live under `<this prefix><name>:` (plus `v<version>:` when given).
   * It shares the store, the flights, the counters and the events of this cache; `clear()` on
   * this cache clears the child too.
   */
  namespace(name: string, options: { version?: number | string } = {}): Cache {
    checkNamespace('namespace', name);
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', 'expected an object');
    checkOptionNames(options, NAMESPACE_OPTION_NAMES);
    const version = options.version === undefined ? undefined : checkVersion('version', options.version);
    return new Cache(this.#core, this.#keys.child(name, version), new Counters());
  }

  // --- events and stats ------------------------------------------------------------------------

  /** Listens to a cache event (see `CacheEventMap`). Events carry keys, never values. */
  on<K extends CacheEventName>(name: K, listener: (event: CacheEventMap[K][0]) => void): this {
    this.#core.events.on(name, listener as never);
    return this;
  }

  off<K extends CacheEventName>(name: K, listener: (event: CacheEventMap[K][0]) => void): this {
    this.#core.events.off(name, listener as never);
    return this;
  }

  once<K extends CacheEventName>(name: K, listener: (event: CacheEventMap[K][0]) => void): this {
    this.#core.events.once(name, listener as never);
    return this;
  }

  /**
   * A snapshot of the counters and latency histograms. On the root cache they cover every
   * namespace; on a child from `namespace()`, they are that namespace's own (the L1 figures are
   * always the whole cache's).
   */
  stats(): CacheStats {
    const core = this.#core;
    const l1 = core.coherence.l1;
    return this.#counters
      .at(-1)!
      .snapshot(l1 === undefined ? undefined : { entries: l1.size, bytes: l1.bytes, evictions: l1.evictions }, this.#latency);
  }

  // --- getOrSet -------------------------------------------------------------------------------

  /**
   * The cached value of `key`, or the loader's (which is then cached). Concurrent calls for one
   * key run the loader once, in this process and (with a Redis store) across processes.
   *
   * The loader may return `undefined` for "not found": that is cached for `negativeTtl`.
   * Rejects with the loader's error (unless a stale value can be served), a
   * `LoaderTimeoutError`, a `ValidationError` (loaded value does not fit `schema`), an
   * `AbortError` (`signal`), or an `InvalidKeyError`. Never with a store error.
   *
   * Three signatures, tried in order, so that the value's type is inferred wherever it can be:
   * - with a `schema`, the value is the schema's output, and the loader may return anything
   *   (its value is validated before it is cached or returned), `undefined` included ("not
   *   found", never validated: the result then includes `undefined`);
   * - otherwise the loader's return type gives the value's type, the context's `stale` then
   *   being `unknown`;
   * - with the type named (`getOrSet<User>(…)`), the loader must return it and `stale` has it.
   */
  getOrSet<T, R>(
    key: string,
    loader: (context: LoaderContext<T>) => R,
    options: GetOrSetOptions<T> & { readonly schema: StandardSchemaV1<unknown, T> },
  ): Promise<undefined extends Awaited<R> ? T | undefined : T>;
  getOrSet<L extends InferringLoader>(key: string, loader: L, options?: GetOrSetOptions<LoaderValue<L>>): Promise<LoaderValue<L>>;
  getOrSet<T>(key: string, loader: Loader<T>, options?: GetOrSetOptions<T>): Promise<T>;
  getOrSet<T>(key: string, loader: Loader<T>, options?: GetOrSetOptions<T>): Promise<T> {
    const core = this.#core;
    let fullKey: string;
    let opts: ResolvedEntryOptions;
    let codec: EntryCodec;
    try {
      if (core.closed || this.#closed) throw new ClosedError();
      fullKey = this.#keys.full(key);
      if (typeof loader !== 'function') throw new InvalidOptionError('loader', `expected a function, got ${describe(loader)}`);
      // Checked before any I/O, hit or miss: a bad option fails at once, not at the first miss.
      if (options !== undefined) checkOptionNames(options, CALL_OPTION_NAMES);
      opts = resolveEntryOptions(core.defaults, options);
      if (options?.tags !== undefined) core.tags.check(options.tags);
      codec = options?.serializer === undefined ? core.defaultCodec : core.codec(options.serializer);
    } catch (error) {
      return Promise.reject(error);
    }
    const signal = options?.signal;
    if (signal?.aborted === true) return Promise.reject(new AbortError({ cause: signal.reason, key: fullKey }));
    const l1 = core.coherence.l1;
    if (l1 !== undefined && options?.forceFresh !== true && options?.serializer === undefined && options?.schema === undefined) {
      // One L1 hit in 64 is timed: timing every one would cost as much as the hit itself.
      const timed = core.metrics && (++core.latency.l1Sample & 63) === 0;
      const t0 = timed ? performance.now() : 0;
      const now = core.clock.now();
      const entry = core.coherence.l1Get(fullKey, now);
      if (entry !== undefined) {
        if (timed) this.#latency.l1.record(performance.now() - t0);
        // The L1 hit, kept flat for the optimizer: counters, one listener check, one comparison
        // for early refresh (the full check only when it may be due).
        const counters = core.counters;
        counters.hits++;
        counters.l1Hits++;
        if (entry.kind === 'n') counters.negativeHits++;
        if (this.#own !== undefined) this.#countOwnHit(entry, 'l1');
        if (core.hitWanted) this.#core.emit('hit', { key: fullKey, tier: 'l1', stale: false });
        const early = opts.earlyRefresh;
        if (
          early !== false &&
          now >= (early === core.defaults.earlyRefresh && !Number.isNaN(entry.earlyAt) ? entry.earlyAt : -Infinity)
        ) {
          this.#maybeRefreshEarly(fullKey, key, loader, undefined, options?.tags, opts, core.defaultCodec, entry, now);
        }
        return Promise.resolve(core.coherence.out(entry) as T);
      }
    }
    const running = core.flights.get<T>(fullKey);
    if (running !== undefined) return running.join(signal);
    return this.#readThrough(fullKey, key, loader, options, opts, codec, signal);
  }

  /**
   * The read of `getOrSet`. A fresh hit returns here, without a flight: flights exist only for
   * loads and refreshes, so concurrent hits cost what raw `GET`s cost. Anything else joins or
   * starts the key's flight (whose lease keeps the loader to one call across processes).
   *
   * Callers arriving while a read of the key is on the wire share it instead of sending their
   * own (with the default serializer and no schema, which read alike): without that, 1,000
   * concurrent callers send 1,000 reads, and a fast loader can finish before the last replies
   * arrive, so late callers see a miss the first load already filled. The read's owner pays a
   * map entry for this, nothing more, unless someone joins.
   *
   * Not `async`, so it must not throw: whatever can (key, options, serializer) is checked by
   * `getOrSet` before it comes here.
   */
  #readThrough<T>(
    fullKey: string,
    userKey: string,
    loader: Loader<T>,
    options: GetOrSetOptions<T> | undefined,
    opts: ResolvedEntryOptions,
    codec: EntryCodec,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    const core = this.#core;
    const forceFresh = options?.forceFresh === true;
    const shareable = codec === core.defaultCodec && options?.schema === undefined && !forceFresh;
    const onWire = shareable ? core.reads.get(fullKey) : undefined;
    if (onWire !== undefined) {
      // Someone's read of this key is on the wire: take its answer.
      const answer = new Promise<Read>((resolve) => (onWire.joiners ??= []).push(resolve));
      return this.#afterAnswer(onWire, answer, fullKey, userKey, loader, options, opts, codec, false, signal);
    }
    const shared: SharedRead = { joiners: undefined, flight: undefined };
    if (shareable) core.reads.set(fullKey, shared);
    // The common path: one async frame reads, classifies and answers.
    if (signal === undefined)
      return this.#readKey(shared, fullKey, userKey, loader, options, opts, codec, forceFresh, shareable, true);
    // An abort must reject this caller at once without cutting the read short for those who
    // join it: the read runs on its own, and this caller waits for it like a joiner.
    const answer = new Promise<Read>((resolve) => (shared.joiners = [resolve]));
    void this.#readKey(shared, fullKey, userKey, loader, options, opts, codec, forceFresh, shareable, false);
    return this.#afterAnswer(shared, answer, fullKey, userKey, loader, options, opts, codec, forceFresh, signal);
  }

  /** A caller waiting for a read's `answer` (as a joiner), then for its hit or its key's flight. */
  async #afterAnswer<T>(
    shared: SharedRead,
    answer: Promise<Read>,
    fullKey: string,
    userKey: string,
    loader: Loader<T>,
    options: GetOrSetOptions<T> | undefined,
    opts: ResolvedEntryOptions,
    codec: EntryCodec,
    forceFresh: boolean,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    const read = await (signal === undefined ? answer : untilAborted(answer, signal, fullKey));
    return this.#afterRead(shared, read, fullKey, userKey, loader, options, opts, codec, forceFresh, signal);
  }

  /**
   * Reads and classifies a key for the callers sharing `shared`, then hands them the answer; what
   * is done once per read (latency, the lease-first heuristic, the L1 fill, the early refresh
   * check) is done here. A store failure is the `error` state, not a rejection.
   *
   * As `owner`, it also answers the caller that started the read (one without a signal): one
   * async frame for the whole hit. Awaiting this read from a second frame cost about 0.5 µs of
   * client CPU per hit, a third of what Larder added to a raw `GET`. Otherwise (`owner: false`)
   * that caller waits as a joiner, and this never rejects.
   */
  #readKey<T>(...args: [...ReadKeyArgs<T>, owner: true]): Promise<T>;
  #readKey<T>(...args: [...ReadKeyArgs<T>, owner: false]): Promise<void>;
  async #readKey<T>(
    shared: SharedRead,
    fullKey: string,
    userKey: string,
    loader: Loader<T>,
    options: GetOrSetOptions<T> | undefined,
    opts: ResolvedEntryOptions,
    codec: EntryCodec,
    forceFresh: boolean,
    shareable: boolean,
    owner: boolean,
  ): Promise<T | void> {
    const core = this.#core;
    const since = core.coherence.seq;
    const t0 = core.metrics ? performance.now() : 0;
    let read: Read | undefined;
    let wire: Wire | undefined | null;
    const lease =
      core.leaseFirst && core.store.shared && opts.lock !== false && !forceFresh ? this.#newLease(fullKey) : undefined;
    try {
      wire =
        lease === undefined
          ? await core.store.get(fullKey, codec.binary)
          : (await core.store.lease([{ key: fullKey, value: lease.wire, ttl: leaseTtl(opts) }], codec.binary))[0];
      if (lease !== undefined && wire === undefined) read = { state: 'leased', lease };
    } catch (error) {
      if (lease !== undefined && refusesWrites(error)) {
        // Redis refuses writes on reads (OOM under noeviction, a read-only ACL, a replica): read
        // with GET for a while, then try again (memory is freed, a failover ends). This read
        // asks again with GET, so a cached value is still served; a miss then loads without a
        // lease (`wire = null`, the error state), as a lease would be refused again.
        core.leaseFirstRefusedUntil = core.clock.now() + LEASE_FIRST_RETRY;
        core.leaseFirst = false;
        core.storeError('lease', fullKey, error, false);
        try {
          wire = (await core.store.get(fullKey, codec.binary)) ?? null;
          if (wire === null) core.counters.failOpen++;
        } catch (retryError) {
          core.storeError('get', fullKey, retryError);
          wire = null;
        }
      } else {
        core.storeError(lease === undefined ? 'get' : 'lease', fullKey, error);
        wire = null;
      }
    }
    if (read !== undefined) {
      // Leased while reading: nothing to classify.
    } else if (wire === null) read = ERROR;
    else if (wire === undefined) read = ABSENT;
    else {
      // Only a schema check can make this asynchronous: do not pay an `await` otherwise.
      const classified = this.#classify(fullKey, wire, codec, options?.schema);
      read = classified instanceof Promise ? await classified.catch((): Read => CORRUPT) : classified;
    }
    if (shareable && core.reads.get(fullKey) === shared) core.reads.delete(fullKey);
    if (shared.joiners !== undefined) for (const join of shared.joiners) join(read);
    if (core.metrics) this.#latency.l2.record(performance.now() - t0);
    core.noteRead(read.state !== 'fresh');
    if (read.state === 'fresh' && !forceFresh) {
      const now = core.clock.now();
      if (codec === core.defaultCodec && options?.schema === undefined) core.coherence.fill(fullKey, read.entry, now, since);
      this.#maybeRefreshEarly(fullKey, userKey, loader, options?.schema, options?.tags, opts, codec, read.entry, now);
    }
    if (owner) return this.#afterRead(shared, read, fullKey, userKey, loader, options, opts, codec, forceFresh, undefined);
  }

  /** One caller's answer from a (possibly shared) read: the hit, or the key's flight. */
  #afterRead<T>(
    shared: SharedRead,
    read: Read,
    fullKey: string,
    userKey: string,
    loader: Loader<T>,
    options: GetOrSetOptions<T> | undefined,
    opts: ResolvedEntryOptions,
    codec: EntryCodec,
    forceFresh: boolean,
    signal: AbortSignal | undefined,
  ): T | Promise<T> {
    const core = this.#core;
    if (read.state === 'fresh' && !forceFresh) {
      this.#hit(fullKey, read.entry, false);
      return read.entry.value as T;
    }
    // The first caller past a miss starts (or finds) the flight; the others of the same read
    // join that one, even if it has already ended (an instant loader ends within a tick).
    if (shared.flight !== undefined) return (shared.flight as Flight<T>).join(signal);
    const running = core.flights.get<T>(fullKey);
    if (running !== undefined) {
      // Our read took the lease while another caller here was already loading: hand it back.
      if (read.state === 'leased') void this.#releaseLease(read.lease);
      shared.flight = running;
      return running.join(signal);
    }
    const flight = core.flights.start<T>(fullKey, (started) => {
      const job = this.#job(started, userKey, loader, options, opts, codec, forceFresh);
      if (read.state === 'leased') return this.#loadMissed(job, read.lease);
      if (read === ABSENT && opts.lock === false) return this.#loadMissed(job, undefined);
      return this.#resolve(job, read, forceFresh);
    });
    shared.flight = flight;
    return flight.join(signal);
  }

  /**
   * The common miss, load and write, nothing else: the read itself took the `lease`, or there
   * are no leases (`lock: false`, `undefined`) and the key was absent.
   */
  async #loadMissed<T>(job: Job<T>, lease: Lease | undefined): Promise<T> {
    try {
      this.#miss(job.key);
      return (await this.#load(job, { expect: lease?.prefix, lease, stale: undefined })).value;
    } finally {
      job.flight.release();
    }
  }

  #job<T>(
    flight: Flight<T>,
    userKey: string,
    loader: Loader<T>,
    options:
      { readonly schema?: StandardSchemaV1<unknown, T> | undefined; readonly tags?: readonly string[] | undefined } | undefined,
    opts: ResolvedEntryOptions,
    codec: EntryCodec,
    announce = false,
  ): Job<T> {
    const tags = options?.tags === undefined || options.tags.length === 0 ? undefined : this.#core.tags.check(options.tags);
    return { flight, key: flight.key, userKey, loader, opts, codec, schema: options?.schema, tags, announce };
  }

  /** Everything after a read that did not answer: runs inside the key's flight. */
  async #resolve<T>(job: Job<T>, read: Read, forceFresh: boolean): Promise<T> {
    let outcome: Outcome<T> | undefined;
    try {
      if (forceFresh && (read.state === 'fresh' || read.state === 'stale')) {
        // Load now, replacing exactly the entry we saw (unless it changes meanwhile).
        this.#miss(job.key);
        outcome = this.#now(
          await this.#load(job, { expect: casPrefix(read.entry.kind, read.entry.id), lease: undefined, stale: read.entry }),
        );
      } else {
        outcome = await this.#obtain(job, read);
      }
      return outcome.value;
    } finally {
      this.#hold(job.flight, outcome);
    }
  }

  /**
   * Keeps a flight registered while its background refresh runs, so callers arriving meanwhile
   * share the value instead of starting the same refresh; bounded by {@link MAX_HOLD_MS} and by
   * how long the value may be served.
   */
  #hold(flight: Flight<unknown>, outcome: Outcome<unknown> | undefined): void {
    if (outcome === undefined || outcome.done === DONE) {
      flight.release();
      return;
    }
    const holdMs = Math.min(MAX_HOLD_MS, (outcome.until ?? Infinity) - this.#core.clock.now());
    if (!(holdMs > 0)) {
      flight.release();
      return;
    }
    const timer = setTimeout(() => flight.release(), holdMs);
    timer.unref();
    void outcome.done.finally(() => {
      clearTimeout(timer);
      flight.release();
    });
  }

  /** Everything after a read that did not find a fresh entry. */
  async #obtain<T>(job: Job<T>, read: Read): Promise<Outcome<T>> {
    const core = this.#core;
    if (job.opts.lock === false && read.state !== 'stale' && read.state !== 'leased') {
      // No leases: load and write unconditionally (last write wins).
      this.#miss(job.key);
      return this.#now(await this.#load(job, { expect: undefined, lease: undefined, stale: undefined }));
    }
    switch (read.state) {
      case 'stale':
        return this.#fromStale(job, read.entry);
      case 'leased':
        this.#miss(job.key);
        return this.#now(await this.#load(job, { expect: read.lease.prefix, lease: read.lease, stale: undefined }));
      case 'error':
        // The store failed: answer from the loader; the write is best effort.
        this.#miss(job.key);
        return this.#now(await this.#load(job, { expect: '', lease: undefined, stale: undefined }));
      case 'corrupt':
        this.#miss(job.key);
        await core.store.delete([job.key]).catch((error: unknown) => core.storeError('delete', job.key, error));
        return this.#leaseAndLoad(job, undefined);
      case 'expired':
      case 'invalid':
        this.#miss(job.key);
        await core.store
          .deleteIf(job.key, casPrefix(read.entry.kind, read.entry.id))
          .catch((error: unknown) => core.storeError('delete', job.key, error));
        return this.#leaseAndLoad(job, undefined);
      case 'pending':
        this.#miss(job.key);
        return this.#leaseAndLoad(job, read.entry);
      default:
        this.#miss(job.key);
        return this.#leaseAndLoad(job, undefined);
    }
  }

  /**
   * Takes the key's lease and loads, or waits for the process holding it. `pending` is the
   * placeholder already seen, if any.
   */
  async #leaseAndLoad<T>(job: Job<T>, pending: Entry | undefined): Promise<Outcome<T>> {
    const core = this.#core;
    const lock = job.opts.lock;
    const started = core.clock.now();
    const waitUntil = started + (lock === false || !core.store.shared ? 0 : lock.wait);
    let delay = POLL_START_MS;
    let waited = false;
    let markedId: string | undefined;
    let current = pending;
    for (let attempt = 0; ; attempt++) {
      if (current !== undefined) {
        // Someone else holds the lease.
        const now = core.clock.now();
        if (now >= waitUntil || attempt > 1000) {
          if (waited) this.#lockWait(job.key, 'timeout', now - started);
          // Load ourselves; write only if their placeholder is still there.
          return this.#now(await this.#load(job, { expect: casPrefix('p', current.id), lease: undefined, stale: undefined }));
        }
        if (!waited) {
          waited = true;
          this.#bump('lockWaits');
        }
        if (markedId !== current.id) {
          // Ask the holder to announce its write: it publishes only for marked leases.
          markedId = current.id;
          await core.store
            .mark(job.key, casPrefix('p', current.id))
            .catch((error: unknown) => core.storeError('mark', job.key, error));
        }
        await core.coordination.wait(job.key, Math.min(delay, waitUntil - now));
        delay = Math.min(delay * 2, POLL_MAX_MS);
      }
      const lease = this.#newLease(job.key);
      let reply: Wire | undefined;
      try {
        [reply] = await core.store.lease([{ key: job.key, value: lease.wire, ttl: leaseTtl(job.opts) }], job.codec.binary);
      } catch (error) {
        core.storeError('lease', job.key, error);
        return this.#now(await this.#load(job, { expect: '', lease: undefined, stale: undefined }));
      }
      if (reply === undefined) {
        if (waited) this.#lockWait(job.key, 'acquired', core.clock.now() - started);
        return this.#now(await this.#load(job, { expect: lease.prefix, lease, stale: undefined }));
      }
      const read = await this.#classify(job.key, reply, job.codec, job.schema);
      switch (read.state) {
        case 'pending':
          current = read.entry;
          continue;
        case 'fresh':
          if (waited) this.#lockWait(job.key, 'value', core.clock.now() - started);
          this.#hit(job.key, read.entry, false);
          return { value: read.entry.value as T, done: DONE };
        case 'stale':
          if (waited) this.#lockWait(job.key, 'value', core.clock.now() - started);
          return this.#fromStale(job, read.entry);
        case 'expired':
        case 'invalid':
          await core.store.deleteIf(job.key, casPrefix(read.entry.kind, read.entry.id)).catch(() => undefined);
          current = undefined;
          continue;
        default:
          // Corrupt: remove it and try again.
          await core.store.delete([job.key]).catch(() => undefined);
          current = undefined;
          continue;
      }
    }
  }

  #newLease(key: string): Lease {
    const id = newEntryId();
    return { key, wire: placeholderWire(id), prefix: casPrefix('p', id) };
  }

  #lockWait(key: string, outcome: 'value' | 'acquired' | 'timeout', durationMs: number): void {
    if (this.#core.wants('lock-wait')) this.#core.emit('lock-wait', { key, outcome, durationMs });
  }

  /**
   * Runs the loader and writes its value with a compare-and-set on `expect` (our lease, the
   * entry being refreshed, or `''` for "still absent"). The lease is renewed while the loader
   * runs and released if it fails.
   */
  async #load<T>(
    job: Job<T>,
    plan: { readonly expect: string | undefined; readonly lease: Lease | undefined; readonly stale: Entry | undefined },
    background = false,
  ): Promise<Loaded<T>> {
    const core = this.#core;
    const release = plan.lease === undefined ? undefined : core.renewals.hold(plan.lease, leaseTtl(job.opts));
    const started = core.clock.now();
    // Tag versions are taken before the loader runs: an invalidation during the load makes the
    // entry stale on arrival. If they cannot be read, the value is returned but not cached.
    let stamps: TagStamp[] | null | undefined;
    if (job.tags !== undefined) {
      stamps = await core.tags.current(job.tags).catch((error: unknown) => {
        core.storeError('tags', job.key, error);
        return null;
      });
    }
    this.#bump('loads');
    const t0 = performance.now();
    let value: T;
    try {
      const context = { key: job.userKey, stale: plan.stale?.value as T | undefined, background };
      // A background load has no waiters: nobody's abort may cancel it, only its hard timeout.
      const run = () => runLoader(job.loader, background ? new Abortable() : job.flight, job.key, context, job.opts.hardTimeout);
      const loading = loadTrace.hasSubscribers
        ? loadTrace.tracePromise(async () => run(), { key: job.key, keys: [job.key], cache: core.name, background })
        : run();
      value = loading instanceof Promise ? await loading : loading;
      if (job.schema !== undefined && value !== undefined) {
        const result = await validate(job.schema, value, job.key);
        if (!result.ok) throw result.error;
        value = result.value;
      }
    } catch (error) {
      release?.();
      if (core.metrics) this.#latency.load.record(performance.now() - t0);
      if (plan.lease !== undefined) void this.#releaseLease(plan.lease);
      this.#loadFailed(job.key, error, core.clock.now() - started, background, plan.stale);
      throw error;
    }
    release?.();
    if (core.metrics) this.#latency.load.record(performance.now() - t0);
    const loadMs = core.clock.now() - started;
    if (core.wants('load')) core.emit('load', { key: job.key, durationMs: loadMs, background });
    return { value, written: this.#write(job, value, loadMs, plan.expect, plan.lease, stamps) };
  }

  #loadFailed(key: string, error: unknown, durationMs: number, background: boolean, stale: Entry | undefined): void {
    const core = this.#core;
    this.#bump('loadErrors');
    if (error instanceof LoaderTimeoutError) this.#bump('loadTimeouts');
    if (core.wants('load-error')) {
      const failSafe = stale !== undefined && core.clock.now() < stale.staleUntil;
      core.emit('load-error', { key, durationMs, background, error, failSafe });
    }
  }

  /** An outcome with no background work: the flight ends with it. */
  #now<T>(loaded: Loaded<T>): Outcome<T> {
    return { value: loaded.value, done: DONE };
  }

  /** Gives a lease up and wakes whoever waits for it. Never rejects. */
  #releaseLease(lease: Lease): Promise<unknown> {
    const core = this.#core;
    return core.store
      .deleteIf(lease.key, lease.prefix, { channel: core.coordination.channel, message: lease.key })
      .catch((error: unknown) => core.storeError('release', lease.key, error));
  }

  /**
   * Writes a loaded value with a compare-and-set on `expect` (`undefined`: unconditionally, for
   * `lock: false`). Issued synchronously (so later commands on the connection see it), settled in
   * the background; never rejects.
   */
  #write<T>(
    job: Job<T>,
    value: T,
    loadMs: number,
    expect: string | undefined,
    lease: Lease | undefined,
    stamps: TagStamp[] | null | undefined,
  ): Promise<unknown> {
    const core = this.#core;
    if (job.flight.invalidated) {
      this.#skipped(job.key);
      return lease === undefined ? DONE : this.#releaseLease(lease);
    }
    const now = core.clock.now();
    const kind: EntryKind = value === undefined ? 'n' : 'v';
    const made =
      stamps === null ? undefined : this.#entryWrite(job.key, value, kind, loadMs, now, job.opts, job.codec, 'report', stamps);
    if (made === undefined) return lease === undefined ? DONE : this.#releaseLease(lease);
    const { write, entry } = made;
    // This instance's L1 gets the value at once (it was issued to the store just below).
    core.coherence.fill(job.key, entry, now, core.coherence.seq);
    if (expect === undefined) {
      return core.store.set(write.key, write.value, write.ttl).catch((error: unknown) => {
        this.#bump('writeErrors');
        core.storeError('set', job.key, error);
      });
    }
    const conditional: ConditionalWrite = {
      key: write.key,
      value: write.value,
      ttl: write.ttl,
      expect,
      notify: lease === undefined ? undefined : { channel: core.coordination.channel, message: job.key },
    };
    return core.store.setIf([conditional]).then(
      ([written]) => {
        if (written !== true) {
          // Someone else's write or delete won: the copy put in L1 above is not what the store holds.
          core.coherence.unfill(job.key, entry);
          this.#skipped(job.key);
        } else if (job.announce) {
          return core.coherence.announce({ keys: [job.key] });
        }
        return undefined;
      },
      (error: unknown) => {
        this.#bump('writeErrors');
        core.storeError('set', job.key, error);
        if (lease !== undefined) return this.#releaseLease(lease);
        return undefined;
      },
    );
  }

  #skipped(key: string): void {
    this.#bump('writesSkipped');
    if (this.#core.wants('write-skipped')) this.#core.emit('write-skipped', { key, reason: 'invalidated' });
  }

  /**
   * Encodes an entry for the store, or `undefined` when nothing is to be stored (TTL 0) or the
   * value cannot be serialized (reported, not thrown: the caller already has its value).
   */
  #entryWrite(
    key: string,
    value: unknown,
    kind: EntryKind,
    loadMs: number,
    now: number,
    opts: ResolvedEntryOptions,
    codec: EntryCodec,
    onError: 'report' | 'throw' = 'report',
    tags?: readonly TagStamp[],
  ): EntryWrite | undefined {
    const ttl = kind === 'n' ? opts.negativeTtl : opts.ttl;
    if (ttl === 0) return undefined;
    const fresh = ttl === Infinity ? Infinity : Math.max(1, ttl * (1 - opts.jitter * Math.random()));
    let freshUntil = now + fresh;
    let staleUntil = freshUntil + opts.grace;
    if (tags !== undefined && staleUntil - now > this.#core.tagTtl) {
      // A tagged entry must not outlive the version that could invalidate it (see `tagTtl`).
      staleUntil = now + this.#core.tagTtl;
      freshUntil = Math.min(freshUntil, staleUntil);
    }
    // One object serves as the header to encode and as the entry for L1 (no copies on a miss).
    const entry: { -readonly [K in keyof Entry]: Entry[K] } = {
      kind,
      id: newEntryId(),
      createdAt: now,
      freshUntil,
      staleUntil,
      loadMs,
      tags,
      codec: codec.serializer.name,
      value,
      size: 0,
      earlyAt: NaN,
    };
    let wire: Wire;
    try {
      wire = codec.encode(entry, value);
    } catch (cause) {
      const error = new SerializationError(
        `Cannot serialize the value with the ${codec.serializer.name} serializer: ${cause instanceof Error ? cause.message : String(cause)}`,
        { cause, key },
      );
      if (onError === 'throw') throw error;
      this.#core.storeError('serialize', key, error);
      return undefined;
    }
    entry.size = typeof wire === 'string' ? wire.length : wire.byteLength;
    return { write: { key, value: wire, ttl: staleUntil - now }, entry };
  }

  // --- stale serving and refresh ---------------------------------------------------------------

  /** A stale entry within grace: serve it now or after the soft timeout, refreshing it. */
  async #fromStale<T>(job: Job<T>, entry: Entry): Promise<Outcome<T>> {
    const core = this.#core;
    if (job.opts.timeout === 0) {
      this.#hit(job.key, entry, true);
      return { value: entry.value as T, done: this.#refresh(job, entry, 'stale'), until: entry.staleUntil };
    }
    // Refresh in the foreground, racing the soft timeout.
    const lock = await this.#refreshLock(job);
    if (lock === 'held') {
      // Someone else refreshes: wait for their write as long as the soft timeout allows.
      const until = core.clock.now() + Math.min(job.opts.timeout, job.opts.lock === false ? 0 : job.opts.lock.wait);
      let delay = POLL_START_MS;
      for (;;) {
        const now = core.clock.now();
        if (now >= until) break;
        await core.coordination.wait(job.key, Math.min(delay, until - now));
        delay = Math.min(delay * 2, POLL_MAX_MS);
        const read = await this.#read(job.key, job.codec, job.schema);
        if (read.state === 'fresh') {
          this.#hit(job.key, read.entry, false);
          return { value: read.entry.value as T, done: DONE };
        }
      }
      this.#hit(job.key, entry, true);
      return { value: entry.value as T, done: DONE };
    }
    const load = this.#load(job, { expect: casPrefix(entry.kind, entry.id), lease: undefined, stale: entry }).finally(() => {
      void this.#unlock(lock);
    });
    let raced: Loaded<T> | typeof TIMED_OUT;
    try {
      raced = await softTimeout(load, job.opts.timeout);
    } catch (error) {
      return this.#failSafe(job, entry, error);
    }
    if (raced === TIMED_OUT) {
      this.#hit(job.key, entry, true);
      if (core.wants('refresh')) core.emit('refresh', { key: job.key, reason: 'soft-timeout' });
      this.#bump('staleRefreshes');
      // The load goes on in the background; the flight is released once it ends (written, or
      // failed and backed off).
      const done = load.then(
        (loaded) => loaded.written,
        () => this.#backOff(job, entry),
      );
      return { value: entry.value as T, done, until: entry.staleUntil };
    }
    return this.#now(raced);
  }

  /**
   * The loader failed while a stale entry exists: serve it (fail-safe) if it is still within
   * grace, and keep it fresh for `failSafeBackoff` so the failing source is not asked again on
   * every read. Past grace, the caller gets the loader's error.
   */
  async #failSafe<T>(job: Job<T>, entry: Entry, error: unknown): Promise<Outcome<T>> {
    if (this.#core.clock.now() >= entry.staleUntil) throw error;
    this.#hit(job.key, entry, true);
    this.#backOff(job, entry);
    return { value: entry.value as T, done: DONE };
  }

  /**
   * After a failed refresh, keeps the stale entry fresh for `failSafeBackoff` (within its grace),
   * so the failing source is not asked again on every read. Counts no hit: background refreshes
   * end here too, with no caller to serve. Never throws.
   */
  #backOff<T>(job: Job<T>, entry: Entry): void {
    const core = this.#core;
    const now = core.clock.now();
    if (job.opts.failSafeBackoff === 0 || job.flight.invalidated || now >= entry.staleUntil) return;
    const freshUntil = Math.min(now + job.opts.failSafeBackoff, entry.staleUntil);
    let wire: Wire;
    try {
      // Written now: refresh-ahead must not find it due at once (it is measured from createdAt).
      wire = job.codec.encode({ ...entry, id: newEntryId(), createdAt: now, freshUntil }, entry.value);
    } catch {
      return;
    }
    void core.store
      .setIf([{ key: job.key, expect: casPrefix(entry.kind, entry.id), value: wire, ttl: entry.staleUntil - now }])
      .catch((e: unknown) => core.storeError('set', job.key, e));
  }

  /**
   * Starts a background refresh of a fresh entry when one is due (refresh-ahead threshold or
   * XFetch) and none runs for the key yet. The refresh is the key's flight while it runs, so no
   * second one starts; callers joining it get the entry's value at once (it is still fresh), and
   * the flight is released when the refresh ends or the entry stops being fresh, whichever comes
   * first: a hung loader never holds readers.
   */
  #maybeRefreshEarly<T>(
    key: string,
    userKey: string,
    loader: Loader<T>,
    schema: StandardSchemaV1<unknown, T> | undefined,
    tags: readonly string[] | undefined,
    opts: ResolvedEntryOptions,
    codec: EntryCodec,
    entry: Entry,
    now: number,
  ): void {
    const core = this.#core;
    if (!this.#startsEarlyRefresh(key, entry, opts, now)) return;
    let refreshing: Promise<void> = DONE;
    const flight = core.flights.start<T>(key, (started) => {
      refreshing = this.#refresh(this.#job(started, userKey, loader, { schema, tags }, opts, codec), entry, 'early');
      return Promise.resolve(entry.value as T);
    });
    this.#hold(flight, { value: entry.value, done: refreshing, until: entry.freshUntil });
  }

  /** Whether a read at `now` starts an early refresh: one is due, none runs, none is backed off. */
  #startsEarlyRefresh(key: string, entry: Entry, opts: ResolvedEntryOptions, now: number): boolean {
    const core = this.#core;
    return (
      this.#refreshDue(entry, opts.earlyRefresh, now) &&
      core.flights.get(key) === undefined &&
      !core.refreshBackoff.blocks(key, now)
    );
  }

  /** Whether a read at `now` should refresh `entry` early (refresh-ahead threshold or XFetch). */
  #refreshDue(entry: Entry, early: ResolvedEntryOptions['earlyRefresh'], now: number): boolean {
    if (early === false) return false;
    // Cached on the entry for the cache's defaults: on a hot entry this is one comparison.
    let at: number;
    if (early === this.#core.defaults.earlyRefresh) {
      if (Number.isNaN(entry.earlyAt)) entry.earlyAt = earliestRefresh(entry, early);
      at = entry.earlyAt;
    } else at = earliestRefresh(entry, early);
    if (now < at) return false;
    return (
      (early.ahead < 1 && now >= aheadPoint(entry, early.ahead)) ||
      (early.beta > 0 && entry.loadMs > 0 && now - entry.loadMs * early.beta * Math.log(Math.random()) >= entry.freshUntil)
    );
  }

  /** Refreshes `entry` in the background, once across processes. Never rejects. */
  async #refresh<T>(job: Job<T>, entry: Entry, reason: 'early' | 'stale'): Promise<void> {
    this.#refreshStarted(job.key, reason);
    const lock = await this.#refreshLock(job);
    if (lock === 'held') return;
    try {
      if (lock !== undefined && (await this.#refreshedElsewhere(job, entry))) return;
      const loaded = await this.#load(job, { expect: casPrefix(entry.kind, entry.id), lease: undefined, stale: entry }, true);
      await loaded.written;
    } catch {
      this.#refreshFailed(job, entry, reason);
    } finally {
      await this.#unlock(lock);
    }
  }

  /**
   * A refresh failed (reported by the load): readers keep the entry, and the key is not refreshed
   * again for `failSafeBackoff`, here (and, for a stale entry, everywhere: see #backOff).
   */
  #refreshFailed<T>(job: Job<T>, entry: Entry, reason: 'early' | 'stale'): void {
    this.#core.refreshBackoff.hold(job.key, this.#core.clock.now() + job.opts.failSafeBackoff);
    if (reason === 'stale') this.#backOff(job, entry);
  }

  #refreshStarted(key: string, reason: 'early' | 'stale'): void {
    this.#bump(reason === 'early' ? 'earlyRefreshes' : 'staleRefreshes');
    if (this.#core.wants('refresh')) this.#core.emit('refresh', { key, reason });
  }

  /**
   * Whether another instance refreshed the entry between our read and our lock (it held the lock
   * then, and released it after its write). One GET per refresh, against one load per instance
   * that read the old entry in time; the newer entry replaces ours in L1.
   */
  async #refreshedElsewhere<T>(job: Job<T>, entry: Entry): Promise<boolean> {
    const core = this.#core;
    const since = core.coherence.seq;
    const read = await this.#read(job.key, job.codec, job.schema);
    if (read.state !== 'fresh' || read.entry.id === entry.id) return false;
    core.coherence.fill(job.key, read.entry, core.clock.now(), since);
    return true;
  }

  /**
   * The lock guarding the refresh of an existing entry: ours (`Lease`), `'held'` by another
   * process, or `undefined` when locking is off or the store failed (refresh anyway).
   */
  async #refreshLock<T>(job: Job<T>): Promise<Lease | 'held' | undefined> {
    const core = this.#core;
    if (job.opts.lock === false || !core.store.shared) return undefined;
    const key = refreshLockKey(job.key);
    const lease = this.#newLease(key);
    try {
      const [current] = await core.store.lease([{ key, value: lease.wire, ttl: job.opts.lock.ttl }], false);
      return current === undefined ? lease : 'held';
    } catch (error) {
      core.storeError('lock', job.key, error);
      return undefined;
    }
  }

  #unlock(lock: Lease | 'held' | undefined): Promise<unknown> {
    if (lock === undefined || lock === 'held') return DONE;
    return this.#core.store.deleteIf(lock.key, lock.prefix).catch(() => undefined);
  }

  // --- reading ------------------------------------------------------------------------------

  async #read(key: string, codec: EntryCodec, schema: StandardSchemaV1<unknown, unknown> | undefined): Promise<Read> {
    let wire: Wire | undefined;
    try {
      wire = await this.#core.store.get(key, codec.binary);
    } catch (error) {
      this.#core.storeError('get', key, error);
      return ERROR;
    }
    return wire === undefined ? ABSENT : this.#classify(key, wire, codec, schema);
  }

  /** Decodes and classifies a stored value; reports (and counts) corrupt and invalid entries. */
  #classify(
    key: string,
    wire: Wire,
    codec: EntryCodec,
    schema: StandardSchemaV1<unknown, unknown> | undefined,
  ): Read | Promise<Read> {
    const entry = codec.decode(wire);
    if (entry instanceof CorruptEntry) {
      this.#corrupt(key, entry.reason, entry.cause);
      return CORRUPT;
    }
    if (entry.kind === 'p') return { state: 'pending', entry };
    if (entry.kind !== 'v' && entry.kind !== 'n') {
      this.#corrupt(key, 'format', undefined);
      return CORRUPT;
    }
    if (schema === undefined || entry.kind === 'n') return this.#tagged(entry);
    const result = validate(schema, entry.value, key);
    const check = (r: Awaited<typeof result>): Read | Promise<Read> => {
      if (!r.ok) {
        this.#corrupt(key, 'schema', r.error);
        return { state: 'invalid', entry };
      }
      (entry as { value: unknown }).value = r.value;
      return this.#tagged(entry);
    };
    return result instanceof Promise ? result.then(check) : check(result);
  }

  /** An entry whose tags were invalidated since it was loaded is invalid (a miss, deleted). */
  #tagged(entry: Entry): Read | Promise<Read> {
    if (entry.tags === undefined || entry.tags.length === 0) return this.#age(entry);
    const tags = this.#core.tags;
    const valid = tags.validNow(entry.tags);
    if (valid === true) return this.#age(entry);
    if (valid === false) return { state: 'invalid', entry };
    return tags.stillValid(entry.tags).then(
      (ok): Read => (ok ? this.#age(entry) : { state: 'invalid', entry }),
      // The versions cannot be read: the entry cannot be vouched for, so it is not served.
      (): Read => ({ state: 'invalid', entry }),
    );
  }

  #age(entry: Entry): Read {
    const now = this.#core.clock.now();
    if (now < entry.freshUntil) return { state: 'fresh', entry };
    if (now < entry.staleUntil) return { state: 'stale', entry };
    return { state: 'expired', entry };
  }

  #corrupt(key: string, reason: 'format' | 'codec' | 'payload' | 'schema', error: unknown): void {
    const core = this.#core;
    this.#bump('corrupt');
    if (core.wants('corrupt')) core.emit('corrupt', error === undefined ? { key, reason } : { key, reason, error });
  }

  #hit(key: string, entry: Entry, stale: boolean, tier: Tier = 'l2'): void {
    const core = this.#core;
    const counters = core.counters;
    counters.hits++;
    if (tier === 'l1') counters.l1Hits++;
    else counters.l2Hits++;
    if (stale) counters.staleHits++;
    if (entry.kind === 'n') counters.negativeHits++;
    if (this.#own !== undefined) {
      this.#countOwnHit(entry, tier);
      if (stale) this.#own.staleHits++;
    }
    if (core.hitWanted) core.emit('hit', { key, tier, stale });
  }

  /** Counts in the cache's totals and, for a namespace, in its own counters too. */
  #bump(counter: CounterName): void {
    for (const counters of this.#counters) counters[counter]++;
  }

  #miss(key: string): void {
    this.#bump('misses');
    if (this.#core.wants('miss')) this.#core.emit('miss', { key });
  }

  /** A read failed: `undefined` when failing open, else a `StoreError`. */
  #readFailed(operation: string, key: string | undefined, error: unknown): undefined {
    if (!this.#core.failOpen) throw toStoreError(error);
    this.#core.storeError(operation, key, error);
    return undefined;
  }

  #writeFailed(operation: string, key: string | undefined, error: unknown): void {
    this.#bump('writeErrors');
    if (!this.#core.failOpen) throw toStoreError(error);
    this.#core.storeError(operation, key, error);
  }

  #open(signal?: AbortSignal): void {
    if (this.#core.closed || this.#closed) throw new ClosedError();
    if (signal?.aborted === true) throw new AbortError({ cause: signal.reason });
  }

  /**
   * The cached value of `key`, or `undefined` on a miss (a cached "not found" reads as
   * `undefined` too). Corrupt or invalid entries are deleted and read as misses. When the store
   * fails: `undefined` (fail-open, with a `store-error` event) or a `StoreError` when `failOpen`
   * is `false`.
   */
  async get<T = unknown>(key: string, options?: GetOptions<T>): Promise<T | undefined> {
    const [value] = await this.getMany<T>([key], options);
    return value;
  }

  /**
   * `true` when a fresh value (`null` included, "not found" excluded) is cached for `key`; with a
   * `schema`, a value that does not fit it is not (as `get` would not return it).
   */
  async has(key: string, options?: GetOptions): Promise<boolean> {
    this.#open(options?.signal);
    if (options !== undefined) checkOptionNames(options, CALL_OPTION_NAMES);
    const core = this.#core;
    const fullKey = this.#keys.full(key);
    const codec = core.codec(options?.serializer);
    // L1 holds values decoded by the default serializer and never checked by a caller's schema.
    const cached =
      options?.schema === undefined && codec === core.defaultCodec ? core.coherence.l1Get(fullKey, core.clock.now()) : undefined;
    if (cached !== undefined) return cached.kind === 'v';
    let wire: Wire | undefined;
    try {
      const reading = core.store.get(fullKey, codec.binary);
      const signal = options?.signal;
      wire = await (signal === undefined ? reading : untilAborted(reading, signal, fullKey));
    } catch (error) {
      if (isAbortError(error) && options?.signal?.aborted === true) throw error;
      return this.#readFailed('has', fullKey, error) ?? false;
    }
    if (wire === undefined) return false;
    const read = await this.#classify(fullKey, wire, codec, options?.schema);
    if (read.state !== 'fresh' && !(read.state === 'stale' && options?.allowStale === true)) return false;
    return read.entry.kind === 'v';
  }

  /**
   * The values of `keys`, in order (`undefined` for misses): from L1 when there is one, the rest
   * with one `MGET`.
   */
  async getMany<T = unknown>(keys: readonly string[], options?: GetOptions<T>): Promise<(T | undefined)[]> {
    this.#open(options?.signal);
    if (options !== undefined) checkOptionNames(options, CALL_OPTION_NAMES);
    const core = this.#core;
    if (!Array.isArray(keys)) throw new InvalidOptionError('keys', `expected an array, got ${describe(keys)}`);
    const fullKeys = keys.map((key) => this.#keys.full(key));
    const codec = core.codec(options?.serializer);
    // L1 holds values decoded by the default serializer and never checked by a caller's schema.
    const plain = options?.schema === undefined && codec === core.defaultCodec;
    // Filled, not sparse: a miss is an `undefined` that `map` and `forEach` visit, not a hole.
    const values = new Array<T | undefined>(fullKeys.length).fill(undefined);
    const toRead: number[] = [];
    const now = core.clock.now();
    fullKeys.forEach((key, i) => {
      const cached = plain ? core.coherence.l1Get(key, now) : undefined;
      if (cached === undefined) {
        toRead.push(i);
        return;
      }
      this.#hit(key, cached, false, 'l1');
      values[i] = cached.kind === 'n' ? undefined : (core.coherence.out(cached) as T);
    });
    if (toRead.length === 0) return values;
    const since = core.coherence.seq;
    // Single-key reads (`get`) feed the L2 read histogram; batches would blur it.
    const t0 = core.metrics && fullKeys.length === 1 ? performance.now() : 0;
    let wires: (Wire | undefined)[];
    try {
      const reading = core.store.getMany(
        toRead.map((i) => fullKeys[i]!),
        codec.binary,
      );
      const signal = options?.signal;
      wires = await (signal === undefined
        ? reading
        : untilAborted(reading, signal, fullKeys.length === 1 ? fullKeys[0] : undefined));
    } catch (error) {
      if (isAbortError(error) && options?.signal?.aborted === true) throw error;
      this.#readFailed(keys.length === 1 ? 'get' : 'getMany', keys.length === 1 ? fullKeys[0] : undefined, error);
      return values;
    }
    const pending: Promise<void>[] = [];
    toRead.forEach((index, j) => {
      const key = fullKeys[index]!;
      const wire = wires[j];
      if (wire === undefined) {
        this.#miss(key);
        return;
      }
      const read = this.#classify(key, wire, codec, options?.schema);
      // Decoding is synchronous unless a schema or unknown tag versions need an await.
      if (read instanceof Promise)
        pending.push(read.then((r) => void (values[index] = this.#settleRead<T>(key, r, options, plain, since))));
      else values[index] = this.#settleRead<T>(key, read, options, plain, since);
    });
    if (pending.length > 0) await Promise.all(pending);
    if (t0 !== 0) this.#latency.l2.record(performance.now() - t0);
    return values;
  }

  /** The answer of a plain read, once classified: fills L1, cleans up unreadable entries. */
  #settleRead<T>(key: string, read: Read, options: GetOptions<T> | undefined, fill: boolean, since: number): T | undefined {
    if (read.state === 'fresh' || (read.state === 'stale' && options?.allowStale === true)) {
      this.#hit(key, read.entry, read.state === 'stale');
      if (fill && read.state === 'fresh') this.#core.coherence.fill(key, read.entry, this.#core.clock.now(), since);
      return read.entry.kind === 'n' ? undefined : (read.entry.value as T);
    }
    this.#miss(key);
    if (read.state === 'corrupt') void this.#core.store.delete([key]).catch(() => undefined);
    else if (read.state === 'invalid') {
      void this.#core.store.deleteIf(key, casPrefix(read.entry.kind, read.entry.id)).catch(() => undefined);
    }
    return undefined;
  }

  // --- writing ------------------------------------------------------------------------------

  /**
   * Stores `value` under `key` (replacing what is there, including a load in progress, whose
   * result will not be written). `undefined` stores a "not found" (with `negativeTtl`); a TTL
   * of `0` deletes the key. Throws a `SerializationError` for values the serializer refuses.
   */
  set(key: string, value: unknown, options?: SetOptions): Promise<void> {
    if (options === undefined) return this.setMany([{ key, value }]);
    try {
      checkOptionNames(options, CALL_OPTION_NAMES);
    } catch (error) {
      return Promise.reject(error);
    }
    const { signal, ...entry } = options;
    return this.setMany([{ ...entry, key, value }], { signal });
  }

  /**
   * Stores many entries in one round trip. Every value is serialized before anything is sent, so
   * a value the serializer refuses (`SerializationError`) sends nothing.
   */
  setMany(entries: readonly SetManyEntry[], options?: WriteOptions): Promise<void> {
    return this.#abortable(options, () => this.#setMany(entries));
  }

  /**
   * Runs a write for a caller who may abort: an `AbortError` at once if the signal has fired
   * (nothing sent), or when it fires (the write goes on in the background, see `WriteOptions`).
   * Misspelt option names are refused first, like a fired signal.
   */
  #abortable<R>(options: WriteOptions | undefined, write: () => Promise<R>): Promise<R> {
    const signal = options?.signal;
    try {
      this.#open(signal);
      if (options !== undefined) checkOptionNames(options, WRITE_OPTION_NAMES);
    } catch (error) {
      return Promise.reject(error);
    }
    const writing = write();
    return signal === undefined ? writing : untilAborted(writing, signal, undefined);
  }

  async #setMany(entries: readonly SetManyEntry[]): Promise<void> {
    const core = this.#core;
    if (!Array.isArray(entries)) throw new InvalidOptionError('entries', `expected an array, got ${describe(entries)}`);
    const prepared = entries.map((entry) => {
      checkOptionNames(entry, ENTRY_NAMES);
      const fullKey = this.#keys.full(entry.key);
      const opts = resolveEntryOptions(core.defaults, entry);
      const tags = entry.tags === undefined || entry.tags.length === 0 ? undefined : core.tags.check(entry.tags);
      return { entry, fullKey, opts, tags, codec: core.codec(entry.serializer) };
    });
    const keys = prepared.map((p) => p.fullKey);
    // Loads in progress for these keys must not write their (older) results; L1 copies go now.
    for (const key of keys) core.flights.invalidate(key);
    core.coherence.invalidateKeys(keys);
    const tagged = [...new Set(prepared.flatMap((p) => p.tags ?? []))];
    let versions: Map<string, string>;
    try {
      versions = new Map(tagged.length === 0 ? [] : await core.tags.current(tagged));
    } catch (error) {
      this.#writeFailed('setMany', undefined, error);
      return;
    }
    const now = core.clock.now();
    const made: EntryWrite[] = [];
    const deletes: string[] = [];
    for (const p of prepared) {
      const kind = p.entry.value === undefined ? 'n' : 'v';
      const stamps = p.tags?.map((tag): TagStamp => [tag, versions.get(tag) ?? '']);
      const write = this.#entryWrite(p.fullKey, p.entry.value, kind, 0, now, p.opts, p.codec, 'throw', stamps);
      if (write === undefined) deletes.push(p.fullKey);
      else made.push(write);
    }
    try {
      await Promise.all([
        made.length > 0 ? core.store.setMany(made.map((m) => m.write)) : DONE,
        deletes.length > 0 ? core.store.delete(deletes) : DONE,
      ]);
    } catch (error) {
      this.#writeFailed('setMany', undefined, error);
      return;
    }
    const since = core.coherence.seq;
    for (const m of made) core.coherence.fill(m.write.key, m.entry, now, since);
    await core.coherence.announce({ keys });
  }

  /**
   * Deletes `key`; `true` if it existed. A load in progress for it will not write its result
   * (it read the data before it changed), and other instances drop their L1 copies.
   */
  async delete(key: string, options?: WriteOptions): Promise<boolean> {
    return (await this.deleteMany([key], options)) > 0;
  }

  /** Deletes many keys in one round trip; returns how many existed. */
  deleteMany(keys: readonly string[], options?: WriteOptions): Promise<number> {
    return this.#abortable(options, () => this.#deleteMany(keys));
  }

  async #deleteMany(keys: readonly string[]): Promise<number> {
    const core = this.#core;
    if (!Array.isArray(keys)) throw new InvalidOptionError('keys', `expected an array, got ${describe(keys)}`);
    const fullKeys = keys.map((key) => this.#keys.full(key));
    for (const key of fullKeys) core.flights.invalidate(key);
    core.coherence.invalidateKeys(fullKeys);
    let deleted: number;
    try {
      deleted = fullKeys.length === 0 ? 0 : await core.store.delete(fullKeys);
    } catch (error) {
      this.#writeFailed(keys.length === 1 ? 'delete' : 'deleteMany', fullKeys.length === 1 ? fullKeys[0] : undefined, error);
      return 0;
    }
    await core.coherence.announce({ keys: fullKeys });
    return deleted;
  }

  /**
   * Deletes every entry of this namespace (children included) with `SCAN` + `UNLINK` in
   * batches; returns how many keys were removed. Other namespaces are untouched.
   */
  clear(options?: WriteOptions): Promise<number> {
    return this.#abortable(options, () => this.#clear());
  }

  async #clear(): Promise<number> {
    const core = this.#core;
    const scope = this.#keys.scope;
    core.flights.invalidatePrefixes(scope);
    core.coherence.invalidatePrefixes(scope);
    let deleted: number;
    try {
      deleted = await core.store.clear(scope);
    } catch (error) {
      this.#writeFailed('clear', undefined, error);
      return 0;
    }
    await core.coherence.announce({ prefixes: scope });
    return deleted;
  }

  /**
   * Invalidates every entry carrying one of `tags`, in every namespace of this cache and in
   * every instance: one store write per tag, however many entries carry it. Entries are checked
   * lazily when read; a load in progress produces an entry that is already invalid.
   */
  invalidateTags(tags: readonly string[], options?: WriteOptions): Promise<void> {
    return this.#abortable(options, () => this.#invalidateTags(tags));
  }

  async #invalidateTags(tags: readonly string[]): Promise<void> {
    const core = this.#core;
    const list = core.tags.check(tags);
    if (list.length === 0) return;
    let stamps: TagStamp[];
    try {
      stamps = await core.tags.bump(list);
    } catch (error) {
      this.#writeFailed('invalidateTags', undefined, error);
      return;
    }
    await core.coherence.announce({ tags: stamps });
  }

  /**
   * Runs `write` (your database write), then invalidates `keys` and `tags` — the order that keeps
   * a cache consistent ("write the database, then delete the key"). Loads racing the write cannot
   * put the old value back (leases and tag versions see to it). The invalidation runs even when
   * `write` throws (it is harmless then); `write`'s error is rethrown.
   */
  async invalidateAfter<R>(
    write: () => R | Promise<R>,
    targets: { keys?: readonly string[]; tags?: readonly string[] },
  ): Promise<R> {
    this.#open();
    if (typeof write !== 'function') throw new InvalidOptionError('write', `expected a function, got ${describe(write)}`);
    if (typeof targets !== 'object' || targets === null) throw new InvalidOptionError('targets', 'expected { keys, tags }');
    checkOptionNames(targets, INVALIDATE_TARGET_NAMES, 'targets');
    const keys = targets.keys ?? [];
    for (const key of keys) this.#keys.full(key);
    if (targets.tags !== undefined) this.#core.tags.check(targets.tags);
    const invalidate = () =>
      Promise.all([
        keys.length > 0 ? this.deleteMany(keys) : DONE,
        targets.tags !== undefined ? this.invalidateTags(targets.tags) : DONE,
      ]);
    let result: R;
    try {
      result = await write();
    } catch (error) {
      await invalidate().catch(() => undefined);
      throw error;
    }
    await invalidate();
    return result;
  }

  // --- getOrSetMany -----------------------------------------------------------------------

  /**
   * `getOrSet` for many keys: one round trip to read them all, the batch loader called once
   * with only the keys that missed, one round trip to write. A key already being loaded (by a
   * concurrent `getOrSet` or `getOrSetMany`) is joined, not loaded twice. Values come back in
   * the order of `keys`; a key the loader left out, now or when it was cached, is `undefined`.
   */
  async getOrSetMany<T>(
    keys: readonly string[],
    loader: BatchLoader<T>,
    options?: GetOrSetManyOptions<T>,
  ): Promise<(T | undefined)[]> {
    const core = this.#core;
    this.#open(options?.signal);
    if (options !== undefined) checkOptionNames(options, CALL_OPTION_NAMES);
    if (!Array.isArray(keys)) throw new InvalidOptionError('keys', `expected an array, got ${describe(keys)}`);
    if (typeof loader !== 'function') throw new InvalidOptionError('loader', `expected a function, got ${describe(loader)}`);
    const fullKeys = keys.map((key) => this.#keys.full(key));
    // Checked before any flight starts: a bad option fails this call alone, at once.
    const checkedTags = options?.tags === undefined ? undefined : core.tags.check(options.tags);
    const tags = checkedTags?.length === 0 ? undefined : checkedTags;
    const opts = resolveEntryOptions(core.defaults, options);
    const codec = core.codec(options?.serializer);
    const signal = options?.signal;
    const promises = new Map<string, Promise<T>>();
    const members: Member<T>[] = [];
    const early: BatchRefresh<T>[] = [];
    const plain = options?.schema === undefined && options?.serializer === undefined && options?.forceFresh !== true;
    const now = core.clock.now();
    fullKeys.forEach((fullKey, i) => {
      const key = keys[i]!;
      if (promises.has(fullKey)) return;
      const cached = plain ? core.coherence.l1Get(fullKey, now) : undefined;
      if (cached !== undefined) {
        this.#hit(fullKey, cached, false, 'l1');
        promises.set(fullKey, Promise.resolve(core.coherence.out(cached) as T));
        if (this.#startsEarlyRefresh(fullKey, cached, opts, now)) {
          early.push(this.#earlyRefresh(fullKey, key, cached, loader, opts, codec, undefined, tags));
        }
        return;
      }
      const running = core.flights.get<T>(fullKey);
      if (running !== undefined) {
        promises.set(fullKey, running.join(signal));
        return;
      }
      const member = new Member<T>(fullKey, key, (flight, outcome) => this.#hold(flight, outcome));
      member.flight = core.flights.start<T>(fullKey, () => member.promise);
      members.push(member);
      promises.set(fullKey, member.flight.join(signal));
    });
    if (early.length > 0) this.#startRefreshBatch(early, loader);
    if (members.length > 0) void this.#resolveBatch(members, loader, options, opts, codec, tags);
    return Promise.all(fullKeys.map((key) => promises.get(key)!));
  }

  /** Resolves every member: one read, one batch load of the misses, one write. Never rejects. */
  async #resolveBatch<T>(
    members: Member<T>[],
    loader: BatchLoader<T>,
    options: GetOrSetManyOptions<T> | undefined,
    opts: ResolvedEntryOptions,
    codec: EntryCodec,
    tags: readonly string[] | undefined,
  ): Promise<void> {
    const core = this.#core;
    const schema = options?.schema;
    // Each member can run as a getOrSet job; that path serves the rare cases (a soft timeout to
    // race, another process's load to wait for).
    const jobs = new Map(members.map((m) => [m, batchJob(m.flight, m.userKey, loader, opts, codec, schema, tags)]));
    // L1 holds values decoded by the default serializer and never checked by a caller's schema.
    const plainRead = schema === undefined && codec === core.defaultCodec;
    const since = core.coherence.seq;
    try {
      let reads: Read[];
      try {
        const wires = await core.store.getMany(
          members.map((m) => m.key),
          codec.binary,
        );
        reads = await Promise.all(
          wires.map(async (wire, i) => (wire === undefined ? ABSENT : this.#classify(members[i]!.key, wire, codec, schema))),
        );
      } catch (error) {
        core.storeError('getMany', undefined, error);
        reads = members.map(() => ERROR);
      }
      const toLease: Member<T>[] = [];
      const unleased: Member<T>[] = [];
      const cleanup: Promise<unknown>[] = [];
      // Entries served now and refreshed in the background, all in one batch loader call.
      const refreshes: BatchRefresh<T>[] = [];
      members.forEach((member, i) => {
        const read = reads[i]!;
        const job = jobs.get(member)!;
        if (options?.forceFresh === true && (read.state === 'fresh' || read.state === 'stale')) {
          // Load now, replacing exactly the entry we saw.
          this.#miss(member.key);
          member.expect = casPrefix(read.entry.kind, read.entry.id);
          unleased.push(member);
          return;
        }
        switch (read.state) {
          case 'fresh':
            this.#hit(member.key, read.entry, false);
            if (plainRead) core.coherence.fill(member.key, read.entry, core.clock.now(), since);
            member.settle({ value: read.entry.value as T, done: DONE });
            // The member's flight is released: an early refresh may take the key now.
            if (this.#startsEarlyRefresh(member.key, read.entry, opts, core.clock.now())) {
              refreshes.push(this.#earlyRefresh(member.key, member.userKey, read.entry, loader, opts, codec, schema, tags));
            }
            return;
          case 'stale':
          case 'pending':
            if (read.state === 'stale' && opts.timeout === 0) {
              // Served at once; refreshed with the batch's other stale keys (see below).
              this.#hit(member.key, read.entry, true);
              refreshes.push({ job, entry: read.entry, reason: 'stale', member });
              return;
            }
            // Rare paths (a soft timeout to race, another process's load to wait for): one key
            // at a time, like getOrSet.
            this.#obtain(job, read).then(
              (outcome) => member.settle(outcome),
              (error: unknown) => member.fail(error),
            );
            return;
          case 'error':
            this.#miss(member.key);
            unleased.push(member);
            return;
          default:
            break;
        }
        if (opts.lock === false) {
          // No leases: load and write unconditionally (last write wins).
          this.#miss(member.key);
          member.expect = undefined;
          unleased.push(member);
          return;
        }
        switch (read.state) {
          case 'corrupt':
            cleanup.push(core.store.delete([member.key]).catch(() => undefined));
            break;
          case 'expired':
          case 'invalid':
            cleanup.push(core.store.deleteIf(member.key, casPrefix(read.entry.kind, read.entry.id)).catch(() => undefined));
            break;
          default:
            break;
        }
        this.#miss(member.key);
        toLease.push(member);
      });
      if (refreshes.length > 0) this.#startRefreshBatch(refreshes, loader);
      await Promise.all(cleanup);
      // One round trip for every lease.
      const leased: Member<T>[] = [...unleased];
      if (toLease.length > 0) {
        const leases = toLease.map((m) => {
          m.lease = this.#newLease(m.key);
          return { key: m.key, value: m.lease.wire, ttl: leaseTtl(opts) };
        });
        let replies: (Wire | undefined)[];
        try {
          replies = await core.store.lease(leases, codec.binary);
        } catch (error) {
          core.storeError('lease', undefined, error);
          replies = toLease.map(() => undefined);
          for (const m of toLease) m.lease = undefined;
        }
        await Promise.all(
          toLease.map(async (member, i) => {
            const reply = replies[i];
            if (reply === undefined) {
              leased.push(member);
              return;
            }
            // Someone got there first (value, or their lease): resolve like getOrSet would.
            member.lease = undefined;
            const job = jobs.get(member)!;
            const read = await this.#classify(member.key, reply, codec, schema);
            const outcome =
              read.state === 'fresh'
                ? (this.#hit(member.key, read.entry, false), Promise.resolve({ value: read.entry.value as T, done: DONE }))
                : read.state === 'pending'
                  ? this.#leaseAndLoad(job, read.entry)
                  : this.#obtain(job, read);
            outcome.then(
              (o) => member.settle(o),
              (error: unknown) => member.fail(error),
            );
          }),
        );
      }
      if (leased.length > 0) await this.#loadBatch(leased, loader, opts, codec, schema, tags);
    } catch (error) {
      for (const member of members) member.fail(error);
    }
  }

  /** Calls the batch loader once for `members` and writes every result in one round trip. */
  async #loadBatch<T>(
    members: Member<T>[],
    loader: BatchLoader<T>,
    opts: ResolvedEntryOptions,
    codec: EntryCodec,
    schema: StandardSchemaV1<unknown, T> | undefined,
    tags: readonly string[] | undefined,
  ): Promise<void> {
    const core = this.#core;
    const controller = new AbortController();
    // The batch is abandoned only when every key's callers have gone.
    let remaining = members.length;
    for (const m of members) {
      m.flight.signal.addEventListener(
        'abort',
        () => {
          if (--remaining === 0) controller.abort(m.flight.signal.reason);
        },
        { once: true },
      );
    }
    const renewals = members.flatMap((m) => (m.lease === undefined ? [] : [core.renewals.hold(m.lease, leaseTtl(opts))]));
    let batch: LoadedBatch<T>;
    try {
      const keys = members.map((m) => ({ key: m.key, userKey: m.userKey, stale: undefined }));
      batch = await this.#callBatch(keys, loader, opts, tags, controller, false);
    } catch (error) {
      for (const m of members) {
        if (m.lease !== undefined) void this.#releaseLease(m.lease);
        m.fail(error);
      }
      return;
    } finally {
      for (const release of renewals) release();
    }
    const now = core.clock.now();
    const writes: BatchWrite<T>[] = [];
    const unconditional: (StoreWrite & { member: Member<T> })[] = [];
    await Promise.all(
      members.map(async (member, i) => {
        const checked = await checkLoaded(batch, member.key, member.userKey, i, schema);
        if (!checked.ok) {
          if (member.lease !== undefined) void this.#releaseLease(member.lease);
          member.fail(checked.error);
          return;
        }
        const value = checked.value;
        member.value = value;
        const made = this.#batchEntry(member.key, member.flight, value, batch, now, opts, codec);
        if (made === undefined) {
          if (member.lease !== undefined) void this.#releaseLease(member.lease);
          member.settle({ value, done: DONE });
          return;
        }
        const { write, entry } = made;
        const expect = member.lease?.prefix ?? member.expect;
        if (expect === undefined) {
          unconditional.push({ ...write, member });
          return;
        }
        const notify = member.lease === undefined ? undefined : { channel: core.coordination.channel, message: member.key };
        writes.push({ write: { ...write, expect, notify }, entry, member });
      }),
    );
    if (unconditional.length > 0)
      void core.store.setMany(unconditional.map(({ member: _member, ...write }) => write)).catch((error: unknown) => {
        this.#bump('writeErrors');
        core.storeError('setMany', undefined, error);
      });
    // One round trip for every write; callers get their values as soon as it is sent.
    if (writes.length > 0)
      void this.#setIfAll(writes).then((sent) =>
        sent
          ? undefined
          : Promise.all(writes.map((w) => (w.member?.lease === undefined ? DONE : this.#releaseLease(w.member.lease)))),
      );
    for (const w of unconditional) w.member.settle({ value: w.member.value as T, done: DONE });
    for (const w of writes) w.member?.settle({ value: w.member.value as T, done: DONE });
  }

  /** An early refresh of a batch's key served from `entry`: the key's flight while it runs. */
  #earlyRefresh<T>(
    key: string,
    userKey: string,
    entry: Entry,
    loader: BatchLoader<T>,
    opts: ResolvedEntryOptions,
    codec: EntryCodec,
    schema: StandardSchemaV1<unknown, T> | undefined,
    tags: readonly string[] | undefined,
  ): BatchRefresh<T> {
    const flight = this.#core.flights.start<T>(key, () => Promise.resolve(entry.value as T));
    return { job: batchJob(flight, userKey, loader, opts, codec, schema, tags), entry, reason: 'early' };
  }

  /**
   * Starts the refresh of a batch's served entries. Each key's flight is held while it runs, so
   * callers arriving meanwhile share the value served instead of starting the same refresh.
   */
  #startRefreshBatch<T>(refreshes: readonly BatchRefresh<T>[], loader: BatchLoader<T>): void {
    // Store and loader failures are handled (and reported) inside; anything else must not become
    // an unhandled rejection in the host.
    const done = this.#refreshBatch(refreshes, loader).catch(() => undefined);
    for (const { job, entry, reason, member } of refreshes) {
      const outcome = { value: entry.value as T, done, until: reason === 'stale' ? entry.staleUntil : entry.freshUntil };
      if (member === undefined) this.#hold(job.flight, outcome);
      else member.settle(outcome);
    }
  }

  /**
   * Refreshes entries callers were already served (stale, or due early) with one batch loader
   * call, as #refresh does for one key: one round trip takes the refresh locks, one skips the
   * entries another instance refreshed meanwhile, one writes (each a compare-and-set on the
   * entry served). Never rejects.
   */
  async #refreshBatch<T>(refreshes: readonly BatchRefresh<T>[], loader: BatchLoader<T>): Promise<void> {
    const core = this.#core;
    const { opts, codec, schema, tags } = refreshes[0]!.job;
    for (const r of refreshes) this.#refreshStarted(r.job.key, r.reason);
    let todo = refreshes;
    let locks: Lease[] = [];
    try {
      if (opts.lock !== false && core.store.shared) {
        const ttl = opts.lock.ttl;
        const wanted = todo.map((r) => this.#newLease(refreshLockKey(r.job.key)));
        let replies: (Wire | undefined)[] | undefined;
        try {
          replies = await core.store.lease(
            wanted.map((lease) => ({ key: lease.key, value: lease.wire, ttl })),
            false,
          );
        } catch (error) {
          // Refresh anyway, unlocked (as #refreshLock does).
          core.storeError('lock', undefined, error);
        }
        if (replies !== undefined) {
          // A key whose lock is held is being refreshed by its holder.
          locks = wanted.filter((_, i) => replies[i] === undefined);
          todo = await this.#notRefreshedElsewhere(todo.filter((_, i) => replies[i] === undefined));
        }
      }
      if (todo.length === 0) return;
      let batch: LoadedBatch<T>;
      try {
        const keys = todo.map((r) => ({ key: r.job.key, userKey: r.job.userKey, stale: r.entry }));
        // No caller waits on a refresh: only its hard timeout aborts it.
        batch = await this.#callBatch(keys, loader, opts, tags, new AbortController(), true);
      } catch {
        for (const r of todo) this.#refreshFailed(r.job, r.entry, r.reason);
        return;
      }
      const now = core.clock.now();
      const writes: BatchWrite<T>[] = [];
      await Promise.all(
        todo.map(async (r, i) => {
          const checked = await checkLoaded(batch, r.job.key, r.job.userKey, i, schema);
          if (!checked.ok) {
            this.#refreshFailed(r.job, r.entry, r.reason);
            return;
          }
          const made = this.#batchEntry(r.job.key, r.job.flight, checked.value, batch, now, opts, codec);
          if (made !== undefined) {
            writes.push({ write: { ...made.write, expect: casPrefix(r.entry.kind, r.entry.id) }, entry: made.entry });
          }
        }),
      );
      if (writes.length > 0) await this.#setIfAll(writes);
    } finally {
      await Promise.all(locks.map((lock) => this.#unlock(lock)));
    }
  }

  /**
   * The refreshes whose entry is still the one in the store: another instance may have refreshed
   * it between our read and our lock (see #refreshedElsewhere). One read for all of them; the
   * newer entries replace ours in L1. If the read fails, all are refreshed.
   */
  async #notRefreshedElsewhere<T>(refreshes: readonly BatchRefresh<T>[]): Promise<readonly BatchRefresh<T>[]> {
    const core = this.#core;
    if (refreshes.length === 0) return refreshes;
    const { codec, schema } = refreshes[0]!.job;
    const since = core.coherence.seq;
    let wires: (Wire | undefined)[];
    try {
      wires = await core.store.getMany(
        refreshes.map((r) => r.job.key),
        codec.binary,
      );
    } catch (error) {
      core.storeError('getMany', undefined, error);
      return refreshes;
    }
    const reads = await Promise.all(
      wires.map(async (wire, i) => (wire === undefined ? ABSENT : this.#classify(refreshes[i]!.job.key, wire, codec, schema))),
    );
    const now = core.clock.now();
    return refreshes.filter((r, i) => {
      const read = reads[i]!;
      if (read.state !== 'fresh' || read.entry.id === r.entry.id) return true;
      core.coherence.fill(r.job.key, read.entry, now, since);
      return false;
    });
  }

  /**
   * Reads the tag versions the entries will carry, then calls the batch loader for `keys` (hard
   * timeout, trace, metrics, events). Rejects with the loader's error, reported.
   */
  async #callBatch<T>(
    keys: readonly { readonly key: string; readonly userKey: string; readonly stale: Entry | undefined }[],
    loader: BatchLoader<T>,
    opts: ResolvedEntryOptions,
    tags: readonly string[] | undefined,
    controller: AbortController,
    background: boolean,
  ): Promise<LoadedBatch<T>> {
    const core = this.#core;
    // Tag versions before loading (see #load); unreadable: values are returned, not cached.
    let stamps: TagStamp[] | null | undefined;
    if (tags !== undefined) {
      stamps = await core.tags.current(tags).catch((error: unknown) => {
        core.storeError('tags', undefined, error);
        return null;
      });
    }
    const started = core.clock.now();
    this.#bump('loads');
    const t0 = performance.now();
    let loaded: ReadonlyMap<string, T> | readonly (T | undefined)[];
    try {
      const run = () =>
        Promise.resolve(
          loader(
            keys.map((k) => k.userKey),
            { signal: controller.signal, background },
          ),
        );
      const call = loadTrace.hasSubscribers
        ? loadTrace.tracePromise(run, { key: keys[0]!.key, keys: keys.map((k) => k.key), cache: core.name, background })
        : run();
      loaded = await (opts.hardTimeout === Infinity ? call : withHardTimeout(call, opts.hardTimeout, controller));
      if (!(loaded instanceof Map) && !Array.isArray(loaded)) {
        throw new TypeError('A batch loader must return a Map or an array');
      }
    } catch (error) {
      this.#bump('loadErrors');
      if (error instanceof LoaderTimeoutError) this.#bump('loadTimeouts');
      if (core.wants('load-error')) {
        const now = core.clock.now();
        for (const { key, stale } of keys) {
          const failSafe = stale !== undefined && now < stale.staleUntil;
          core.emit('load-error', { key, durationMs: now - started, background, error, failSafe });
        }
      }
      throw error;
    } finally {
      if (core.metrics) this.#latency.load.record(performance.now() - t0);
    }
    const loadMs = core.clock.now() - started;
    if (core.wants('load')) {
      for (const { key } of keys) core.emit('load', { key, durationMs: loadMs, background });
    }
    return { loaded, stamps, loadMs };
  }

  /**
   * The entry to write for a value a batch loaded, put in this instance's L1 at once; `undefined`
   * when nothing is to be written (the key was invalidated during the load, its tag versions
   * could not be read, or it is not to be stored).
   */
  #batchEntry<T>(
    key: string,
    flight: Flight<T>,
    value: T,
    batch: LoadedBatch<T>,
    now: number,
    opts: ResolvedEntryOptions,
    codec: EntryCodec,
  ): { write: StoreWrite; entry: Entry } | undefined {
    const core = this.#core;
    if (flight.invalidated) {
      this.#skipped(key);
      return undefined;
    }
    if (batch.stamps === null) return undefined;
    const kind: EntryKind = value === undefined ? 'n' : 'v';
    const made = this.#entryWrite(key, value, kind, batch.loadMs, now, opts, codec, 'report', batch.stamps);
    if (made !== undefined) core.coherence.fill(key, made.entry, now, core.coherence.seq);
    return made;
  }

  /**
   * Sends compare-and-set writes in one round trip; a write that loses takes its L1 copy back
   * (someone else's write or delete won). Resolves `false` when the store failed (reported).
   */
  #setIfAll<T>(writes: readonly BatchWrite<T>[]): Promise<boolean> {
    const core = this.#core;
    return core.store.setIf(writes.map((w) => w.write)).then(
      (results) => {
        results.forEach((written, i) => {
          if (written) return;
          const { write, entry } = writes[i]!;
          core.coherence.unfill(write.key, entry);
          this.#skipped(write.key);
        });
        return true;
      },
      (error: unknown) => {
        this.#bump('writeErrors');
        core.storeError('setMany', undefined, error);
        return false;
      },
    );
  }

  // --- lifecycle -------------------------------------------------------------------------------

  /**
   * Stops the cache: later calls reject with `ClosedError` and its subscriptions end. The store
   * is closed with the last open cache using it (it closes the connections it opened, never a
   * client you passed in), so caches sharing a store do not close it under each other. On a
   * child from `namespace()`, stops that child only.
   */
  async close(): Promise<void> {
    const core = this.#core;
    if (this.#own !== undefined) {
      this.#closed = true;
      return;
    }
    if (core.closed) return;
    core.closed = true;
    core.renewals.stop();
    core.unwatchBreaker();
    await core.coherence.close();
    await core.coordination.close();
    const users = (storeUsers.get(core.store) ?? 1) - 1;
    if (users > 0) storeUsers.set(core.store, users);
    else {
      storeUsers.delete(core.store);
      await core.store.close();
    }
  }
}

/** What a batch loader returned, with what its entries need. */
interface LoadedBatch<T> {
  readonly loaded: ReadonlyMap<string, T> | readonly (T | undefined)[];
  /** Tag versions read before the load; `null`: unreadable, so nothing is cached. */
  readonly stamps: TagStamp[] | null | undefined;
  readonly loadMs: number;
}

/** A compare-and-set write of a batch, with the L1 entry it made and the member it answers. */
interface BatchWrite<T> {
  readonly write: ConditionalWrite;
  readonly entry: Entry;
  readonly member?: Member<T>;
}

/** A key of a `getOrSetMany` batch served from its entry and refreshed in the background. */
interface BatchRefresh<T> {
  readonly job: Job<T>;
  readonly entry: Entry;
  readonly reason: 'early' | 'stale';
  /** The caller's member, for a stale entry: settled with the refresh running. */
  readonly member?: Member<T>;
}

/** A `getOrSetMany` key as a getOrSet job, whose loader asks the batch loader for that key alone. */
function batchJob<T>(
  flight: Flight<T>,
  userKey: string,
  loader: BatchLoader<T>,
  opts: ResolvedEntryOptions,
  codec: EntryCodec,
  schema: StandardSchemaV1<unknown, T> | undefined,
  tags: readonly string[] | undefined,
): Job<T> {
  const single: Loader<T> = async ({ signal, background }) => pick(await loader([userKey], { signal, background }), userKey, 0);
  return { flight, key: flight.key, userKey, loader: single, opts, codec, schema, tags, announce: false };
}

/** The value a batch loaded for one key, checked by the schema when there is one. */
async function checkLoaded<T>(
  batch: LoadedBatch<T>,
  key: string,
  userKey: string,
  index: number,
  schema: StandardSchemaV1<unknown, T> | undefined,
): Promise<SchemaResult<T>> {
  const value = pick(batch.loaded, userKey, index);
  if (schema === undefined || value === undefined) return { ok: true, value };
  return validate(schema, value, key);
}

/** One key of a `getOrSetMany` batch: its flight, and a deferred outcome. */
class Member<T> {
  readonly key: string;
  readonly userKey: string;
  flight!: Flight<T>;
  lease: Lease | undefined;
  /**
   * Without a lease: the entry the write must replace (`''`: the key must still be absent;
   * `undefined`: write unconditionally, for `lock: false`).
   */
  expect: string | undefined = '';
  value: T | undefined;
  readonly promise: Promise<T>;
  readonly #hold: (flight: Flight<unknown>, outcome: Outcome<unknown>) => void;
  #resolve!: (value: T) => void;
  #reject!: (error: unknown) => void;
  #settled = false;

  constructor(key: string, userKey: string, hold: (flight: Flight<unknown>, outcome: Outcome<unknown>) => void) {
    this.key = key;
    this.userKey = userKey;
    this.#hold = hold;
    this.promise = new Promise<T>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  /** Resolves the callers now; the flight is held while a background refresh runs. */
  settle(outcome: Outcome<T>): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#resolve(outcome.value);
    this.#hold(this.flight, outcome);
  }

  fail(error: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#reject(error);
    this.flight.release();
  }
}

/**
 * The earliest time an early refresh of `entry` can be due. XFetch fires when
 * `-ln(random()) >= (freshUntil - now) / (loadMs · beta)`, and `-ln(random())` exceeds 20 with
 * probability 2e-9: before `freshUntil - 20 · loadMs · beta` it cannot fire in practice.
 */
/** Keys not to refresh before a time, bounded (the oldest holds go first). */
class Backoffs {
  static readonly MAX = 10_000;
  readonly #until = new Map<string, number>();

  hold(key: string, until: number): void {
    this.#until.delete(key);
    this.#until.set(key, until);
    if (this.#until.size > Backoffs.MAX) this.#until.delete(this.#until.keys().next().value!);
  }

  blocks(key: string, now: number): boolean {
    if (this.#until.size === 0) return false;
    const until = this.#until.get(key);
    if (until === undefined) return false;
    if (now < until) return true;
    this.#until.delete(key);
    return false;
  }
}

/**
 * The refresh-ahead point: `ahead` of the fresh period, and never later than two load times
 * before expiry (a refresh started later would not land in time; the last load time predicts
 * the next).
 */
function aheadPoint(entry: Entry, ahead: number): number {
  return Math.min(entry.createdAt + (entry.freshUntil - entry.createdAt) * ahead, entry.freshUntil - 2 * entry.loadMs);
}

function earliestRefresh(entry: Entry, early: Exclude<ResolvedEntryOptions['earlyRefresh'], false>): number {
  if (entry.freshUntil === Infinity) return Infinity;
  let at = early.ahead < 1 ? aheadPoint(entry, early.ahead) : Infinity;
  if (early.beta > 0 && entry.loadMs > 0) at = Math.min(at, entry.freshUntil - entry.loadMs * early.beta * 20);
  return at;
}

function pick<T>(results: ReadonlyMap<string, T> | readonly (T | undefined)[], key: string, index: number): T {
  return (results instanceof Map ? results.get(key) : (results as readonly (T | undefined)[])[index]) as T;
}

function withHardTimeout<T>(promise: Promise<T>, ms: number, controller: AbortController): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      const error = new LoaderTimeoutError(ms);
      controller.abort(error);
      reject(error);
    }, ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** `promise`, or an `AbortError` as soon as `signal` aborts (the promise is left to settle alone). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal, key: string | undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new AbortError(key === undefined ? { cause: signal.reason } : { cause: signal.reason, key }));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function toStoreError(error: unknown): StoreError {
  if (isStoreError(error)) return error;
  return new StoreError('E_STORE_UNAVAILABLE', `The store failed: ${error instanceof Error ? error.message : String(error)}`, {
    cause: error,
  });
}

/**
 * Creates a cache. Every option is optional: without a store it keeps entries in memory.
 *
 * @example
 * const cache = createCache({ store: redisStore({ client }), namespace: 'shop', ttl: 60_000 });
 * const user = await cache.getOrSet(`user:${id}`, ({ signal }) => db.users.find(id, { signal }));
 */
export function createCache(options: CacheOptions = {}): Cache {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', 'expected an object');
  checkOptionNames(options, CACHE_OPTION_NAMES);
  const namespace = checkNamespace('namespace', options.namespace ?? 'larder');
  const version = checkVersion('version', options.version ?? 1);
  const maxKeyLength =
    options.maxKeyLength === undefined ? DEFAULT_MAX_KEY_LENGTH : checkCount('maxKeyLength', options.maxKeyLength);
  const keys = KeySpace.root(namespace, version, maxKeyLength);
  const core = new CacheCore(options, keys.prefix, namespace, version, maxKeyLength);
  storeUsers.set(core.store, (storeUsers.get(core.store) ?? 0) + 1);
  return new Cache(core, keys);
}

/** Open caches per store: the last one to close closes the store. */
const storeUsers = new WeakMap<Store, number>();

/**
 * How long reads stay GET-first after Redis refused a lease-first read with an error that
 * refuses every write. Long enough that a lasting refusal (an ACL) costs one failed read per
 * interval, not per miss; short enough that a passing one (a failover's `READONLY`, memory
 * freed after `OOM`) gives the round trip back soon.
 */
const LEASE_FIRST_RETRY = 30_000;

/**
 * An error reply that refuses every write, not this key alone: memory full under `noeviction`,
 * an ACL without `SET`, a read-only replica. A key of another type (`WRONGTYPE`) is this key's
 * problem and leaves lease-first reads on.
 */
function refusesWrites(error: unknown): boolean {
  if (!(error instanceof StoreError && error.reply)) return false;
  const cause = error.cause;
  return cause instanceof Error && /^(OOM|NOPERM|READONLY)\b/.test(cause.message);
}
