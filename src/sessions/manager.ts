/**
 * The session manager: tokens, lifetimes, rotation, revocation, listing, limits and data, over
 * a Redis or memory backend with identical semantics. Promise-first; every method is safe to
 * call concurrently, from any number of processes sharing the store.
 *
 * @see docs/sessions.md
 * @module
 */
import { createHmac, randomBytes } from 'node:crypto';
import {
  ClosedError,
  InvalidOptionError,
  SessionDataError,
  SessionInvalidError,
  SessionLimitError,
  SessionStoreError,
  isLarderError,
} from '../errors.js';
import { RedisStore } from '../stores/redis-store.js';
import { AttemptCounter } from './brute-force.js';
import { checkKey, checkSchema, decodeData, diffData, encodeData, isPlainObject, type DataLimits } from './data.js';
import { SessionEmitter, type RevokeReason, type SecurityEvent, type SessionEventMap, type SessionEventName } from './events.js';
import { KeyLayout, userRef, type SessionRef, type UserRef } from './keys.js';
import { MemorySessionBackend } from './memory-backend.js';
import { resolveOptions, type ResolvedSessionOptions, type SessionOptions, type SessionSettings } from './options.js';
import type { SessionBackend, SessionRecord, Tombstone } from './record.js';
import { RedisSessionBackend } from './redis-backend.js';
import { constantTimeEqual, formatToken, hashSecret, isSessionId, newId, newSecret, parseToken, secretMatches } from './token.js';

/** A validated session, as handlers see it. Immutable: writes return a new object. */
export interface Session<D extends object = Record<string, unknown>> {
  /** The session id: the non-secret part of the token, safe to log and show. */
  readonly id: string;
  readonly userId: string;
  readonly data: Readonly<D>;
  /** ms since the epoch. */
  readonly createdAt: number;
  /** Last renewal (throttled by `touchInterval`), ms since the epoch. */
  readonly lastSeenAt: number;
  /** When the session ends unless used again: the earlier of the idle and absolute deadlines. */
  readonly expiresAt: number;
  /** When the session ends however active it is. */
  readonly absoluteExpiresAt: number;
  /** Client IP at the last renewal, when the caller passed one. */
  readonly ip: string | undefined;
  /** User agent at the last renewal, when the caller passed one. */
  readonly userAgent: string | undefined;
}

/** A new session and its token. The token is the only copy of the secret: hand it to the client. */
export interface IssuedSession<D extends object = Record<string, unknown>> {
  readonly token: string;
  readonly session: Session<D>;
}

export type ValidationResult<D extends object = Record<string, unknown>> =
  | {
      readonly valid: true;
      readonly session: Session<D>;
      /** The session's last-seen time and TTL were just extended. */
      readonly renewed: boolean;
      /** The token was rotated away and is within its grace window; `session` is its successor. */
      readonly grace: boolean;
    }
  | {
      readonly valid: false;
      /**
       * `missing`: no token. `malformed`: not a Larder token (no store command sent). `unknown`: no
       * such session (never issued, revoked, rotated away, past its absolute deadline), or a wrong
       * secret. `expired`: past a deadline (reported until the absolute deadline, which is also
       * the cookie's lifetime). `invalid-data`: the session's stored data does not fit the schema
       * (it is refused, not deleted).
       */
      readonly reason: 'missing' | 'malformed' | 'unknown' | 'expired' | 'invalid-data';
    };

/** Who is asking: recorded on the session and used to count brute-force attempts. */
export interface RequestMeta {
  /** Client IP (at most 64 characters are kept). */
  ip?: string | undefined;
  /** User agent (at most 512 characters are kept). */
  userAgent?: string | undefined;
}

export type CreateOptions<D extends object> = RequestMeta & {
  /**
   * Refuse (`SessionInvalidError`, reason `epoch`) if `revokeAllForUser` ran since this value was
   * read with `userEpoch()`: read it before checking credentials so a login racing a password
   * change cannot survive it.
   */
  epoch?: number;
} & ({} extends D ? { /** Initial data. @default {} */ data?: D } : { /** Initial data. */ data: D });

/** Checks a user's credentials; resolve `false` to refuse the login. */
export type VerifyCredentials = () => boolean | Promise<boolean>;

export type LoginWithVerifyOptions<D extends object> = Omit<CreateOptions<D>, 'epoch'> & {
  /**
   * Checks the credentials, after the user's revocation epoch was read: if `revokeAllForUser`
   * (a password change) lands while it runs, the login fails (`SessionInvalidError`, reason
   * `epoch`) instead of creating a session the password change should have ended. Load what it
   * checks (the password hash) inside it, not before.
   */
  verify: VerifyCredentials;
};

