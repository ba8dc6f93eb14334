/**
 * Tag versions: O(1) invalidation of every entry carrying a tag.
 *
 * Each tag has a version in the store. `invalidateTags` advances it: one command per tag, however
 * many entries carry it. An entry records the versions its tags had before its loader ran, and is
 * valid only while they still match — checked lazily when the entry is read. A load that races an
 * invalidation therefore produces an entry that is already invalid, never a stale one.
 *
 * Versions live in Redis, so invalidations survive restarts and reach every instance. Each
 * instance keeps the versions it has seen, and trusts that copy only while the invalidation bus
 * vouches for it (the bus delivers new versions); otherwise it reads them from the store.
 *
 * Versions are ordered by the store (`<epoch>.<n>`, see `Store.versions`), and an instance only
 * ever moves its copy forward: two invalidations announced in the opposite order of their writes,
 * or an announcement retried late, cannot leave an instance on an older version than the store
 * (which would make it and the others reject each other's entries, forever). A version that
 * expires (`tagTtl`) is recreated by the next read, later than every earlier one, and that read
 * announces it like an invalidation: instances holding the expired version move on too.
 */
import { InvalidOptionError } from '../errors.js';
import { newerVersion, type Store } from '../stores/store.js';
import type { Clock } from './clock.js';
import { describe } from './durations.js';
import type { TagStamp } from './entry.js';

/** Most tags on one entry. */
export const MAX_TAGS = 64;
/** Most tag versions kept in memory; the oldest learnt go first (and are read again when needed). */
const MAX_KNOWN = 10_000;

export interface TagVersionsOptions {
  /** The store key of a tag's version. */
  readonly keyOf: (tag: string) => string;
  /** Whether the local copies may be used right now (see `Coherence.trusted`). */
  readonly trusted: () => boolean;
  readonly maxTagLength: number;
  /** TTL of a version the store writes. */
  readonly ttl: number;
  /** Longest a local copy is used, in ms (`Infinity` while a bus keeps copies current). */
  readonly maxAge: number;
  readonly clock: Clock;
  /** A read created versions that had expired: tell the other instances, as for an invalidation. */
  readonly announce: (stamps: readonly TagStamp[]) => void;
}

export class TagVersions {
  readonly #store: Store;
  readonly #options: TagVersionsOptions;
  /** Tag → the newest version seen, and when it was learnt. */
  readonly #known = new Map<string, { readonly version: string; readonly at: number }>();

  constructor(store: Store, options: TagVersionsOptions) {
    this.#store = store;
    this.#options = options;
  }

  /** The store key of a tag's version. */
  keyOf(tag: string): string {
    return this.#options.keyOf(tag);
  }

  /** Checks and deduplicates a list of tags (a typed error before any I/O). */
  check(tags: unknown): readonly string[] {
    if (!Array.isArray(tags)) throw new InvalidOptionError('tags', `expected an array of strings, got ${describe(tags)}`);
    if (tags.length > MAX_TAGS) throw new InvalidOptionError('tags', `at most ${MAX_TAGS} tags per entry, got ${tags.length}`);
    const max = this.#options.maxTagLength;
    for (const tag of tags) {
      if (typeof tag !== 'string' || tag.length === 0 || tag.length > max) {
        throw new InvalidOptionError(
          'tags',
          `each tag must be a non-empty string of at most ${max} characters, got ${describe(tag)}`,
        );
      }
    }
    return [...new Set(tags as string[])];
  }

  /** The local copy of a tag's version, when it may be used. */
  #local(tag: string): string | undefined {
    const copy = this.#known.get(tag);
    if (copy === undefined) return undefined;
    if (this.#options.clock.now() - copy.at >= this.#options.maxAge) {
      this.#known.delete(tag);
      return undefined;
    }
    return copy.version;
  }

  /**
   * The version of each tag as of this call: the local copy when trusted, else one read from the
   * store (which creates versions that are absent). Never a version learnt after the call began:
   * a snapshot taken before a load must not see an invalidation that happened during it (that is
   * how the load's result is recognised as stale).
   */
  async current(tags: readonly string[]): Promise<TagStamp[]> {
    const trusted = this.#options.trusted();
    const snapshot = tags.map((tag) => (trusted ? this.#local(tag) : undefined));
    const missing = tags.filter((_, i) => snapshot[i] === undefined);
    if (missing.length === 0) return tags.map((tag, i): TagStamp => [tag, snapshot[i]!]);
    const replies = await this.#store.versions(
      missing.map((tag) => ({ key: this.keyOf(tag), bump: false, ttl: this.#options.ttl })),
    );
    const read = new Map<string, string>();
    const created: TagStamp[] = [];
    missing.forEach((tag, i) => {
      const { version, changed } = replies[i]!;
      read.set(tag, version);
      if (changed) created.push([tag, version]);
      // Remembered only when copies are trusted (a newer version that arrived meanwhile stays).
      if (trusted && this.#options.trusted()) this.learn(tag, version);
    });
    if (created.length > 0) this.#options.announce(created);
    return tags.map((tag, i): TagStamp => [tag, snapshot[i] ?? read.get(tag)!]);
  }

  /** Advances the versions of `tags` in the store (an invalidation); answers the new ones. */
  async bump(tags: readonly string[]): Promise<TagStamp[]> {
    // Until the store answers, this instance reads the versions again rather than trust a copy
    // that is about to be old.
    for (const tag of tags) this.#known.delete(tag);
    const replies = await this.#store.versions(tags.map((tag) => ({ key: this.keyOf(tag), bump: true, ttl: this.#options.ttl })));
    return tags.map((tag, i): TagStamp => {
      const { version } = replies[i]!;
      this.learn(tag, version);
      return [tag, version];
    });
  }

  /**
   * Whether stamps still match, from the local copy only: `true`/`false`, or `undefined` when the
   * copy is not trusted or lacks a tag (the caller then asks {@link stillValid}).
   */
  validNow(stamps: readonly TagStamp[]): boolean | undefined {
    if (!this.#options.trusted()) return undefined;
    for (const [tag, version] of stamps) {
      const known = this.#local(tag);
      if (known === undefined) return undefined;
      if (known !== version) return false;
    }
    return true;
  }

  /** Whether stamps still match the current versions (reading the store if needed). */
  async stillValid(stamps: readonly TagStamp[]): Promise<boolean> {
    const now = this.validNow(stamps);
    if (now !== undefined) return now;
    const current = await this.current(stamps.map(([tag]) => tag));
    return current.every(([, version], i) => version === stamps[i]![1]);
  }

  /** A tag got a version (invalidated here, announced on the bus, or read): kept if it is newer. */
  learn(tag: string, version: string): void {
    const known = this.#known.get(tag);
    if (known !== undefined && !newerVersion(version, known.version)) return;
    this.#known.delete(tag);
    this.#known.set(tag, { version, at: this.#options.clock.now() });
    if (this.#known.size > MAX_KNOWN) this.#known.delete(this.#known.keys().next().value!);
  }

  /** Forget every local copy (the bus lost or regained its connection: copies may be stale). */
  forget(): void {
    this.#known.clear();
  }
}
