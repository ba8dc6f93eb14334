/**
 * The in-process tier (L1): decoded values in memory, bounded by entry count and by bytes, with
 * an eviction policy chosen by measurement (see `bench/l1.ts`).
 *
 * - `tinylfu` (W-TinyLFU, the default): new entries enter a small LRU window (1% of the
 *   capacity); leaving it, an entry must be more frequently used than the main area's eviction
 *   victim to be admitted (frequencies from a count-min sketch), so one-off reads and scans do
 *   not flush the hot set. The main area is a segmented LRU: probation (20%) and protected (80%).
 * - `lru`: plain least-recently-used.
 *
 * Entries carry their own expiry (`until`); expired entries are dropped when read. Nothing here
 * allocates on a hit.
 */
import { startsWithAny } from '../stores/store.js';
import { FrequencySketch, hashKey } from './sketch.js';

export type EvictionPolicy = 'tinylfu' | 'lru';

const WINDOW = 0;
const PROBATION = 1;
const PROTECTED = 2;

class Node<V> {
  prev: Node<V> | undefined = undefined;
  next: Node<V> | undefined = undefined;
  constructor(
    readonly key: string,
    readonly hash: number,
    public value: V,
    public size: number,
    public until: number,
    public segment: number,
  ) {}
}

/** A doubly linked list: `head` is the most recently used end, `tail` the eviction end. */
class List<V> {
  head: Node<V> | undefined;
  tail: Node<V> | undefined;
  count = 0;

  pushFront(node: Node<V>): void {
    node.prev = undefined;
    node.next = this.head;
    if (this.head === undefined) this.tail = node;
    else this.head.prev = node;
    this.head = node;
    this.count++;
  }

  remove(node: Node<V>): void {
    const { prev, next } = node;
    if (prev === undefined) this.head = next;
    else prev.next = next;
    if (next === undefined) this.tail = prev;
    else next.prev = prev;
    node.prev = node.next = undefined;
    this.count--;
  }

  moveToFront(node: Node<V>): void {
    if (this.head === node) return;
    this.remove(node);
    this.pushFront(node);
  }
}

export interface MemoryTierOptions {
  maxEntries: number;
  maxBytes: number;
  policy: EvictionPolicy;
}

export class MemoryTier<V> {
  readonly #map = new Map<string, Node<V>>();
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  readonly #lfu: boolean;
  readonly #window = new List<V>();
  readonly #probation = new List<V>();
  readonly #protected = new List<V>();
  readonly #windowMax: number;
  readonly #protectedMax: number;
  readonly #sketch: FrequencySketch | undefined;
  #bytes = 0;
  /** Entries evicted to respect the bounds (not counting deletes and expiries). */
  evictions = 0;

  constructor(options: MemoryTierOptions) {
    this.#maxEntries = options.maxEntries;
    this.#maxBytes = options.maxBytes;
    this.#lfu = options.policy === 'tinylfu';
    this.#windowMax = this.#lfu ? Math.max(1, Math.round(options.maxEntries * 0.01)) : options.maxEntries;
    this.#protectedMax = Math.round((options.maxEntries - this.#windowMax) * 0.8);
    this.#sketch = this.#lfu ? new FrequencySketch(options.maxEntries) : undefined;
  }

  get size(): number {
    return this.#map.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The value of `key` if present and not expired at `now`; records the access. */
  get(key: string, now: number): V | undefined {
    const node = this.#map.get(key);
    if (node === undefined) {
      // A miss counts too: a key asked for again and again earns admission.
      this.#sketch?.increment(hashKey(key));
      return undefined;
    }
    if (now >= node.until) {
      this.#unlink(node);
      return undefined;
    }
    this.#sketch?.increment(node.hash);
    this.#touch(node);
    return node.value;
  }

  /** Stores `value` (of `size` bytes) until `until`. An entry larger than the byte bound is not stored. */
  set(key: string, value: V, size: number, until: number): void {
    const existing = this.#map.get(key);
    if (size > this.#maxBytes) {
      if (existing !== undefined) this.#unlink(existing);
      return;
    }
    if (existing !== undefined) {
      this.#bytes += size - existing.size;
      existing.value = value;
      existing.size = size;
      existing.until = until;
      this.#touch(existing);
    } else {
      const node = new Node(key, this.#lfu ? hashKey(key) : 0, value, size, until, WINDOW);
      this.#map.set(key, node);
      this.#bytes += size;
      this.#window.pushFront(node);
      if (this.#lfu) this.#drainWindow();
    }
    this.#enforce();
  }

  /** The value held for `key`, whatever its expiry, without counting a use. */
  peek(key: string): V | undefined {
    return this.#map.get(key)?.value;
  }

  delete(key: string): boolean {
    const node = this.#map.get(key);
    if (node === undefined) return false;
    this.#unlink(node);
    return true;
  }

  /** Deletes every entry whose key starts with one of `prefixes`. */
  deletePrefixes(prefixes: readonly string[]): void {
    for (const node of this.#map.values()) if (startsWithAny(node.key, prefixes)) this.#unlink(node);
  }

  clear(): void {
    this.#map.clear();
    for (const list of [this.#window, this.#probation, this.#protected]) {
      list.head = list.tail = undefined;
      list.count = 0;
    }
    this.#bytes = 0;
  }

  #listOf(node: Node<V>): List<V> {
    return node.segment === WINDOW ? this.#window : node.segment === PROBATION ? this.#probation : this.#protected;
  }

  #unlink(node: Node<V>): void {
    this.#listOf(node).remove(node);
    this.#map.delete(node.key);
    this.#bytes -= node.size;
  }

  #touch(node: Node<V>): void {
    if (node.segment !== PROBATION) {
      this.#listOf(node).moveToFront(node);
      return;
    }
    // A second use in probation earns protection; the protected area's coldest entry steps down.
    this.#probation.remove(node);
    node.segment = PROTECTED;
    this.#protected.pushFront(node);
    if (this.#protected.count > this.#protectedMax) {
      const demoted = this.#protected.tail!;
      this.#protected.remove(demoted);
      demoted.segment = PROBATION;
      this.#probation.pushFront(demoted);
    }
  }

  /** Moves entries leaving the window into probation; admission is decided when space is needed. */
  #drainWindow(): void {
    while (this.#window.count > this.#windowMax) {
      const node = this.#window.tail!;
      this.#window.remove(node);
      node.segment = PROBATION;
      this.#probation.pushFront(node);
    }
  }

  #enforce(): void {
    while (this.#map.size > this.#maxEntries || this.#bytes > this.#maxBytes) {
      this.#unlink(this.#victim());
      this.evictions++;
    }
  }

  /**
   * The entry to evict. LRU: the least recently used. W-TinyLFU: the newest entry admitted to
   * probation (the candidate) competes with probation's coldest (the victim); the less frequent
   * of the two goes, ties against the candidate, so a burst of one-off keys cannot push out
   * entries that are read again.
   */
  #victim(): Node<V> {
    if (!this.#lfu) return this.#window.tail!;
    const victim = this.#probation.tail ?? this.#protected.tail ?? this.#window.tail!;
    const candidate = this.#probation.head;
    if (candidate === undefined || candidate === victim || victim.segment !== PROBATION) return victim;
    const sketch = this.#sketch!;
    return sketch.frequency(candidate.hash) > sketch.frequency(victim.hash) ? victim : candidate;
  }
}
