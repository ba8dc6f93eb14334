/**
 * The stored session record and the backend contract both stores implement (Redis through Lua
 * scripts, memory through maps), with identical semantics.
 *
 * A record is a flat field map, the same in both backends:
 * `h` secret hash · `u` user id · `x` user ref · `c` created · `l` last seen · `a` absolute
 * deadline · `ip`, `ua` · `v` data version (bumped by every data write) · `n` successor id and
 * `g` grace end (a rotated-away token) ·
 * `d:<key>` one JSON value per top-level data key (so concurrent writes of different keys merge).
 *
 * A tombstone (`h` secret hash · `u` user id · `x` user ref · `r` set once the expiry was
 * reported · `k` how the session ended early: `revoked` or `rotated`) is written with every
 * session and lives until its absolute deadline, the longest the cookie can come back. When the
 * session itself is gone from the store (its TTL is its deadline), the tombstone tells an expired
 * token from an unknown one; revocation and rotation mark it (`k`) rather than delete it, so a
 * revoked or rotated-away token, still refused, is told from a guess (it names a session that
 * existed, with that session's own secret) and is not counted as brute force.
 *
 * @module
 */
import type { SessionRef, UserRef } from './keys.js';

export const DATA_PREFIX = 'd:';

export interface SessionRecord {
  readonly id: string;
  readonly tag: string;
  readonly hash: string;
  readonly userId: string;
  readonly uref: string;
  readonly createdAt: number;
  readonly lastSeenAt: number;
  readonly absoluteAt: number;
  readonly ip: string | undefined;
  readonly userAgent: string | undefined;
  readonly successor: string | undefined;
  readonly graceUntil: number | undefined;
  /** Data version: bumped by every data write. */
  readonly version: number;
  /** Data key → JSON text. */
  readonly data: ReadonlyMap<string, string>;
}

/** Builds a record from stored fields; `undefined` when required fields are missing or damaged. */
export function recordFrom(ref: SessionRef, fields: ReadonlyMap<string, string>): SessionRecord | undefined {
  const hash = fields.get('h');
  const userId = fields.get('u');
  const uref = fields.get('x');
  const createdAt = Number(fields.get('c'));
  const lastSeenAt = Number(fields.get('l'));
  const absoluteAt = Number(fields.get('a'));
  if (hash === undefined || userId === undefined || uref === undefined) return undefined;
  if (!Number.isFinite(createdAt) || !Number.isFinite(lastSeenAt) || !Number.isFinite(absoluteAt)) return undefined;
  const version = Number(fields.get('v') ?? '0');
  const graceText = fields.get('g');
  const graceUntil = graceText === undefined ? undefined : Number(graceText);
  const data = new Map<string, string>();
  for (const [field, value] of fields) {
    if (field.startsWith(DATA_PREFIX)) data.set(field.slice(DATA_PREFIX.length), value);
  }
  return {
    id: ref.id,
    tag: ref.tag,
    hash,
    userId,
    uref,
    createdAt,
    lastSeenAt,
    absoluteAt,
    ip: fields.get('ip'),
    userAgent: fields.get('ua'),
    successor: fields.get('n'),
    graceUntil: graceUntil !== undefined && Number.isFinite(graceUntil) ? graceUntil : undefined,
    version: Number.isSafeInteger(version) ? version : -1,
    data,
  };
}

/** What is left of a session past its deadline: enough to say "expired" to its own token only. */
export interface Tombstone {
  readonly hash: string;
  readonly userId: string;
  readonly uref: string;
  /** The expiry was already reported (by a validation or an index prune). */
  readonly reported: boolean;
  /** The session did not expire: it was revoked, or rotated away. */
  readonly ended: EndedBy | undefined;
}

/** How a session ended before its deadline, as its tombstone's `k` field records it. */
export type EndedBy = 'revoked' | 'rotated';

function endedBy(value: string | undefined): EndedBy | undefined {
  return value === 'revoked' || value === 'rotated' ? value : undefined;
}

export function tombstoneFrom(fields: ReadonlyMap<string, string>): Tombstone | undefined {
  const hash = fields.get('h');
  const userId = fields.get('u');
  const uref = fields.get('x');
  if (hash === undefined || userId === undefined || uref === undefined) return undefined;
  return { hash, userId, uref, reported: fields.has('r'), ended: endedBy(fields.get('k')) };
}

/** A session in a user's listing (no hash, no data). */
export interface ListedRecord {
  readonly id: string;
  readonly createdAt: number;
  readonly lastSeenAt: number;
  readonly absoluteAt: number;
  readonly expiresAt: number;
  readonly ip: string | undefined;
  readonly userAgent: string | undefined;
}

