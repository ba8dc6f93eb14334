/**
 * Session manager options: each one documented once, here, with its default, its unit (ms for
 * every duration) and what `0` / `Infinity` mean. Resolved once, in {@link resolveOptions}, into
 * a frozen object; the manager never mutates it.
 *
 * @see docs/sessions.md
 * @module
 */
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { systemClock, type Clock } from '../core/clock.js';
import { checkCount, checkDuration, describe } from '../core/durations.js';
import { InvalidOptionError } from '../errors.js';
import { MemoryStore } from '../stores/memory.js';
import { RedisStore } from '../stores/redis-store.js';
import type { Store } from '../stores/store.js';

export interface BruteForceOptions {
  /**
   * Invalid tokens from one IP (or wrong secrets for one session id) within `windowMs` that
   * raise a `brute-force` event. The event fires once per window and subject.
   * @default 100
   */
  threshold?: number;
  /**
   * Length of the counting window, in ms.
   * @default 60_000
   */
  windowMs?: number;
}

export interface SessionOptions<D extends object = Record<string, unknown>> {
  /**
   * Where sessions live: the same `redisStore()` / `ioredisStore()` the cache uses (sessions
   * then run as Lua scripts, one hash slot per user), or `memoryStore()` for a single process
   * (same semantics, kept in this process).
   * @see docs/sessions.md
   */
  store: Store;
  /**
   * Server secret(s), each at least 32 characters: derive the per-user hash tag (so tokens carry
   * nothing about the user) and sign CSRF tokens. Pass an array to rotate: the first signs and
   * tags new sessions, the others are still accepted. Required with a Redis store, where it must
   * be the same in every process; with `memoryStore()` a random one is used when omitted.
   */
  secret?: string | readonly string[];
  /**
   * First segment of every session key: `<namespace>:{<tag>}:s:<id>`. 1-64 characters from
   * `[A-Za-z0-9_.-]`.
   * @default 'sessions'
   */
  namespace?: string;
  /**
   * Idle (sliding) timeout, in ms: a session not used for this long is over. Enforced from the
   * stored last-seen time, whatever the store's TTL says.
   * @default 1_800_000 (30 minutes)
   */
  idleTimeout?: number;
  /**
   * Absolute timeout, in ms: a session is over this long after it was created, however active.
   * Rotation keeps the creation time. Must be at least `idleTimeout`.
   * @default 43_200_000 (12 hours)
   */
  absoluteTimeout?: number;
  /**
   * Sliding renewal throttle, in ms: a session's last-seen time (and TTL) is written at most once
   * per interval, never past the absolute deadline. `0`: on every validation.
   * @default Math.min(idleTimeout / 10, 3_600_000)
   */
  touchInterval?: number;
  /**
   * After `rotate()`, how long the previous token keeps working for requests already in flight,
   * in ms. Within the window it validates to the new session and may log out (ending the new
   * session too), but it is read-only: `update`, `rotate`, `revokeOthers` and `csrfToken` throw
   * `SessionInvalidError` (reason `rotated`). `0`: it dies at once. At most 60_000.
   * @default 0
   * @see docs/sessions.md
   */
  rotationGrace?: number;
  /**
   * Most concurrent sessions per user. `Infinity`: no limit.
   * @default Infinity
   */
  maxSessionsPerUser?: number;
  /**
   * What `create()` does at the limit: `'evict-oldest'` revokes the user's earliest-created
   * sessions (reason `'limit'`); `'reject'` throws a `SessionLimitError`. Atomic either way.
   * @default 'evict-oldest'
   */
  onLimit?: 'evict-oldest' | 'reject';
  /**
   * A Standard Schema (zod, valibot, arktype, …) for session data, checked on every write
   * (`create`, `update`; an update's merged result, compare-and-set against concurrent updates)
   * and on every read. Its output is what is stored and returned. A failing write throws a
   * `SessionDataError`; a stored session that fails it is refused (`invalid-data`), not deleted.
   * @see docs/sessions.md
   */
  schema?: StandardSchemaV1<unknown, D>;
  /**
   * Most bytes of session data (keys plus JSON values, UTF-8). Larger writes throw a
   * `SessionDataError`; enforced atomically in the store too.
   * @default 16_384
   */
  maxDataBytes?: number;
  /**
   * Most top-level keys in session data.
   * @default 64
   */
  maxDataKeys?: number;
  /**
   * Brute-force signal: counts invalid tokens per client IP and wrong secrets per session id
   * (in this process) and emits `brute-force` at the threshold. `false` turns counting off
   * (`invalid` events are still emitted).
   * @default { threshold: 100, windowMs: 60_000 }
   */
  bruteForce?: BruteForceOptions | false;
  /** Time source for every timestamp and deadline. @default the system clock */
  clock?: Clock;
}

/** The resolved options as `sessions.options` shows them: everything but the secrets. */
export type SessionSettings<D extends object> = Omit<ResolvedSessionOptions<D>, 'secrets'>;

export interface ResolvedSessionOptions<D extends object> {
  readonly store: RedisStore | MemoryStore;
  readonly secrets: readonly string[];
  readonly namespace: string;
  readonly idleTimeout: number;
  readonly absoluteTimeout: number;
  readonly touchInterval: number;
  readonly rotationGrace: number;
  readonly maxSessionsPerUser: number;
  readonly onLimit: 'evict-oldest' | 'reject';
  readonly schema: StandardSchemaV1<unknown, D> | undefined;
  readonly maxDataBytes: number;
  readonly maxDataKeys: number;
  readonly bruteForce: { readonly threshold: number; readonly windowMs: number } | false;
  readonly clock: Clock;
}

