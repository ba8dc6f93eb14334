/**
 * A count-min sketch of recent access frequencies, for W-TinyLFU admission (Einziger, Friedman
 * and Manes, "TinyLFU: A Highly Efficient Cache Admission Policy", ACM TOS 2017; the layout
 * follows Caffeine's FrequencySketch).
 *
 * Four rows of saturating counters (0-15) in one byte array; each key hashes to one counter per
 * row, and its frequency is the smallest of the four. Every `10 × capacity` increments all
 * counters are halved, so popularity fades and the sketch follows a changing workload.
 */

/** FNV-1a over the UTF-16 code units of a string: fast, and good enough to spread keys. */
export function hashKey(key: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

// Odd multipliers that spread one 32-bit hash into four independent-looking row indexes.
const SEEDS = [0x97cb3127, 0x2e5a4b69, 0xc2b2ae35, 0x9e3779b1] as const;
const MAX = 15;

export class FrequencySketch {
  readonly #table: Uint8Array;
  readonly #shift: number;
  readonly #width: number;
  readonly #sampleSize: number;
  #additions = 0;

  /** `capacity`: how many entries the cache holds (sizes the sketch and its aging period). */
  constructor(capacity: number) {
    // At least `capacity` counters per row, a power of two (indexes by shifting).
    const width = 2 ** Math.max(4, Math.ceil(Math.log2(Math.max(16, capacity))));
    this.#width = width;
    this.#shift = 32 - Math.log2(width);
    this.#table = new Uint8Array(width * 4);
    this.#sampleSize = 10 * Math.max(16, capacity);
  }

  #index(hash: number, row: number): number {
    return row * this.#width + (Math.imul(hash, SEEDS[row as 0 | 1 | 2 | 3]) >>> this.#shift);
  }

  /** Estimated recent accesses of the key whose hash is `hash` (0-15). */
  frequency(hash: number): number {
    const t = this.#table;
    return Math.min(t[this.#index(hash, 0)]!, t[this.#index(hash, 1)]!, t[this.#index(hash, 2)]!, t[this.#index(hash, 3)]!);
  }

  /** Records one access. */
  increment(hash: number): void {
    const t = this.#table;
    let added = false;
    for (let row = 0; row < 4; row++) {
      const i = this.#index(hash, row);
      if (t[i]! < MAX) {
        t[i]!++;
        added = true;
      }
    }
    if (added && ++this.#additions >= this.#sampleSize) this.#age();
  }

  #age(): void {
    const t = this.#table;
    for (let i = 0; i < t.length; i++) t[i]! >>= 1;
    this.#additions = Math.floor(this.#additions / 2);
  }
}
