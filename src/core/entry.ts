/**
 * The entry envelope: what Larder stores under each key.
 *
 *     L1<kind>,<id>,<createdAt>,<freshUntil>,<staleUntil>,<loadMs>,<codec>,<tags>\n<payload>
 *
 * - `L1` is the format version. Anything else under a Larder key is corrupt: a miss, deleted.
 * - `kind`: `v` a value (including `null`), `n` "not found" (negative caching), `p` a lease
 *   placeholder (someone is loading), `t` a tombstone (deleted; fences out slow loaders).
 * - `id` is unique per write. Writes that must not overwrite newer data compare it atomically
 *   (see `Store.setIf`), which is how Larder prevents stale sets.
 * - Times are epoch milliseconds in base 36; an empty field is `Infinity` (never stale/expires).
 * - `codec` is the serializer name, plus `+<compressor>` when the payload is compressed: an entry
 *   from another serializer is detected instead of misread.
 * - `tags` is empty or a JSON array of `[tag, version]` pairs taken when the value was loaded.
 *
 * The header is ASCII so entries stay readable in `redis-cli`, and parsing it costs a handful
 * of `indexOf` calls, which keeps the hit path next to a bare `GET` + `JSON.parse`.
 */
import { randomBytes } from 'node:crypto';
import type { ResolvedCompression } from '../serializers/compression.js';
import type { Payload, Serializer } from '../serializers/serializer.js';

/** A value as it travels to and from the store. */
export type Wire = string | Uint8Array;

export type EntryKind = 'v' | 'n' | 'p' | 't';

/** A tag and the version it had when the value was loaded. */
export type TagStamp = readonly [tag: string, version: string];

export interface EntryHeader {
  readonly kind: EntryKind;
  readonly id: string;
  readonly createdAt: number;
  /** Until then the entry is fresh. `Infinity`: always fresh. */
  readonly freshUntil: number;
  /** Until then a stale entry may still be served (grace). `Infinity`: never expires. */
  readonly staleUntil: number;
  /** How long the loader took, for probabilistic early refresh. */
  readonly loadMs: number;
  readonly codec: string;
  readonly tags: readonly TagStamp[] | undefined;
}

export interface Entry<T = unknown> extends EntryHeader {
  readonly value: T;
  /** Size of the stored entry in bytes (bounds the memory tier). */
  readonly size: number;
  /**
   * Earliest time an early refresh can be due under the cache's default settings, computed on
   * first use (`NaN` until then), so a hit on a hot entry costs one comparison.
   */
  earlyAt: number;
}

export const FORMAT = 'L1';
const NEWLINE = 10;

// --- write ids ----------------------------------------------------------------------------

// A per-process random part plus a counter: unique across processes with overwhelming
// probability, and far cheaper than a random id per write.
const processTag = randomBytes(6).readUIntBE(0, 6).toString(36);
let counter = 0;

/** A new, unique write id. */
export function newEntryId(): string {
  return `${processTag}.${(counter++).toString(36)}`;
}

/** The prefix a compare-and-set looks for to find this exact entry. */
export function casPrefix(kind: EntryKind, id: string): string {
  return `${FORMAT}${kind},${id},`;
}

/** Prefix of any Larder lease placeholder. */
export const PLACEHOLDER_PREFIX = `${FORMAT}p,`;

// --- header -----------------------------------------------------------------------------------

/** 36^4: splits a timestamp into two small integers (see {@link time}). */
const BASE36_LOW = 36 ** 4;

/**
 * A time in ms as base 36. A timestamp is past the small-integer range, and V8's `toString(36)`
 * of such a number takes its general floating-point path (about 200 ns, three per write);
 * printing its high and low halves as small integers gives the same digits in a quarter of that.
 */
function time(ms: number): string {
  if (ms === Infinity) return '';
  const whole = Math.round(ms);
  const high = Math.floor(whole / BASE36_LOW);
  const low = whole - high * BASE36_LOW;
  // Small, negative, past 2^53 (no exact halves) or NaN: the general path.
  if (!(high > 0 && whole <= Number.MAX_SAFE_INTEGER)) return whole.toString(36);
  return high.toString(36) + low.toString(36).padStart(4, '0');
}

/**
 * The number written in base 36 (lowercase, optionally negative) in `text` from `from` to `to`;
 * `NaN` when the range is empty or holds anything else. Reading the digits in place spares the
 * substring and the `parseInt` per field, a third of a header's parse.
 */
function base36(text: string, from: number, to: number): number {
  let sign = 1;
  if (from < to && text.charCodeAt(from) === 45 /* - */) {
    sign = -1;
    from++;
  }
  if (from >= to) return NaN;
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    const digit = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 122 ? c - 87 : -1;
    if (digit < 0) return NaN;
    n = n * 36 + digit;
  }
  return sign * n;
}

/** A time written by {@link time}: empty is `Infinity`. */
function parseTime(text: string, from: number, to: number): number {
  return from === to ? Infinity : base36(text, from, to);
}

/** The header line of an entry, newline included; `codec` is passed apart to spare a copy of the header. */
export function encodeHeader(header: Omit<EntryHeader, 'codec'>, codec: string): string {
  return (
    `${FORMAT}${header.kind},${header.id},${time(header.createdAt)},${time(header.freshUntil)},` +
    `${time(header.staleUntil)},${Math.round(header.loadMs).toString(36)},${codec},` +
    `${header.tags === undefined || header.tags.length === 0 ? '' : JSON.stringify(header.tags)}\n`
  );
}

