/**
 * The in-process store: Larder's embedded default when there is no Redis, and a faithful
 * single-process stand-in for it (same TTL, conditional-write and lease semantics).
 *
 * It is bounded by entry count and by bytes, expires entries lazily on read (no timer per key),
 * and evicts the least recently used entries first.
 */
import { EventEmitter } from 'node:events';
import { LRUCache } from 'lru-cache';
import { systemClock, type Clock } from '../core/clock.js';
import { checkCount } from '../core/durations.js';
import { checkOptionNames, optionNames } from '../core/option-names.js';
import { InvalidOptionError } from '../errors.js';
import type { Wire } from '../core/entry.js';
import type {
  ConditionalExpire,
  ConditionalWrite,
  LeaseRequest,
  Notice,
  Store,
  StoreStatus,
  StoreWrite,
  SubscribeHandlers,
  Subscription,
  VersionReply,
  VersionRequest,
} from './store.js';
import { nextVersion, startsWithAny, WAIT_MARK } from './store.js';

export interface MemoryStoreOptions {
  /**
   * Most entries kept; the least recently used go first.
   * @default 10_000
   */
  maxEntries?: number;
  /**
   * Most bytes kept (keys plus encoded entries). An entry larger than this is not stored.
   * @default 67_108_864 (64 MiB)
   */
  maxBytes?: number;
  /** Time source for TTLs. @default the system clock */
  clock?: Clock;
}

const MEMORY_STORE_OPTION_NAMES = optionNames<MemoryStoreOptions>({ maxEntries: true, maxBytes: true, clock: true });

const READY: StoreStatus = Object.freeze({ ready: true, breaker: 'closed', pending: 0 });

function byteSize(value: Wire): number {
  return typeof value === 'string' ? Buffer.byteLength(value) : value.byteLength;
}

function endsWithMark(value: Wire): boolean {
  return typeof value === 'string'
    ? value.endsWith(WAIT_MARK)
    : value.byteLength > 0 && value[value.byteLength - 1] === WAIT_MARK.charCodeAt(0);
}

