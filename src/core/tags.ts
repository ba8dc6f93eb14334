/**
 * Tag versions: O(1) invalidation of every entry carrying a tag.
 *
 * Each tag has a version in the store (a random token; absent means "never invalidated").
 * `invalidateTags` writes a new version: one command per tag, however many entries carry it. An
 * entry records the versions its tags had before its loader ran, and is valid only while they
 * still match — checked lazily when the entry is read. A load that races an invalidation
 * therefore produces an entry that is already invalid, never a stale one.
 *
 * Versions live in Redis, so invalidations survive restarts and reach every instance. Each
 * instance keeps the versions it has seen, and trusts that copy only while the invalidation bus
 * vouches for it (the bus delivers new versions); otherwise it reads them from the store.
 */
import { randomBytes } from 'node:crypto';
import { InvalidOptionError } from '../errors.js';
import type { Store } from '../stores/store.js';
import { describe } from './durations.js';
import type { TagStamp } from './entry.js';

/** Most tags on one entry. */
export const MAX_TAGS = 64;
/** Most tag versions kept in memory; the oldest learnt go first (and are read again when needed). */
const MAX_KNOWN = 10_000;

export class TagVersions {
  readonly #store: Store;
  readonly #keyOf: (tag: string) => string;
  readonly #trusted: () => boolean;
  readonly #maxLength: number;
  readonly #known = new Map<string, string>();
  /** Sequence of the last version learnt per tag: a slower read must not overwrite a newer version. */
  readonly #learntAt = new Map<string, number>();
  #seq = 0;

  constructor(store: Store, keyOf: (tag: string) => string, trusted: () => boolean, maxLength: number) {
    this.#store = store;
    this.#keyOf = keyOf;
    this.#trusted = trusted;
    this.#maxLength = maxLength;
  }

  /** The store key of a tag's version. */
  keyOf(tag: string): string {
    return this.#keyOf(tag);
  }

  /** Checks and deduplicates a list of tags (a typed error before any I/O). */
  check(tags: unknown): readonly string[] {
    if (!Array.isArray(tags)) throw new InvalidOptionError('tags', `expected an array of strings, got ${describe(tags)}`);
    if (tags.length > MAX_TAGS) throw new InvalidOptionError('tags', `at most ${MAX_TAGS} tags per entry, got ${tags.length}`);
    for (const tag of tags) {
      if (typeof tag !== 'string' || tag.length === 0 || tag.length > this.#maxLength) {
        throw new InvalidOptionError(
          'tags',
          `each tag must be a non-empty string of at most ${this.#maxLength} characters, got ${describe(tag)}`,
        );
      }
    }
    return [...new Set(tags as string[])];
  }

  /** A new version token. */
  static next(): string {
    return randomBytes(6).toString('base64url');
  }

  /**
   * The version of each tag as of this call: the local copy when trusted, else one read from the
   * store. Never a version learnt after the call began: a snapshot taken before a load must not
   * see an invalidation that happened during it (that is how the load's result is recognised as
   * stale).
   */
  async current(tags: readonly string[]): Promise<TagStamp[]> {
    const trusted = this.#trusted();
    const snapshot = tags.map((tag) => (trusted ? this.#known.get(tag) : undefined));
    const missing = tags.filter((_, i) => snapshot[i] === undefined);
    if (missing.length > 0) {
      const startedAt = this.#seq;
      const values = await this.#store.getMany(
        missing.map((tag) => this.#keyOf(tag)),
        false,
      );
      const read = new Map<string, string>();
      missing.forEach((tag, i) => {
        const value = values[i];
        const version = value === undefined ? '' : typeof value === 'string' ? value : Buffer.from(value).toString('utf8');
        read.set(tag, version);
        // Remember it, unless the copy is not trusted or a newer version arrived meanwhile.
        if (trusted && this.#trusted() && (this.#learntAt.get(tag) ?? -1) <= startedAt) this.#remember(tag, version);
      });
      return tags.map((tag, i): TagStamp => [tag, snapshot[i] ?? read.get(tag)!]);
    }
    return tags.map((tag, i): TagStamp => [tag, snapshot[i]!]);
  }

  /**
   * Whether stamps still match, from the local copy only: `true`/`false`, or `undefined` when the
   * copy is not trusted or lacks a tag (the caller then asks {@link stillValid}).
   */
  validNow(stamps: readonly TagStamp[]): boolean | undefined {
    if (!this.#trusted()) return undefined;
    for (const [tag, version] of stamps) {
      const known = this.#known.get(tag);
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

  /** A tag got a new version (invalidated here, or announced on the bus). */
  learn(tag: string, version: string): void {
    this.#remember(tag, version);
    this.#learntAt.set(tag, ++this.#seq);
    // Bound the bookkeeping: only versions learnt during reads in flight matter.
    if (this.#learntAt.size > 10_000) this.#learntAt.delete(this.#learntAt.keys().next().value!);
  }

  #remember(tag: string, version: string): void {
    this.#known.delete(tag);
    this.#known.set(tag, version);
    if (this.#known.size > MAX_KNOWN) this.#known.delete(this.#known.keys().next().value!);
  }

  /** Forget every local copy (the bus lost or regained its connection: copies may be stale). */
  forget(): void {
    this.#known.clear();
  }
}