/**
 * Parses a header line (without its newline) into an entry whose value is still `undefined`;
 * `undefined` when it is not a valid v1 header.
 */
function parseHeader(line: string, size: number): { -readonly [K in keyof Entry]: Entry[K] } | undefined {
  if (line.charCodeAt(0) !== 76 || line.charCodeAt(1) !== 49 || line.charCodeAt(3) !== 44) return undefined;
  const kind = line[2];
  if (kind !== 'v' && kind !== 'n' && kind !== 'p' && kind !== 't') return undefined;
  const i1 = line.indexOf(',', 4);
  const i2 = line.indexOf(',', i1 + 1);
  const i3 = line.indexOf(',', i2 + 1);
  const i4 = line.indexOf(',', i3 + 1);
  const i5 = line.indexOf(',', i4 + 1);
  const i6 = line.indexOf(',', i5 + 1);
  if (i1 < 0 || i2 < 0 || i3 < 0 || i4 < 0 || i5 < 0 || i6 < 0) return undefined;
  const createdAt = parseTime(line, i1 + 1, i2);
  const freshUntil = parseTime(line, i2 + 1, i3);
  const staleUntil = parseTime(line, i3 + 1, i4);
  const loadMs = base36(line, i4 + 1, i5);
  if (Number.isNaN(createdAt) || Number.isNaN(freshUntil) || Number.isNaN(staleUntil) || Number.isNaN(loadMs)) {
    return undefined;
  }
  let tags: TagStamp[] | undefined;
  if (i6 + 1 < line.length) {
    try {
      tags = JSON.parse(line.slice(i6 + 1)) as TagStamp[];
    } catch {
      return undefined;
    }
    if (!Array.isArray(tags)) return undefined;
  }
  return {
    kind,
    id: line.slice(4, i1),
    createdAt,
    freshUntil,
    staleUntil,
    loadMs,
    codec: line.slice(i5 + 1, i6),
    tags,
    value: undefined,
    size,
    earlyAt: NaN,
  };
}

// --- codec ------------------------------------------------------------------------------------

/** Why an entry could not be read. */
export type CorruptReason = 'format' | 'codec' | 'payload';

export class CorruptEntry {
  constructor(
    readonly reason: CorruptReason,
    readonly cause?: unknown,
  ) {}
}

/**
 * Encodes and decodes entries for one serializer (+ optional compression). Immutable; the cache
 * keeps one per serializer in use.
 */
export class EntryCodec {
  readonly serializer: Serializer;
  readonly compression: ResolvedCompression | undefined;
  /** Whether entries travel as bytes (binary serializer or compression) rather than text. */
  readonly binary: boolean;
  readonly #plainName: string;
  readonly #compressedName: string | undefined;

  constructor(serializer: Serializer, compression: ResolvedCompression | undefined) {
    this.serializer = serializer;
    this.compression = compression;
    this.binary = serializer.binary || compression !== undefined;
    this.#plainName = serializer.name;
    this.#compressedName = compression === undefined ? undefined : `${serializer.name}+${compression.compressor.name}`;
  }

  /** Encodes a value entry. Throws what the serializer throws. */
  encode(header: Omit<EntryHeader, 'codec'>, value: unknown): Wire {
    if (header.kind !== 'v') return encodeHeader(header, '');
    const payload = this.serializer.serialize(value);
    if (!this.binary) return encodeHeader(header, this.#plainName) + (payload as string);
    let bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
    let codec = this.#plainName;
    if (this.compression !== undefined && bytes.byteLength >= this.compression.threshold) {
      bytes = this.compression.compressor.compress(bytes);
      codec = this.#compressedName!;
    }
    const head = encodeHeader(header, codec);
    const out = Buffer.allocUnsafe(head.length + bytes.byteLength);
    out.write(head, 0, 'latin1');
    out.set(bytes, head.length);
    return out;
  }

  /** Decodes an entry; a {@link CorruptEntry} when it cannot be read (never throws). */
  decode(wire: Wire): Entry | CorruptEntry {
    let line: string;
    let body: Payload;
    let size: number;
    if (typeof wire === 'string') {
      const nl = wire.indexOf('\n');
      if (nl < 0) return new CorruptEntry('format');
      line = wire.slice(0, nl);
      body = wire.slice(nl + 1);
      size = wire.length;
    } else {
      const nl = wire.indexOf(NEWLINE);
      if (nl < 0) return new CorruptEntry('format');
      line = Buffer.from(wire.buffer, wire.byteOffset, nl).toString('latin1');
      body = wire.subarray(nl + 1);
      size = wire.byteLength;
    }
    const entry = parseHeader(line, size);
    if (entry === undefined) return new CorruptEntry('format');
    if (entry.kind !== 'v') return entry;
    let payload = body;
    if (entry.codec !== this.#plainName) {
      if (entry.codec !== this.#compressedName || typeof body === 'string') return new CorruptEntry('codec');
      try {
        payload = this.compression!.compressor.decompress(body);
      } catch (cause) {
        return new CorruptEntry('payload', cause);
      }
    }
    try {
      entry.value = this.serializer.deserialize(payload);
    } catch (cause) {
      return new CorruptEntry('payload', cause);
    }
    return entry;
  }
}

/** A lease placeholder: "someone is loading this key". It carries no times: nobody reads them. */
export function placeholderWire(id: string): string {
  return `${FORMAT}p,${id},,,,0,,\n`;
}
