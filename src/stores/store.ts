/**
 * The store interface: what Larder needs from a place to keep entries (Redis, or memory).
 *
 * It is deliberately small and byte-oriented: keys are full keys (namespace included), values
 * are encoded entries, TTLs are milliseconds. Serialization, envelopes, single flight, tiers and
 * everything else live above it, so a driver stays a thin translation to its client library.
 *
 * The conditional operations (`setIf`, `lease`, `deleteIf`) are what make cross-process single
 * flight and stale-set protection possible; each must be atomic in the store.
 *
 * @module
 */
import type { Wire } from '../core/entry.js';
import type { HistogramSnapshot } from '../core/metrics.js';

export type { Wire } from '../core/entry.js';

/** A write: `ttl` in ms, `Infinity` for no expiry. */
export interface StoreWrite {
  readonly key: string;
  readonly value: Wire;
  readonly ttl: number;
}

/**
 * The wait mark: a byte appended (by {@link Store.mark}) to a value someone waits on. Conditional
 * writes and deletes publish their {@link Notice} only when the value they replace carries it,
 * so nothing is published when nobody waits.
 */
export const WAIT_MARK = 'w';

/**
 * A message published, atomically with a conditional write or delete, when that operation
 * succeeds and the value it replaced carried the {@link WAIT_MARK}.
 */
export interface Notice {
  readonly channel: string;
  readonly message: string;
}

/** A TTL change that only happens if the current value starts with `expect`. */
export interface ConditionalExpire {
  readonly key: string;
  readonly expect: string;
  readonly ttl: number;
}

/** A write that only happens if the current value starts with `expect` (`''`: the key is absent). */
export interface ConditionalWrite extends StoreWrite {
  readonly expect: string;
  /** Published if the write happens. */
  readonly notify?: Notice | undefined;
}

/** A lease request: write `value` (with `ttl`) only if `key` is absent. */
export interface LeaseRequest {
  readonly key: string;
  readonly value: Wire;
  readonly ttl: number;
}

/** A version to read or advance (see {@link Store.versions}). */
export interface VersionRequest {
  readonly key: string;
  /** `true`: advance the version; `false`: read it (creating it when absent). */
  readonly bump: boolean;
  /** TTL given to a version that is written. */
  readonly ttl: number;
}

/** A version as the store answered it, and whether this request wrote it (created or advanced). */
export interface VersionReply {
  readonly version: string;
  readonly changed: boolean;
}

export interface SubscribeHandlers {
  /** A message arrived on the channel. */
  message(message: string): void;
  /**
   * The subscription lost its connection (`false`: messages may be missed from now on) or got it
   * back (`true`). Not called for stores that cannot lose messages.
   */
  connection?(connected: boolean): void;
}

export interface Subscription {
  unsubscribe(): Promise<void>;
}

/**
 * Which Redis pub/sub carries a channel:
 * - `classic`: `PUBLISH`/`SUBSCRIBE`. On Redis Cluster every message is broadcast to every node
 *   of the cluster, so each one costs every node, however few listen.
 * - `sharded`: `SPUBLISH`/`SSUBSCRIBE` (Redis 7). The channel lives on the shard that owns its
 *   hash slot, like a key: its messages cost that shard only, and cluster pub/sub scales out with
 *   the number of channels. On a single Redis it works like classic.
 * - `auto`: sharded on a Redis Cluster (classic if its servers predate Redis 7), classic otherwise.
 *
 * Classic and sharded channels are separate namespaces: publishers and subscribers of a channel
 * must resolve to the same kind (`auto` on both sides does).
 *
 * @see docs/scaling.md
 */
export type PubSubMode = 'classic' | 'sharded' | 'auto';

/** Options of {@link Store.publish} and {@link Store.subscribe}. */
export interface PubSubOptions {
  /**
   * Which pub/sub carries the channel (see {@link PubSubMode}). Stores without a network (the
   * memory store) ignore it.
   * @default 'classic'
   * @see docs/scaling.md
   */
  readonly mode?: PubSubMode | undefined;
}

/** A connection pool's figures (node-redis `createClientPool()`), at one instant. */
export interface PoolStatus {
  /** Connections in the pool: idle, in use, and connecting. */
  readonly total: number;
  /** Connections waiting for a command. */
  readonly idle: number;
  /** Connections running a command (or connecting). */
  readonly inUse: number;
  /** Commands waiting for a connection to free up (the pool is at its `maximum`). */
  readonly waiting: number;
}

/** A connection health snapshot, for stats and metrics. */
export interface StoreStatus {
  /** `true` when commands can be sent now. */
  readonly ready: boolean;
  /** Circuit breaker state; `closed` for stores without one. */
  readonly breaker: 'closed' | 'open' | 'half-open';
  /** How many times the breaker opened (0 for stores without one). */
  readonly breakerOpens?: number;
  /** Latency of the store's commands, in ms, when recorded. */
  readonly latency?: HistogramSnapshot;
  /** Commands sent and not answered yet. */
  readonly pending: number;
  /** Anything the client library reports (queue lengths, …). */
  readonly details?: Readonly<Record<string, number | string | boolean>>;
  /** The client's connection pool, when it is one. */
  readonly pool?: PoolStatus;
}