const NAMESPACE = /^[A-Za-z0-9_.-]{1,64}$/;
export const MIN_SECRET_LENGTH = 32;
const MAX_GRACE = 60_000;

function resolveSecrets(value: unknown, store: RedisStore | MemoryStore, generate: () => string): readonly string[] {
  if (value === undefined) {
    if (store instanceof RedisStore) {
      throw new InvalidOptionError(
        'secret',
        'required with a Redis store (the same in every process): at least 32 characters, e.g. from `openssl rand -base64 32`',
      );
    }
    return [generate()];
  }
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length === 0)
    throw new InvalidOptionError('secret', 'expected a string or a non-empty array of strings');
  for (const secret of list as unknown[]) {
    if (typeof secret !== 'string' || secret.length < MIN_SECRET_LENGTH) {
      throw new InvalidOptionError('secret', `each secret must be a string of at least ${MIN_SECRET_LENGTH} characters`);
    }
  }
  return Object.freeze([...(list as string[])]);
}

/** Checks and freezes the options; throws `InvalidOptionError` for anything it cannot honour. */
export function resolveOptions<D extends object>(
  options: SessionOptions<D>,
  generateSecret: () => string,
): ResolvedSessionOptions<D> {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', 'expected an object');
  const store = options.store;
  if (!(store instanceof RedisStore) && !(store instanceof MemoryStore)) {
    throw new InvalidOptionError('store', 'sessions need `redisStore()`, `ioredisStore()` or `memoryStore()` from Larder');
  }
  const namespace = options.namespace ?? 'sessions';
  if (typeof namespace !== 'string' || !NAMESPACE.test(namespace)) {
    throw new InvalidOptionError('namespace', `expected 1-64 characters from [A-Za-z0-9_.-], got ${describe(namespace)}`);
  }
  const idleTimeout =
    options.idleTimeout === undefined ? 1_800_000 : checkDuration('idleTimeout', options.idleTimeout, { zero: false });
  const absoluteTimeout =
    options.absoluteTimeout === undefined
      ? 43_200_000
      : checkDuration('absoluteTimeout', options.absoluteTimeout, { zero: false });
  if (absoluteTimeout < idleTimeout) {
    throw new InvalidOptionError('absoluteTimeout', `must be at least idleTimeout (${idleTimeout} ms)`);
  }
  const touchInterval =
    options.touchInterval === undefined
      ? Math.min(Math.floor(idleTimeout / 10), 3_600_000)
      : checkDuration('touchInterval', options.touchInterval);
  if (touchInterval >= idleTimeout) {
    throw new InvalidOptionError('touchInterval', `must be shorter than idleTimeout (${idleTimeout} ms)`);
  }
  const rotationGrace = options.rotationGrace === undefined ? 0 : checkDuration('rotationGrace', options.rotationGrace);
  if (rotationGrace > MAX_GRACE) throw new InvalidOptionError('rotationGrace', `at most ${MAX_GRACE} ms`);
  const maxSessionsPerUser =
    options.maxSessionsPerUser === undefined || options.maxSessionsPerUser === Infinity
      ? Infinity
      : checkCount('maxSessionsPerUser', options.maxSessionsPerUser);
  const onLimit = options.onLimit ?? 'evict-oldest';
  if (onLimit !== 'evict-oldest' && onLimit !== 'reject') {
    throw new InvalidOptionError('onLimit', `expected 'evict-oldest' or 'reject', got ${describe(onLimit)}`);
  }
  const schema = options.schema;
  if (schema !== undefined && (typeof schema !== 'object' || schema === null || !('~standard' in schema))) {
    throw new InvalidOptionError('schema', 'expected a Standard Schema (zod, valibot, arktype, …)');
  }
  const maxDataBytes = options.maxDataBytes === undefined ? 16_384 : checkCount('maxDataBytes', options.maxDataBytes);
  const maxDataKeys = options.maxDataKeys === undefined ? 64 : checkCount('maxDataKeys', options.maxDataKeys);
  let bruteForce: ResolvedSessionOptions<D>['bruteForce'] = { threshold: 100, windowMs: 60_000 };
  if (options.bruteForce === false) bruteForce = false;
  else if (options.bruteForce !== undefined) {
    if (typeof options.bruteForce !== 'object' || options.bruteForce === null) {
      throw new InvalidOptionError('bruteForce', 'expected an options object or false');
    }
    bruteForce = Object.freeze({
      threshold:
        options.bruteForce.threshold === undefined ? 100 : checkCount('bruteForce.threshold', options.bruteForce.threshold),
      windowMs:
        options.bruteForce.windowMs === undefined
          ? 60_000
          : checkDuration('bruteForce.windowMs', options.bruteForce.windowMs, { zero: false }),
    });
  }
  const clock = options.clock ?? systemClock;
  if (typeof clock !== 'object' || clock === null || typeof clock.now !== 'function') {
    throw new InvalidOptionError('clock', 'expected an object with a now() method');
  }
  return Object.freeze({
    store,
    secrets: resolveSecrets(options.secret, store, generateSecret),
    namespace,
    idleTimeout,
    absoluteTimeout,
    touchInterval,
    rotationGrace,
    maxSessionsPerUser,
    onLimit,
    schema,
    maxDataBytes,
    maxDataKeys,
    bruteForce,
    clock,
  });
}