export interface ValidateOptions extends RequestMeta {
  /**
   * Renew the idle deadline when due (at most once per `touchInterval`).
   * @default true
   */
  touch?: boolean;
}

export interface RevokeOptions {
  /** Carried by the `revoked` event. @default 'logout' */
  reason?: RevokeReason;
}

export interface RevokeAllOptions {
  /** Carried by the `revoked` events. @default 'revoke-all' */
  reason?: RevokeReason;
  /** A session (or session id) to keep. */
  except?: Session<object> | string;
}

export interface ListOptions {
  /** The caller's own session (or its id), flagged `current: true`. */
  current?: Session<object> | string;
}

/** One of a user's sessions, for a "your devices" page. Never contains the token or its hash. */
export interface SessionInfo {
  readonly id: string;
  readonly createdAt: number;
  readonly lastSeenAt: number;
  readonly expiresAt: number;
  readonly absoluteExpiresAt: number;
  readonly ip: string | undefined;
  readonly userAgent: string | undefined;
  readonly current: boolean;
}

/** Partial data for `update()`: a key set to `undefined` is deleted. */
export type SessionPatch<D extends object> = { [K in keyof D]?: D[K] | undefined };

interface Internal {
  readonly tag: string;
  readonly uref: string;
  readonly fields: ReadonlyMap<string, string>;
  /** The data version `fields` were read at. */
  readonly version: number;
  /** Reached through a rotated-away token in its grace window: reads only. */
  readonly readOnly: boolean;
}

const MAX_USER_ID = 512;
/** Compare-and-set rounds for one `update()` with a schema before giving up. */
const MAX_UPDATE_ATTEMPTS = 10;
const MAX_IP = 64;
const MAX_UA = 512;
const CSRF_TOKEN = /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;

function clip(value: string | undefined, max: number): string | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  // Control characters never reach the store (nor a page listing sessions).
  // oxlint-disable-next-line no-control-regex
  const clean = value.replace(/[\u0000-\u001f\u007f]/g, '');
  return clean === '' ? undefined : clean.slice(0, max);
}

function checkUserId(userId: unknown): string {
  if (typeof userId !== 'string' || userId.length === 0 || userId.length > MAX_USER_ID) {
    throw new InvalidOptionError('userId', `expected a string of 1-${MAX_USER_ID} characters`);
  }
  return userId;
}

/** Manages sessions over one store. Create it with {@link createSessions}. */
export class SessionManager<D extends object = Record<string, unknown>> {
  readonly #options: ResolvedSessionOptions<D>;
  readonly #settings: SessionSettings<D>;
  readonly #backend: SessionBackend;
  readonly #events = new SessionEmitter();
  readonly #internals = new WeakMap<object, Internal>();
  readonly #touches = new Map<string, Promise<boolean>>();
  readonly #limits: DataLimits;
  readonly #perIp: AttemptCounter | undefined;
  readonly #perId: AttemptCounter | undefined;
  #closed = false;