function startsWith(value: Wire, prefix: string): boolean {
  if (typeof value === 'string') return value.startsWith(prefix);
  if (value.byteLength < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (value[i] !== prefix.charCodeAt(i)) return false;
  return true;
}

/** Returns what Redis would: text as UTF-8 bytes, bytes as UTF-8 text. */
function as(value: Wire, binary: boolean): Wire {
  if (binary) return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  return typeof value === 'string' ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
}

export class MemoryStore implements Store {
  readonly name = 'memory';
  readonly shared = false;
  readonly #lru: LRUCache<string, Wire>;
  readonly #events = new EventEmitter();

  constructor(options: MemoryStoreOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', 'expected an object');
    checkOptionNames(options, MEMORY_STORE_OPTION_NAMES);
    const clock = options.clock ?? systemClock;
    this.#lru = new LRUCache<string, Wire>({
      max: options.maxEntries === undefined ? 10_000 : checkCount('maxEntries', options.maxEntries),
      maxSize: options.maxBytes === undefined ? 64 * 1024 * 1024 : checkCount('maxBytes', options.maxBytes),
      sizeCalculation: (value, key) => byteSize(value) + key.length,
      ttlAutopurge: false,
      perf: clock,
    });
    this.#events.setMaxListeners(0);
  }

  #write(key: string, value: Wire, ttl: number): void {
    // lru-cache reads ttl 0 as "no expiry"; Larder's "no expiry" is Infinity.
    this.#lru.set(key, value, { ttl: ttl === Infinity ? 0 : Math.max(1, Math.ceil(ttl)) });
  }

  async get(key: string, binary: boolean): Promise<Wire | undefined> {
    const value = this.#lru.get(key);
    return value === undefined ? undefined : as(value, binary);
  }

  async getMany(keys: readonly string[], binary: boolean): Promise<(Wire | undefined)[]> {
    return keys.map((key) => {
      const value = this.#lru.get(key);
      return value === undefined ? undefined : as(value, binary);
    });
  }

  async set(key: string, value: Wire, ttl: number): Promise<void> {
    this.#write(key, value, ttl);
  }

  async setMany(writes: readonly StoreWrite[]): Promise<void> {
    for (const w of writes) this.#write(w.key, w.value, w.ttl);
  }

  async setIf(writes: readonly ConditionalWrite[]): Promise<boolean[]> {
    return writes.map((w) => {
      const current = this.#lru.get(w.key);
      const matches = w.expect === '' ? current === undefined : current !== undefined && startsWith(current, w.expect);
      if (matches) {
        this.#write(w.key, w.value, w.ttl);
        if (w.notify !== undefined && current !== undefined && endsWithMark(current)) this.#notify(w.notify);
      }
      return matches;
    });
  }

  async lease(requests: readonly LeaseRequest[], binary: boolean): Promise<(Wire | undefined)[]> {
    return requests.map((r) => {
      const current = this.#lru.get(r.key);
      if (current !== undefined) return as(current, binary);
      this.#write(r.key, r.value, r.ttl);
      return undefined;
    });
  }

  async deleteIf(key: string, expect: string, notify?: Notice): Promise<boolean> {
    const current = this.#lru.get(key);
    if (current === undefined || !startsWith(current, expect)) return false;
    this.#lru.delete(key);
    if (notify !== undefined && endsWithMark(current)) this.#notify(notify);
    return true;
  }

  async mark(key: string, expect: string): Promise<boolean> {
    const current = this.#lru.get(key);
    if (current === undefined || !startsWith(current, expect)) return false;
    if (!endsWithMark(current)) {
      const marked = typeof current === 'string' ? current + WAIT_MARK : Buffer.concat([current, Buffer.from(WAIT_MARK)]);
      const ttl = this.#lru.getRemainingTTL(key);
      this.#write(key, marked, ttl === 0 || ttl === Infinity ? Infinity : ttl);
    }
    return true;
  }

  async versions(requests: readonly VersionRequest[]): Promise<VersionReply[]> {
    return requests.map((r) => {
      const current = this.#lru.get(r.key);
      const reply = nextVersion(current === undefined ? undefined : (as(current, false) as string), r, Date.now());
      if (reply.changed) this.#write(r.key, reply.version, r.ttl);
      return reply;
    });
  }

  async expireIf(requests: readonly ConditionalExpire[]): Promise<boolean[]> {
    return requests.map((r) => {
      const current = this.#lru.get(r.key);
      if (current === undefined || !startsWith(current, r.expect)) return false;
      this.#write(r.key, current, r.ttl);
      return true;
    });
  }

  async delete(keys: readonly string[]): Promise<number> {
    let deleted = 0;
    for (const key of keys) if (this.#lru.delete(key)) deleted++;
    return deleted;
  }

  async clear(prefixes: readonly string[]): Promise<number> {
    let deleted = 0;
    for (const key of [...this.#lru.keys()]) {
      if (startsWithAny(key, prefixes) && this.#lru.delete(key)) deleted++;
    }
    return deleted;
  }

  #notify({ channel, message }: Notice): void {
    // Asynchronous like a real broker: a publisher never runs subscribers inside its own call.
    queueMicrotask(() => this.#events.emit(channel, message));
  }

  async publish(channel: string, message: string): Promise<void> {
    this.#notify({ channel, message });
  }

  async subscribe(channel: string, handlers: SubscribeHandlers): Promise<Subscription> {
    const listener = (message: string) => handlers.message(message);
    this.#events.on(channel, listener);
    return {
      unsubscribe: async () => {
        this.#events.off(channel, listener);
      },
    };
  }

  status(): StoreStatus {
    return READY;
  }

  /** Milliseconds until `key` expires: `Infinity` without TTL, `undefined` when absent. */
  remainingTtl(key: string): number | undefined {
    if (!this.#lru.has(key)) return undefined;
    const ttl = this.#lru.getRemainingTTL(key);
    return ttl === Infinity || ttl === 0 ? Infinity : ttl;
  }

  /** Number of entries held. */
  get size(): number {
    return this.#lru.size;
  }

  async close(): Promise<void> {
    this.#lru.clear();
    this.#events.removeAllListeners();
  }
}

/** A bounded in-process store. */
export function memoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  return new MemoryStore(options);
}
