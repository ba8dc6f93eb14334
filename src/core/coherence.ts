/**
 * Coherence of the in-process tier: the L1 itself, the invalidation bus that keeps it in step
 * with other instances, the tag versions, and the bookkeeping that stops a slow read from
 * putting back in L1 a value that was invalidated while it was in flight.
 *
 * When L1 is trusted: always for an unshared store (one process); with a bus, only while the
 * bus hears itself (see `InvalidationBus`); without a bus, bounded by `l1.ttl`.
 */
import { InvalidationBus, type BusOptions, type Invalidation } from '../bus/bus.js';
import { checkCount, checkDuration } from './durations.js';
import { checkOptionNames, optionNames } from './option-names.js';
import type { Clock } from './clock.js';
import type { Entry } from './entry.js';
import { InvalidOptionError } from '../errors.js';
import type { Store } from '../stores/store.js';
import { MemoryTier } from '../tiers/memory-tier.js';
import type { L1Options } from './options.js';
import type { Flights } from './single-flight.js';
import { TagVersions } from './tags.js';

const L1_OPTION_NAMES = optionNames<L1Options>({ maxEntries: true, maxBytes: true, ttl: true, policy: true, clone: true });
const BUS_OPTION_NAMES = optionNames<BusOptions>({ heartbeat: true });

/** How many recent invalidations are remembered to veto slow L1 fills. */
const RECENT = 10_000;

export interface CoherenceHooks {
  /** The bus became trustworthy or stopped being so. */
  busConnection(connected: boolean): void;
}

export class Coherence {
  readonly l1: MemoryTier<Entry> | undefined;
  readonly tags: TagVersions;
  readonly #l1Ttl: number;
  readonly #clone: ((value: unknown) => unknown) | undefined;
  readonly #bus: InvalidationBus | undefined;
  readonly #flights: Flights;
  readonly #shared: boolean;
  #listening = false;
  /** Counts invalidations; reads remember it at their start. */
  #seq = 0;
  /** Key → sequence of its last invalidation (most recent {@link RECENT}). */
  readonly #recent = new Map<string, number>();
  /** Sequence of the last invalidation forgotten from `#recent`, or of the last prefix clear. */
  #floor = 0;

  constructor(
    store: Store,
    options: {
      l1: L1Options | false | undefined;
      bus: BusOptions | false | undefined;
      channel: string;
      tagKey: (tag: string) => string;
      tagTtl: number;
      maxKeyLength: number;
      clock: Clock;
    },
    flights: Flights,
    readonly hooks: CoherenceHooks,
  ) {
    this.#flights = flights;
    this.#shared = store.shared;
    const l1 = options.l1;
    if (l1 !== undefined && l1 !== false && (typeof l1 !== 'object' || l1 === null)) {
      throw new InvalidOptionError('l1', 'expected an options object or false');
    }
    if (l1 !== undefined && l1 !== false) {
      checkOptionNames(l1, L1_OPTION_NAMES, 'l1');
      const policy = l1.policy ?? 'tinylfu';
      if (policy !== 'tinylfu' && policy !== 'lru') throw new InvalidOptionError('l1.policy', "expected 'tinylfu' or 'lru'");
      this.l1 = new MemoryTier<Entry>({
        maxEntries: l1.maxEntries === undefined ? 10_000 : checkCount('l1.maxEntries', l1.maxEntries),
        maxBytes: l1.maxBytes === undefined ? 32 * 1024 * 1024 : checkCount('l1.maxBytes', l1.maxBytes),
        policy,
      });
      this.#l1Ttl = l1.ttl === undefined ? Infinity : checkDuration('l1.ttl', l1.ttl, { infinity: true, zero: false });
      const clone = l1.clone ?? false;
      this.#clone = clone === true ? (value) => structuredClone(value) : clone === false ? undefined : clone;
    } else {
      this.#l1Ttl = Infinity;
    }
    if (options.bus !== undefined && options.bus !== false && (typeof options.bus !== 'object' || options.bus === null)) {
      throw new InvalidOptionError('bus', 'expected an options object or false');
    }
    if (typeof options.bus === 'object') checkOptionNames(options.bus, BUS_OPTION_NAMES, 'bus');
    const heartbeat =
      options.bus === undefined || options.bus === false || options.bus.heartbeat === undefined
        ? 1_000
        : checkDuration('bus.heartbeat', options.bus.heartbeat, { zero: false });
    // Also on an unshared (memory) store: several caches in one process may share it.
    this.#bus = options.bus !== false ? new InvalidationBus(store, options.channel, { heartbeat }) : undefined;
    this.tags = new TagVersions(store, {
      keyOf: options.tagKey,
      trusted: () => this.trusted,
      maxTagLength: options.maxKeyLength,
      ttl: options.tagTtl,
      // With a bus, copies are kept current by it; without one, they are as fresh as `l1.ttl`,
      // like the L1 entries they vouch for (other instances' invalidations never reach them).
      maxAge: this.#bus === undefined && this.#shared ? this.#l1Ttl : Infinity,
      clock: options.clock,
      announce: (stamps) => void this.announce({ tags: stamps }),
    });
    if (this.l1 !== undefined) this.listen();
  }