export interface CreateInput {
  readonly user: UserRef;
  readonly userId: string;
  readonly id: string;
  readonly hash: string;
  readonly now: number;
  readonly absoluteAt: number;
  /** min(now + idle, absoluteAt): the store TTL and the index score. */
  readonly expiresAt: number;
  readonly ip: string | undefined;
  readonly userAgent: string | undefined;
  readonly data: ReadonlyMap<string, string>;
  /** `Infinity`: no limit. */
  readonly limit: number;
  readonly onLimit: 'evict-oldest' | 'reject';
  /** Refuse unless the user's epoch is still this. */
  readonly epoch: number | undefined;
}

export interface CreateOutcome {
  readonly status: 'ok' | 'limit' | 'epoch' | 'collision';
  /** Index members found expired (pruned). */
  readonly expired: readonly string[];
  /** Sessions revoked to make room (`evict-oldest`). */
  readonly evicted: readonly string[];
}

export interface TouchInput {
  readonly ref: SessionRef;
  readonly user: UserRef;
  readonly now: number;
  /** Skip the write when the stored last-seen time is more recent than `now - interval`. */
  readonly interval: number;
  readonly expiresAt: number;
  readonly ip: string | undefined;
  readonly userAgent: string | undefined;
}

export interface TouchOutcome {
  readonly touched: boolean;
  readonly expired: readonly string[];
}

export interface RotateInput {
  readonly old: SessionRef;
  readonly user: UserRef;
  readonly id: string;
  readonly hash: string;
  readonly now: number;
  readonly expiresAt: number;
  /** `0`: the old token dies now. */
  readonly graceUntil: number;
  readonly ip: string | undefined;
  readonly userAgent: string | undefined;
}

export interface UpdateInput {
  readonly ref: SessionRef;
  readonly set: ReadonlyMap<string, string>;
  readonly remove: readonly string[];
  readonly limits: { readonly maxBytes: number; readonly maxKeys: number };
  /** Write only if the data version is still this (no write came in between); `undefined`: any. */
  readonly expectedVersion: number | undefined;
  readonly now: number;
}

export interface UpdateOutcome {
  /** `conflict`: another write changed the data since `expectedVersion`; nothing was written. */
  readonly status: 'ok' | 'gone' | 'rotated' | 'too-large' | 'conflict';
  /** The data version after the write (`ok`), or the current one (`conflict`). */
  readonly version: number;
}
export type RotateOutcome = 'ok' | 'gone' | 'rotated' | 'collision';

/** A token's record and tombstone, read together (see `SessionBackend.lookup`). */
export type Lookup =
  | { readonly record: SessionRecord; readonly tombstone?: undefined }
  // The tombstone is only decoded when there is no record: a live session never needs it.
  | { readonly record: undefined; readonly tombstone: Tombstone | undefined };

export interface SessionBackend {
  /** The record, or `undefined`. Never writes. */
  read(ref: SessionRef, now: number): Promise<SessionRecord | undefined>;
  /**
   * The record and the session's tombstone (kept until the absolute deadline), read together: one
   * round trip on Redis, so a token whose session is gone (or never was) is answered as fast as a
   * live one with a wrong secret, and validate's timing does not tell them apart. Never writes.
   */
  lookup(ref: SessionRef, now: number): Promise<Lookup>;
  create(input: CreateInput): Promise<CreateOutcome>;
  /** Renews last-seen and TTL only if the session exists and is due; prunes the user's index. */
  touch(input: TouchInput): Promise<TouchOutcome>;
  /**
   * Writes and deletes data fields only if the session exists (and, given an expected version,
   * only if no other write came in between); enforces the limits atomically; bumps the version.
   */
  update(input: UpdateInput): Promise<UpdateOutcome>;
  rotate(input: RotateInput): Promise<RotateOutcome>;
  /**
   * Deletes the session (and, for a rotated-away token, its successor) and marks the tombstone of
   * each one deleted `revoked`. Returns the ids deleted.
   */
  remove(ref: SessionRef, user: UserRef, now: number): Promise<string[]>;
  /**
   * Deletes a session found past a deadline (or already gone from the store) and marks its
   * tombstone reported; `true` only for the one caller that reports the expiry.
   */
  expire(ref: SessionRef, user: UserRef, now: number): Promise<boolean>;
  /**
   * Deletes every session of the user except `keep` (tombstones marked `revoked`, or reported for
   * the members already expired); bumps the epoch when asked.
   */
  removeAll(
    user: UserRef,
    now: number,
    keep: string | undefined,
    bumpEpoch: boolean,
    epochTtl: number,
  ): Promise<{ revoked: string[]; expired: string[] }>;
  /** The user's live sessions, after pruning expired index members. */
  list(user: UserRef, now: number): Promise<{ sessions: ListedRecord[]; expired: string[] }>;
  epoch(user: UserRef, now: number): Promise<number>;
}