export interface Store {
  /** For logs and metrics: `memory`, `redis`, `ioredis`, … */
  readonly name: string;
  /**
   * `true` when several processes share this store (Redis). Larder then coordinates loads across
   * processes (leases) and relies on it for invalidation messages.
   */
  readonly shared: boolean;

  /** The value, or `undefined` when the key is absent. `binary` asks for bytes instead of text. */
  get(key: string, binary: boolean): Promise<Wire | undefined>;
  /** Many values in one round trip, in the order of `keys`. */
  getMany(keys: readonly string[], binary: boolean): Promise<(Wire | undefined)[]>;
  /** Writes unconditionally. */
  set(key: string, value: Wire, ttl: number): Promise<void>;
  /** Many unconditional writes in one round trip. */
  setMany(writes: readonly StoreWrite[]): Promise<void>;
  /** Conditional writes in one round trip; each atomic. Returns which ones were written. */
  setIf(writes: readonly ConditionalWrite[]): Promise<boolean[]>;
  /**
   * For each request, atomically: if the key is absent, write the value and answer `undefined`
   * (the lease is yours); otherwise answer the current value (`SET NX PX GET`). One round trip.
   */
  lease(requests: readonly LeaseRequest[], binary: boolean): Promise<(Wire | undefined)[]>;
  /** Deletes `key` only if its value starts with `expect` (then publishes `notify` if it was marked). Atomic. */
  deleteIf(key: string, expect: string, notify?: Notice): Promise<boolean>;
  /** Appends the {@link WAIT_MARK} to the value of `key` if it starts with `expect` (keeping its TTL). Atomic. */
  mark(key: string, expect: string): Promise<boolean>;
  /** Sets the TTL of each key whose value starts with its `expect`, in one round trip. Atomic per key. */
  expireIf(requests: readonly ConditionalExpire[]): Promise<boolean[]>;
  /**
   * Ordered versions (`<epoch>.<n>`), one round trip for all requests, each atomic. A key that is
   * absent gets `<now in ms>.0` from the store's own clock, so a version recreated after expiring
   * sorts after every earlier one; a `bump` advances `n` (and replaces a value of another form,
   * which a read answers as it is: an earlier Larder's version). A written
   * version gets `ttl`; a version only read keeps its TTL. Because the store orders the versions of
   * a key, instances learning them in any order agree on the newest ({@link newerVersion}).
   */
  versions(requests: readonly VersionRequest[]): Promise<VersionReply[]>;
  /** Deletes keys in one round trip; returns how many existed. */
  delete(keys: readonly string[]): Promise<number>;
  /**
   * Deletes every key starting with one of `prefixes` (a namespace's own keys and its
   * children's), in batches (never `KEYS`); returns how many.
   */
  clear(prefixes: readonly string[]): Promise<number>;

  /** Sends a message to every subscriber of `channel` (in every process sharing the store). */
  publish(channel: string, message: string, options?: PubSubOptions): Promise<void>;
  /** Receives the messages of `channel` until `unsubscribe()`. */
  subscribe(channel: string, handlers: SubscribeHandlers, options?: PubSubOptions): Promise<Subscription>;

  /** Connection health. */
  status(): StoreStatus;
  /**
   * Calls `listener` on each circuit breaker transition until the returned function is called.
   * Absent on stores without a breaker. The cache re-emits these as its `breaker` event.
   */
  watchBreaker?(listener: (state: StoreStatus['breaker']) => void): () => void;
  /** Releases what the store opened. Never closes a client the user passed in. */
  close(): Promise<void>;
}

/** Whether `key` starts with one of `prefixes`. */
export function startsWithAny(key: string, prefixes: readonly string[]): boolean {
  for (const prefix of prefixes) if (key.startsWith(prefix)) return true;
  return false;
}

/** The longest common start of `prefixes` (the `SCAN MATCH` stem that covers them all). */
export function commonStart(prefixes: readonly string[]): string {
  let stem = prefixes[0] ?? '';
  for (const prefix of prefixes) {
    let i = 0;
    while (i < stem.length && i < prefix.length && stem[i] === prefix[i]) i++;
    stem = stem.slice(0, i);
  }
  return stem;
}

const VERSION = /^(\d+)\.(\d+)$/;

/**
 * Whether `candidate` is a later version than `known` (see {@link Store.versions}). Anything
 * else than `<epoch>.<n>` (absent, or written by an older Larder) is older than every version.
 */
export function newerVersion(candidate: string, known: string | undefined): boolean {
  if (known === undefined) return true;
  const c = VERSION.exec(candidate);
  const k = VERSION.exec(known);
  if (c === null) return k === null && candidate !== known;
  if (k === null) return true;
  const epochs = Number(c[1]) - Number(k[1]);
  return epochs > 0 || (epochs === 0 && Number(c[2]) > Number(k[2]));
}

/** The version a store holding `current` answers for `request` (shared by stores that are not Redis). */
export function nextVersion(current: string | undefined, request: VersionRequest, now: number): VersionReply {
  const match = current === undefined ? null : VERSION.exec(current);
  if (current !== undefined && !request.bump) return { version: current, changed: false };
  const [epoch, n] = match === null ? [String(Math.floor(now)), 0] : [match[1]!, Number(match[2])];
  return { version: `${epoch}.${request.bump ? n + 1 : n}`, changed: true };
}
