/**
 * Key layout: `<namespace>:v<version>:<key>` for the root, `<parent>/<child>[@v<version>]:<key>`
 * for a child from `cache.namespace()` (so `app:v1/users:42`, `app:v1/users@v2/orders:7`).
 *
 * The version comes right after the root namespace so that bumping it hides every entry of the
 * cache at once, children included. A child hangs off its parent's prefix with `/` instead of
 * `:`: user keys may hold any character, so a child at `app:v1:users:` would share keys with the
 * parent's own `users:42`; after `app:v1/` nothing the parent writes can follow. For the same
 * reason a child's version is marked with `@`, which no namespace name contains. Namespace
 * segments are restricted to a safe alphabet because they end up in a `SCAN MATCH` pattern.
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
  /**
   * The prefixes `clear()` covers: this space's own keys and its children's
   * (`app:v1:` and `app:v1/`).
   */
  readonly scope: readonly [own: string, children: string];
  readonly maxKeyLength: number;
  /**
   * Full keys built recently, by user key. A string made by concatenation must be flattened and
   * hashed again at every map lookup (about 200 ns); handing back the same full-key string lets
   * its hash be computed once, which is most of an L1 hit's cost otherwise.
   */
  readonly #built = new Map<string, string>();

  constructor(prefix: string, maxKeyLength: number) {
    this.prefix = prefix;
    this.scope = [prefix, `${prefix.slice(0, -1)}/`];
    this.maxKeyLength = maxKeyLength;
  }

  static root(namespace: string, version: string, maxKeyLength: number): KeySpace {
    return new KeySpace(`${namespace}:v${version}:`, maxKeyLength);
  }

  child(name: string, version: string | undefined): KeySpace {
    return new KeySpace(`${this.scope[1]}${name}${version === undefined ? '' : `@v${version}`}:`, this.maxKeyLength);
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

  private invalid(key: unknown): InvalidKeyError {
    if (typeof key !== 'string') return new InvalidKeyError(`A cache key must be a string, got ${describe(key)}`);
    if (key.length === 0) return new InvalidKeyError('A cache key must not be empty');
    return new InvalidKeyError(`A cache key must be at most ${this.maxKeyLength} characters, got ${key.length}`, {
      key: `${key.slice(0, 40)}…`,
    });
  }
}
