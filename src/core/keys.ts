/**
 * Key layout: `<namespace>:v<version>:<child>:…:<key>`.
 *
 * The version comes right after the root namespace so that bumping it hides every entry of the
 * cache at once, children included, and `clear()` on a namespace also clears its children (they
 * share its prefix). Namespace segments are restricted to a safe alphabet because they end up in
 * a `SCAN MATCH` pattern; user keys may hold any character.
 */
import { InvalidKeyError, InvalidOptionError } from '../errors.js';
import { describe } from './durations.js';

/** Longest key accepted by default, in UTF-16 code units, after the namespace prefix. */
export const DEFAULT_MAX_KEY_LENGTH = 1024;

const SEGMENT = /^[A-Za-z0-9_.-]{1,64}$/;
const VERSION = /^[A-Za-z0-9_.-]{1,32}$/;

export function checkNamespace(option: string, name: unknown): string {
  if (typeof name !== 'string' || !SEGMENT.test(name)) {
    throw new InvalidOptionError(option, `expected 1-64 characters from [A-Za-z0-9_.-], got ${describe(name)}`);
  }
  return name;
}

export function checkVersion(option: string, version: unknown): string {
  const text = typeof version === 'number' && Number.isInteger(version) && version >= 0 ? String(version) : version;
  if (typeof text !== 'string' || !VERSION.test(text)) {
    throw new InvalidOptionError(
      option,
      `expected a non-negative integer or 1-32 characters from [A-Za-z0-9_.-], got ${describe(version)}`,
    );
  }
  return text;
}

/** Full keys remembered per key space (see {@link KeySpace.full}). */
const REMEMBERED = 10_000;

/** A namespace prefix plus the key rules. */
export class KeySpace {
  /** Everything before the user key, ending in `:`. */
  readonly prefix: string;
  readonly maxKeyLength: number;
  /**
   * Full keys built recently, by user key. A string made by concatenation must be flattened and
   * hashed again at every map lookup (about 200 ns); handing back the same full-key string lets
   * its hash be computed once, which is most of an L1 hit's cost otherwise.
   */
  readonly #built = new Map<string, string>();

  constructor(prefix: string, maxKeyLength: number) {
    this.prefix = prefix;
    this.maxKeyLength = maxKeyLength;
  }

  static root(namespace: string, version: string, maxKeyLength: number): KeySpace {
    return new KeySpace(`${namespace}:v${version}:`, maxKeyLength);
  }

  child(name: string, version: string | undefined): KeySpace {
    return new KeySpace(`${this.prefix}${name}:${version === undefined ? '' : `v${version}:`}`, this.maxKeyLength);
  }

  /** The full store key, or an {@link InvalidKeyError} before any I/O. */
  full(key: unknown): string {
    if (typeof key !== 'string' || key.length === 0 || key.length > this.maxKeyLength) throw this.invalid(key);
    let full = this.#built.get(key);
    if (full === undefined) {
      if (this.#built.size >= REMEMBERED) this.#built.clear();
      full = this.prefix + key;
      this.#built.set(key, full);
    }
    return full;
  }

  /** The user key of a full key built by this space. */
  user(fullKey: string): string {
    return fullKey.slice(this.prefix.length);
  }

  /** Glob pattern matching every key of this space (and its children), for `SCAN MATCH`. */
  get pattern(): string {
    // Namespace segments cannot hold glob characters, so no escaping is needed.
    return `${this.prefix}*`;
  }

  private invalid(key: unknown): InvalidKeyError {
    if (typeof key !== 'string') return new InvalidKeyError(`A cache key must be a string, got ${describe(key)}`);
    if (key.length === 0) return new InvalidKeyError('A cache key must not be empty');
    return new InvalidKeyError(`A cache key must be at most ${this.maxKeyLength} characters, got ${key.length}`, {
      key: `${key.slice(0, 40)}…`,
    });
  }
}