  constructor(options: SessionOptions<D>) {
    this.#options = resolveOptions(options, () => randomBytes(32).toString('base64url'));
    const { secrets: _secrets, ...settings } = this.#options;
    this.#settings = Object.freeze(settings);
    const keys = new KeyLayout(this.#options.namespace);
    const store = this.#options.store;
    this.#backend = store instanceof RedisStore ? new RedisSessionBackend(store, keys) : new MemorySessionBackend(store, keys);
    this.#limits = { maxBytes: this.#options.maxDataBytes, maxKeys: this.#options.maxDataKeys };
    const bf = this.#options.bruteForce;
    if (bf !== false) {
      this.#perIp = new AttemptCounter(bf.threshold, bf.windowMs, this.#options.clock);
      this.#perId = new AttemptCounter(bf.threshold, bf.windowMs, this.#options.clock);
    }
    this.#events.setMaxListeners(0);
  }

  /** The resolved options (frozen), without the secrets. */
  get options(): SessionSettings<D> {
    return this.#settings;
  }

  on<K extends SessionEventName>(name: K, listener: (event: SessionEventMap[K][0]) => void): this {
    this.#events.on(name, listener as never);
    return this;
  }

  off<K extends SessionEventName>(name: K, listener: (event: SessionEventMap[K][0]) => void): this {
    this.#events.off(name, listener as never);
    return this;
  }

  /** Emits a `security` event: used by the HTTP layer (cookie tossing, CSRF refusals), and open to apps. */
  reportSecurityEvent(event: SecurityEvent): void {
    this.#events.fire('security', event);
  }

  // ---------------------------------------------------------------------------------------------
  // Issuing

  /**
   * Starts a session for `userId` and returns it with its token. Enforces `maxSessionsPerUser`
   * atomically; validates data against the schema and limits first.
   */
  async create(
    userId: string,
    ...[options]: {} extends D ? [options?: CreateOptions<D>] : [options: CreateOptions<D>]
  ): Promise<IssuedSession<D>> {
    this.#open();
    checkUserId(userId);
    const opts = (options ?? {}) as CreateOptions<D> & { data?: D };
    if (opts.epoch !== undefined && !(Number.isInteger(opts.epoch) && opts.epoch >= 0)) {
      throw new InvalidOptionError('epoch', 'expected a value returned by userEpoch()');
    }
    const value = await checkSchema(this.#options.schema, opts.data ?? {});
    const fields = encodeData(value, this.#limits);
    const user = userRef(this.#options.secrets[0]!, userId);
    const ip = clip(opts.ip, MAX_IP);
    const userAgent = clip(opts.userAgent, MAX_UA);
    for (let attempt = 0; ; attempt++) {
      const id = newId();
      const secret = newSecret();
      const now = this.#options.clock.now();
      const absoluteAt = now + this.#options.absoluteTimeout;
      const expiresAt = Math.min(now + this.#options.idleTimeout, absoluteAt);
      const outcome = await this.#call('create', () =>
        this.#backend.create({
          user,
          userId,
          id,
          hash: hashSecret(secret),
          now,
          absoluteAt,
          expiresAt,
          ip,
          userAgent,
          data: fields,
          limit: this.#options.maxSessionsPerUser,
          onLimit: this.#options.onLimit,
          epoch: opts.epoch,
        }),
      );
      this.#expiredByPrune(userId, outcome.expired);
      if (outcome.status === 'collision' && attempt < 3) continue;
      if (outcome.status === 'limit') throw new SessionLimitError(this.#options.maxSessionsPerUser);
      if (outcome.status === 'epoch') {
        throw new SessionInvalidError('epoch', 'revokeAllForUser ran during this login: the session was not created');
      }
      if (outcome.status !== 'ok') throw new SessionStoreError('create', { cause: new Error(`unexpected ${outcome.status}`) });
      for (const evicted of outcome.evicted) this.#events.fire('revoked', { id: evicted, userId, reason: 'limit' });
      this.#events.fire('created', { id, userId });
      const session = this.#session(
        {
          id,
          tag: user.tag,
          hash: '',
          userId,
          uref: user.uref,
          createdAt: now,
          lastSeenAt: now,
          absoluteAt,
          ip,
          userAgent,
          successor: undefined,
          graceUntil: undefined,
          version: 0,
          data: fields,
        },
        value,
      );
      return { token: formatToken(user.tag, id, secret), session };
    }
  }

  /**
   * Checks credentials and starts a session, safe against a racing `revokeAllForUser`: reads the
   * user's epoch, runs `verify`, then creates the session only if the epoch has not moved.
   * Resolves `undefined` (and creates nothing) when `verify` resolves `false`; throws
   * `SessionInvalidError` (reason `epoch`) when a revoke-all ran meanwhile.
   *
   * @example
   * const issued = await sessions.login(user.id, {
   *   verify: async () => checkPassword(await db.passwordHash(user.id), password),
   * });
   * if (issued === undefined) return unauthorized();
   */
  async login(userId: string, options: LoginWithVerifyOptions<D>): Promise<IssuedSession<D> | undefined> {
    this.#open();
    const { verify, ...rest } = options;
    if (typeof verify !== 'function') throw new InvalidOptionError('verify', 'expected a function checking the credentials');
    const epoch = await this.userEpoch(userId);
    // Only `true` logs in (not a truthy value from untyped code).
    const verified: unknown = await verify();
    if (verified !== true) return undefined;
    // `create`'s rest parameter is conditional on D; here the options are known to fit it.
    const self = this as unknown as { create(userId: string, options: CreateOptions<D>): Promise<IssuedSession<D>> };
    return self.create(userId, { ...rest, epoch } as CreateOptions<D>);
  }

  // ---------------------------------------------------------------------------------------------
  // Validating

  /**
   * Checks a token: format first (a malformed token sends no store command), then the record by
   * id, the secret in constant time, and both deadlines from the stored timestamps. Renews the
   * idle deadline when due. Never throws for a bad token; throws `SessionStoreError` when the
   * store cannot answer (fail closed).
   */
  async validate(token: string | undefined | null, options: ValidateOptions = {}): Promise<ValidationResult<D>> {
    this.#open();
    if (token === undefined || token === null || token === '') return { valid: false, reason: 'missing' };
    const ip = clip(options.ip, MAX_IP);
    const parsed = parseToken(token);
    if (parsed === undefined) {
      this.#invalid('malformed', undefined, ip);
      return { valid: false, reason: 'malformed' };
    }
    const now = this.#options.clock.now();
    const { record, tombstone } = await this.#call('validate', () => this.#backend.lookup(parsed, now));
    if (record === undefined) return this.#missing(parsed, tombstone, now, ip);
    if (!secretMatches(parsed.secret, record.hash)) {
      this.#invalid('mismatch', parsed.id, ip);
      return { valid: false, reason: 'unknown' };
    }
    if (record.successor !== undefined) return this.#viaGrace(record, now, ip);
    if (now >= this.#deadline(record)) return this.#expire(record, now);
    const data = await this.#data(record);
    if (data === undefined) return this.#unfit(record, ip);
    let current = record;
    if (options.touch !== false && now - record.lastSeenAt >= this.#options.touchInterval) {
      const touched = await this.#touch(record, now, ip, clip(options.userAgent, MAX_UA));
      if (touched) current = { ...record, lastSeenAt: now };
      return { valid: true, session: this.#session(current, data), renewed: touched, grace: false };
    }
    return { valid: true, session: this.#session(current, data), renewed: false, grace: false };
  }

  /** The stored data through the schema (its output); `undefined` when it does not fit. */
  async #data(record: SessionRecord): Promise<Readonly<D> | undefined> {
    const decoded = decodeData(record.data);
    if (this.#options.schema === undefined) return decoded as D;
    try {
      return await checkSchema(this.#options.schema, decoded);
    } catch (error) {
      if (isLarderError(error, 'E_SESSION_DATA')) return undefined;
      throw error;
    }
  }

  /**
   * A session whose stored data the schema rejects (written by another version of the app, by
   * hand, or before this check existed) is refused, never handed out as `D`; it is left in the
   * store untouched (a schema rolled back finds it again) and ends at its deadline.
   */
  #unfit(record: SessionRecord, ip: string | undefined): ValidationResult<D> {
    this.#events.fire('invalid', ip === undefined ? { reason: 'data', id: record.id } : { reason: 'data', id: record.id, ip });
    return { valid: false, reason: 'invalid-data' };
  }

  /**
   * No record: an expired session whose key the store already dropped (its tombstone says so,
   * for its own secret only), a revoked or rotated-away one (its tombstone is marked: refused as
   * unknown, but a stale cookie, not a guess), or an unknown token.
   */
  async #missing(
    parsed: SessionRef & { secret: string },
    grave: Tombstone | undefined,
    now: number,
    ip: string | undefined,
  ): Promise<ValidationResult<D>> {
    if (grave === undefined) {
      this.#invalid('unknown', parsed.id, ip);
      return { valid: false, reason: 'unknown' };
    }
    if (!secretMatches(parsed.secret, grave.hash)) {
      this.#invalid('mismatch', parsed.id, ip);
      return { valid: false, reason: 'unknown' };
    }
    if (grave.ended !== undefined) {
      this.#invalid(grave.ended, parsed.id, ip);
      return { valid: false, reason: 'unknown' };
    }
    if (!grave.reported) {
      const user = { tag: parsed.tag, uref: grave.uref };
      const first = await this.#call('expire', () => this.#backend.expire(parsed, user, now));
      if (first) this.#events.fire('expired', { id: parsed.id, userId: grave.userId, detectedBy: 'validate' });
    }
    return { valid: false, reason: 'expired' };
  }

  async #viaGrace(record: SessionRecord, now: number, ip: string | undefined): Promise<ValidationResult<D>> {
    if (record.graceUntil === undefined || now >= record.graceUntil || !isSessionId(record.successor)) {
      this.#invalid('rotated', record.id, ip);
      return { valid: false, reason: 'unknown' };
    }
    const successorId = record.successor;
    const next = await this.#call('validate', () => this.#backend.read({ tag: record.tag, id: successorId }, now));
    if (next === undefined || next.userId !== record.userId || next.successor !== undefined) {
      this.#invalid('rotated', record.id, ip);
      return { valid: false, reason: 'unknown' };
    }
    if (now >= this.#deadline(next)) return this.#expire(next, now);
    const data = await this.#data(next);
    if (data === undefined) return this.#unfit(next, ip);
    return { valid: true, session: this.#session(next, data, true), renewed: false, grace: true };
  }

  async #expire(record: SessionRecord, now: number): Promise<ValidationResult<D>> {
    const removed = await this.#call('expire', () => this.#backend.expire(record, { tag: record.tag, uref: record.uref }, now));
    if (removed) this.#events.fire('expired', { id: record.id, userId: record.userId, detectedBy: 'validate' });
    return { valid: false, reason: 'expired' };
  }

  /** One renewal per session at a time in this process; the script re-checks the interval. */
  #touch(record: SessionRecord, now: number, ip: string | undefined, userAgent: string | undefined): Promise<boolean> {
    const pending = this.#touches.get(record.id);
    if (pending !== undefined) return pending.then(() => false);
    const user = { tag: record.tag, uref: record.uref };
    const promise = this.#call('touch', () =>
      this.#backend.touch({
        ref: record,
        user,
        now,
        interval: this.#options.touchInterval,
        expiresAt: Math.min(now + this.#options.idleTimeout, this.#absolute(record)),
        ip,
        userAgent,
      }),
    )
      .then((outcome) => {
        this.#expiredByPrune(record.userId, outcome.expired);
        return outcome.touched;
      })
      .catch((error: unknown) => {
        // The session was valid; a failed renewal only leaves its deadline where it was.
        this.#events.fire('store-error', { operation: 'touch', error });
        return false;
      })
      .finally(() => this.#touches.delete(record.id));
    this.#touches.set(record.id, promise);
    return promise;
  }

  // ---------------------------------------------------------------------------------------------
  // Changing

  /**
   * Writes data keys (a key set to `undefined` is deleted), only if the session still exists:
   * a request finishing after logout cannot bring it back. Only keys whose value changed are
   * written, so concurrent updates of different keys both survive. With a schema, the write is
   * a compare-and-set on the data version: if another write came in since `session` was read,
   * the patch is merged again onto the stored data and the schema checks that merge, so two
   * updates each valid alone can never store data the schema rejects (the second one throws
   * `SessionDataError` instead). Refused (`SessionInvalidError`, reason `rotated`) for a session
   * reached through a rotated-away token.
   */
  async update(session: Session<D>, patch: SessionPatch<D>): Promise<Session<D>> {
    this.#open();
    const internal = this.#writable(session, 'update');
    if (!isPlainObject(patch)) throw new SessionDataError('The patch must be a plain object');
    for (const key of Object.keys(patch)) checkKey(key);
    const ref = { tag: internal.tag, id: session.id };
    const guarded = this.#options.schema !== undefined;
    let fields = internal.fields;
    let version = internal.version;
    for (let attempt = 1; ; attempt++) {
      const merged: Record<string, unknown> = decodeData(fields);
      for (const key of Object.keys(patch)) {
        const value = (patch as Record<string, unknown>)[key];
        if (value === undefined) delete merged[key];
        else merged[key] = value;
      }
      const value = await checkSchema(this.#options.schema, merged);
      const after = encodeData(value, this.#limits);
      const { set, remove } = diffData(fields, after);
      if (set.size === 0 && remove.length === 0) {
        return fields === internal.fields ? session : this.#derive(session, { ...internal, version }, after, value);
      }
      const now = this.#options.clock.now();
      const outcome = await this.#call('update', () =>
        this.#backend.update({ ref, set, remove, limits: this.#limits, expectedVersion: guarded ? version : undefined, now }),
      );
      if (outcome.status === 'ok') return this.#derive(session, { ...internal, version: outcome.version }, after, value);
      if (outcome.status === 'gone' || outcome.status === 'rotated') {
        throw new SessionInvalidError('gone', 'The session no longer exists (revoked or expired): nothing was written');
      }
      if (outcome.status === 'too-large') {
        throw new SessionDataError(
          `Session data would exceed ${this.#limits.maxBytes} bytes or ${this.#limits.maxKeys} keys (with concurrent writes)`,
        );
      }
      // conflict: another write came in since `fields` were read. Merge onto the stored data.
      if (attempt >= MAX_UPDATE_ATTEMPTS) {
        throw new SessionDataError(
          `Session data kept changing under concurrent updates (${attempt} attempts): nothing was written`,
        );
      }
      const fresh = await this.#call('update', () => this.#backend.read(ref, now));
      if (fresh === undefined || fresh.userId !== session.userId || fresh.successor !== undefined) {
        throw new SessionInvalidError('gone', 'The session no longer exists (revoked or expired): nothing was written');
      }
      fields = fresh.data;
      version = fresh.version;
    }
  }

  /**
   * Issues a new token for the session behind `token` (same user, data and absolute deadline)
   * and retires the old one: at once, or after `rotationGrace` for requests in flight. A token in
   * its grace window cannot rotate again.
   */
  async rotate(token: string, options: RequestMeta = {}): Promise<IssuedSession<D>> {
    this.#open();
    const parsed = parseToken(token);
    if (parsed === undefined) throw new SessionInvalidError('invalid', 'Not a session token');
    const now = this.#options.clock.now();
    const record = await this.#call('rotate', () => this.#backend.read(parsed, now));
    if (record === undefined || !secretMatches(parsed.secret, record.hash)) {
      throw new SessionInvalidError('gone', 'No such session');
    }
    if (record.successor !== undefined) {
      throw new SessionInvalidError('rotated', 'This token was already rotated: only its successor can rotate');
    }
    if (now >= this.#deadline(record)) {
      await this.#expire(record, now);
      throw new SessionInvalidError('gone', 'The session has expired');
    }
    const data = await this.#data(record);
    if (data === undefined) throw new SessionDataError('The stored session data does not fit the schema: not rotated');
    const user = { tag: record.tag, uref: record.uref };
    const grace = this.#options.rotationGrace;
    const ip = clip(options.ip, MAX_IP);
    const userAgent = clip(options.userAgent, MAX_UA);
    for (let attempt = 0; ; attempt++) {
      const id = newId();
      const secret = newSecret();
      const outcome = await this.#call('rotate', () =>
        this.#backend.rotate({
          old: record,
          user,
          id,
          hash: hashSecret(secret),
          now,
          expiresAt: Math.min(now + this.#options.idleTimeout, this.#absolute(record)),
          graceUntil: grace > 0 ? now + grace : 0,
          ip,
          userAgent,
        }),
      );
      if (outcome === 'collision' && attempt < 3) continue;
      if (outcome === 'rotated') throw new SessionInvalidError('rotated', 'This token was already rotated');
      if (outcome !== 'ok') throw new SessionInvalidError('gone', 'The session no longer exists');
      this.#events.fire('rotated', { id, previousId: record.id, userId: record.userId, graceMs: grace });
      const session = this.#session(
        { ...record, id, lastSeenAt: now, ip: ip ?? record.ip, userAgent: userAgent ?? record.userAgent },
        data,
      );
      return { token: formatToken(record.tag, id, secret), session };
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Revoking

  /**
   * Ends one session, given its token or a session this manager returned. A rotated-away token
   * within its grace window ends its successor too. Returns `false` when there was nothing to end.
   */
  async revoke(target: string | Session<D>, options: RevokeOptions = {}): Promise<boolean> {
    this.#open();
    const reason = options.reason ?? 'logout';
    const now = this.#options.clock.now();
    let ref: SessionRef;
    let user: UserRef;
    let userId: string;
    let logicalId: string;
    if (typeof target === 'string') {
      const parsed = parseToken(target);
      if (parsed === undefined) return false;
      const record = await this.#call('revoke', () => this.#backend.read(parsed, now));
      if (record === undefined || !secretMatches(parsed.secret, record.hash)) return false;
      // A rotated-away token past its grace window is dead: it cannot end its successor.
      if (record.successor !== undefined && !(record.graceUntil !== undefined && now < record.graceUntil)) return false;
      ref = record;
      user = { tag: record.tag, uref: record.uref };
      userId = record.userId;
      logicalId = record.successor ?? record.id;
    } else {
      const internal = this.#internal(target);
      ref = { tag: internal.tag, id: target.id };
      user = { tag: internal.tag, uref: internal.uref };
      userId = target.userId;
      logicalId = target.id;
    }
    const removed = await this.#call('revoke', () => this.#backend.remove(ref, user, now));
    if (removed.length === 0) return false;
    if (removed.includes(logicalId)) this.#events.fire('revoked', { id: logicalId, userId, reason });
    return true;
  }

  /** Ends the session `id` of `userId` (e.g. from a "your devices" page). `false` if it is not theirs or gone. */
  async revokeById(userId: string, id: string, options: RevokeOptions = {}): Promise<boolean> {
    this.#open();
    checkUserId(userId);
    if (!isSessionId(id)) return false;
    const now = this.#options.clock.now();
    for (const user of this.#userRefs(userId)) {
      const record = await this.#call('revoke', () => this.#backend.read({ tag: user.tag, id }, now));
      if (record === undefined || record.userId !== userId || record.successor !== undefined) continue;
      const removed = await this.#call('revoke', () => this.#backend.remove(record, user, now));
      if (removed.includes(id)) {
        this.#events.fire('revoked', { id, userId, reason: options.reason ?? 'logout' });
        return true;
      }
    }
    return false;
  }

  /**
   * Ends every session of `userId` (but `except`), in one atomic script per hash slot, and bumps
   * the user's epoch so a login that read `userEpoch()` before cannot complete. Returns how many
   * live sessions ended.
   */
  async revokeAllForUser(userId: string, options: RevokeAllOptions = {}): Promise<number> {
    this.#open();
    checkUserId(userId);
    const keep = typeof options.except === 'string' ? options.except : options.except?.id;
    const reason = options.reason ?? 'revoke-all';
    let count = 0;
    for (const user of this.#userRefs(userId)) {
      const now = this.#options.clock.now();
      const outcome = await this.#call('revokeAll', () =>
        this.#backend.removeAll(user, now, keep, true, this.#options.absoluteTimeout),
      );
      this.#expiredByPrune(userId, outcome.expired);
      for (const id of outcome.revoked) this.#events.fire('revoked', { id, userId, reason });
      count += outcome.revoked.length;
    }
    return count;
  }

  /**
   * Ends every other session of the session's user ("log out my other devices"). Refused
   * (`SessionInvalidError`, reason `rotated`) for a session reached through a rotated-away token.
   */
  async revokeOthers(session: Session<D>): Promise<number> {
    this.#writable(session, 'revokeOthers');
    return await this.revokeAllForUser(session.userId, { except: session, reason: 'revoke-others' });
  }

  // ---------------------------------------------------------------------------------------------
  // Reading

  /** The user's live sessions, oldest first, without tokens, hashes or data. Prunes expired ones. */
  async listForUser(userId: string, options: ListOptions = {}): Promise<SessionInfo[]> {
    this.#open();
    checkUserId(userId);
    const current = typeof options.current === 'string' ? options.current : options.current?.id;
    const result: SessionInfo[] = [];
    for (const user of this.#userRefs(userId)) {
      const now = this.#options.clock.now();
      const { sessions, expired } = await this.#call('list', () => this.#backend.list(user, now));
      this.#expiredByPrune(userId, expired);
      for (const s of sessions) {
        const absolute = Math.min(s.absoluteAt, s.createdAt + this.#options.absoluteTimeout);
        const expiresAt = Math.min(s.lastSeenAt + this.#options.idleTimeout, absolute);
        if (expiresAt <= now) continue;
        result.push(
          Object.freeze({
            id: s.id,
            createdAt: s.createdAt,
            lastSeenAt: s.lastSeenAt,
            expiresAt,
            absoluteExpiresAt: absolute,
            ip: s.ip,
            userAgent: s.userAgent,
            current: s.id === current,
          }),
        );
      }
    }
    return result.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
  }

  /** The user's revocation epoch; pass it to `create({ epoch })` to make a login lose a race with `revokeAllForUser`. */
  async userEpoch(userId: string): Promise<number> {
    this.#open();
    checkUserId(userId);
    const user = userRef(this.#options.secrets[0]!, userId);
    const now = this.#options.clock.now();
    return this.#call('epoch', () => this.#backend.epoch(user, now));
  }

  // ---------------------------------------------------------------------------------------------
  // CSRF tokens

  /**
   * A CSRF token bound to this session: `nonce.HMAC(secret, session id, nonce)`. Refused
   * (`SessionInvalidError`, reason `rotated`) for a session reached through a rotated-away token.
   */
  csrfToken(session: Session<D>): string {
    this.#writable(session, 'CSRF token');
    const nonce = randomBytes(16).toString('base64url');
    return `${nonce}.${this.#csrfMac(this.#options.secrets[0]!, session.id, nonce)}`;
  }

  /** True when `token` was issued by `csrfToken()` for this very session (constant-time compare). */
  verifyCsrfToken(session: Session<D>, token: unknown): boolean {
    if (typeof token !== 'string' || token.length > 100) return false;
    const match = CSRF_TOKEN.exec(token);
    if (match === null) return false;
    let ok = false;
    for (const secret of this.#options.secrets) {
      if (constantTimeEqual(this.#csrfMac(secret, session.id, match[1]!), match[2]!)) ok = true;
    }
    return ok;
  }

  #csrfMac(secret: string, id: string, nonce: string): string {
    return createHmac('sha256', secret).update(`larder.csrf\0${id}\0${nonce}`).digest('base64url');
  }

  /** Stops accepting calls (the store is not closed: it is yours). */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#touches.values()]);
    this.#events.removeAllListeners();
  }

  // ---------------------------------------------------------------------------------------------
  // Internals

  #open(): void {
    if (this.#closed) throw new ClosedError('session manager');
  }

  #userRefs(userId: string): UserRef[] {
    return this.#options.secrets.map((secret) => userRef(secret, userId));
  }

  #absolute(record: SessionRecord): number {
    return Math.min(record.absoluteAt, record.createdAt + this.#options.absoluteTimeout);
  }

  #deadline(record: SessionRecord): number {
    return Math.min(record.lastSeenAt + this.#options.idleTimeout, this.#absolute(record));
  }

  /** The session's internals, refusing one reached through a rotated-away token. */
  #writable(session: Session<D>, what: string): Internal {
    const internal = this.#internal(session);
    if (internal.readOnly) {
      throw new SessionInvalidError(
        'rotated',
        `This token was rotated away: within its grace window it is read-only (no ${what}); use the new token`,
      );
    }
    return internal;
  }

  #internal(session: Session<D>): Internal {
    const internal = typeof session === 'object' && session !== null ? this.#internals.get(session) : undefined;
    if (internal === undefined) {
      throw new SessionInvalidError('invalid', 'Not a session returned by this session manager');
    }
    return internal;
  }

  #session(record: SessionRecord, decoded: Readonly<D>, readOnly = false): Session<D> {
    const data = Object.freeze(decoded);
    const absoluteExpiresAt = this.#absolute(record);
    const session: Session<D> = Object.freeze({
      id: record.id,
      userId: record.userId,
      data,
      createdAt: record.createdAt,
      lastSeenAt: record.lastSeenAt,
      expiresAt: Math.min(record.lastSeenAt + this.#options.idleTimeout, absoluteExpiresAt),
      absoluteExpiresAt,
      ip: record.ip,
      userAgent: record.userAgent,
    });
    this.#internals.set(session, { tag: record.tag, uref: record.uref, fields: record.data, version: record.version, readOnly });
    return session;
  }

  #derive(session: Session<D>, internal: Internal, fields: ReadonlyMap<string, string>, data: Readonly<D>): Session<D> {
    const next: Session<D> = Object.freeze({ ...session, data: Object.freeze(data) });
    this.#internals.set(next, { ...internal, fields });
    return next;
  }