  /**
   * Whether local copies (L1 entries, tag versions) can be served without asking the store:
   * while the bus hears itself; without a bus, an L1 is trusted for `l1.ttl` (and an unshared
   * store needs no bus to be right).
   */
  get trusted(): boolean {
    if (this.#bus === undefined) return !this.#shared || this.l1 !== undefined;
    return this.#bus.connected;
  }

  /** Starts receiving invalidations (L1 enabled, or tags in use). Idempotent. */
  listen(): void {
    if (this.#listening || this.#bus === undefined) return;
    this.#listening = true;
    void this.#bus.listen({
      invalidate: (invalidation) => this.#received(invalidation),
      reset: () => {
        this.l1?.clear();
        this.tags.forget();
        this.#floor = ++this.#seq;
      },
      connection: (connected) => {
        // Either way, local copies may be stale: drop them.
        this.l1?.clear();
        this.tags.forget();
        this.hooks.busConnection(connected);
      },
    });
  }

  /** A fresh entry from L1, or `undefined`. The value is cloned when `l1.clone` asks for it. */
  l1Get(key: string, now: number): Entry | undefined {
    if (this.l1 === undefined || !this.trusted) return undefined;
    const entry = this.l1.get(key, now);
    if (entry === undefined) return undefined;
    if (entry.tags !== undefined) {
      const valid = this.tags.validNow(entry.tags);
      if (valid !== true) {
        if (valid === false) this.l1.delete(key);
        return undefined;
      }
    }
    return entry;
  }

  /** The value to hand out for an L1 entry. */
  out(entry: Entry): unknown {
    return this.#clone === undefined ? entry.value : this.#clone(entry.value);
  }

  /** Remember this before reading the store; pass it to {@link fill}. */
  get seq(): number {
    return this.#seq;
  }

  /**
   * Puts a fresh entry read from (or written to) the store into L1, unless the key was
   * invalidated after `since` (the read began before the invalidation: its value may be old).
   */
  fill(key: string, entry: Entry, now: number, since: number): void {
    if (this.l1 === undefined || !this.trusted || !(now < entry.freshUntil)) return;
    if (since < this.#floor || (this.#recent.get(key) ?? -1) > since) return;
    this.l1.set(key, entry, entry.size, Math.min(entry.freshUntil, now + this.#l1Ttl));
  }

  /** Takes back a {@link fill} of `entry` (if it is still the copy held): the store did not take it. */
  unfill(key: string, entry: Entry): void {
    if (this.l1?.peek(key) === entry) this.l1.delete(key);
  }

  /** This instance changed keys: drop its L1 copies (the caller announces it after the store write). */
  invalidateKeys(keys: readonly string[]): void {
    for (const key of keys) {
      this.l1?.delete(key);
      this.#note(key);
    }
  }

  invalidatePrefixes(prefixes: readonly string[]): void {
    this.l1?.deletePrefixes(prefixes);
    this.#floor = ++this.#seq;
  }

  /** Tells the other instances (no-op without a bus). */
  announce(invalidation: Partial<Invalidation>): Promise<void> {
    return this.#bus === undefined ? Promise.resolve() : this.#bus.publish(invalidation);
  }

  #note(key: string): void {
    this.#recent.delete(key);
    this.#recent.set(key, ++this.#seq);
    if (this.#recent.size > RECENT) {
      const [oldest, at] = this.#recent.entries().next().value!;
      this.#recent.delete(oldest);
      this.#floor = Math.max(this.#floor, at);
    }
  }

  #received(invalidation: Invalidation): void {
    for (const key of invalidation.keys) {
      this.#flights.invalidate(key);
      this.l1?.delete(key);
      this.#note(key);
    }
    if (invalidation.prefixes.length > 0) {
      this.#flights.invalidatePrefixes(invalidation.prefixes);
      this.invalidatePrefixes(invalidation.prefixes);
    }
    for (const [tag, version] of invalidation.tags) this.tags.learn(tag, version);
  }

  async close(): Promise<void> {
    this.l1?.clear();
    await this.#bus?.close();
  }
}