  /**
   * Reports an invalid token, and counts it towards the brute-force signal when it is a guess: a
   * malformed token, an unknown id, or a wrong secret. A token that names a session with that
   * session's own secret (revoked, or rotated away) is a stale cookie: reported, not counted.
   */
  #invalid(
    reason: 'malformed' | 'unknown' | 'mismatch' | 'rotated' | 'revoked',
    id: string | undefined,
    ip: string | undefined,
  ): void {
    const event =
      id === undefined
        ? ip === undefined
          ? { reason }
          : { reason, ip }
        : ip === undefined
          ? { reason, id }
          : { reason, id, ip };
    this.#events.fire('invalid', event);
    if (reason === 'rotated' || reason === 'revoked') return;
    if (ip !== undefined) {
      const attempts = this.#perIp?.hit(ip);
      if (attempts !== undefined) this.#bruteForce('ip', ip, attempts);
    }
    if (reason === 'mismatch' && id !== undefined) {
      const attempts = this.#perId?.hit(id);
      if (attempts !== undefined) this.#bruteForce('id', id, attempts);
    }
  }

  #bruteForce(scope: 'ip' | 'id', subject: string, attempts: number): void {
    const bf = this.#options.bruteForce;
    if (bf === false) return;
    this.#events.fire('brute-force', { scope, subject, attempts, windowMs: bf.windowMs });
  }

  #expiredByPrune(userId: string, ids: readonly string[]): void {
    for (const id of ids) this.#events.fire('expired', { id, userId, detectedBy: 'prune' });
  }

  async #call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      if (isLarderError(error, 'E_SESSION_STORE')) throw error;
      throw new SessionStoreError(operation, { cause: error });
    }
  }
}

/**
 * A session manager over a Redis store (`redisStore()` / `ioredisStore()`) or `memoryStore()`.
 *
 * @example
 * const sessions = createSessions({ store: redisStore({ client }), secret: process.env.SESSION_SECRET });
 * const { token } = await sessions.create(user.id, { data: { role: 'admin' } });
 */
export function createSessions<D extends object = Record<string, unknown>>(options: SessionOptions<D>): SessionManager<D> {
  return new SessionManager<D>(options);
}
