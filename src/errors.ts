/**
 * Every error Larder throws or reports, in one place.
 *
 * Each class sets a literal `name` and a stable `code`, and carries `cause` and the key
 * involved when there is one. `instanceof` fails when two copies of Larder are installed, so
 * check with {@link isLarderError} (or compare `code`) in code that must be robust to that.
 *
 * @module
 */

const BRAND = Symbol.for('larder.error');

export type LarderErrorCode =
  | 'E_INVALID_KEY'
  | 'E_INVALID_OPTION'
  | 'E_STORE_UNAVAILABLE'
  | 'E_COMMAND_TIMEOUT'
  | 'E_CIRCUIT_OPEN'
  | 'E_LOADER_TIMEOUT'
  | 'E_ABORTED'
  | 'E_SERIALIZATION'
  | 'E_VALIDATION'
  | 'E_CLOSED'
  | 'E_SESSION_INVALID'
  | 'E_SESSION_LIMIT'
  | 'E_SESSION_DATA'
  | 'E_SESSION_STORE';

export interface LarderErrorOptions {
  cause?: unknown;
  /** The cache key (with its namespace) the error is about, when there is one. */
  key?: string;
}

/** Base class of every error Larder raises. */
export class LarderError extends Error {
  override readonly name: string = 'LarderError';
  readonly code: LarderErrorCode;
  readonly key: string | undefined;
  readonly [BRAND] = true;

  constructor(code: LarderErrorCode, message: string, options: LarderErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.key = options.key;
  }
}

/** A key that is not a non-empty string, or is longer than `maxKeyLength`. Thrown before any I/O. */
export class InvalidKeyError extends LarderError {
  override readonly name = 'InvalidKeyError';
  constructor(message: string, options?: LarderErrorOptions) {
    super('E_INVALID_KEY', message, options);
  }
}

/** An option with a value Larder cannot honour (negative duration, `NaN`, unknown policy, …). */
export class InvalidOptionError extends LarderError {
  override readonly name = 'InvalidOptionError';
  readonly option: string;
  constructor(option: string, message: string, options?: LarderErrorOptions) {
    super('E_INVALID_OPTION', `${option}: ${message}`, options);
    this.option = option;
  }
}

/** The store (Redis) failed, timed out, or is behind an open circuit breaker. */
export class StoreError extends LarderError {
  override readonly name: string = 'StoreError';
  /** Redis answered with an error (WRONGTYPE, OOM, NOPERM, …) rather than failing to answer. */
  readonly reply: boolean;
  constructor(
    code: 'E_STORE_UNAVAILABLE' | 'E_COMMAND_TIMEOUT' | 'E_CIRCUIT_OPEN' = 'E_STORE_UNAVAILABLE',
    message = 'The cache store is unavailable',
    options?: LarderErrorOptions & { reply?: boolean },
  ) {
    super(code, message, options);
    this.reply = options?.reply ?? false;
  }
}

/** A store command did not answer within `commandTimeout`. */
export class CommandTimeoutError extends StoreError {
  override readonly name = 'CommandTimeoutError';
  constructor(timeoutMs: number, options?: LarderErrorOptions) {
    super('E_COMMAND_TIMEOUT', `The store did not answer within ${timeoutMs} ms`, options);
  }
}

/** The circuit breaker is open: Larder sent nothing to the store. */
export class CircuitOpenError extends StoreError {
  override readonly name = 'CircuitOpenError';
  constructor(options?: LarderErrorOptions) {
    super('E_CIRCUIT_OPEN', 'The circuit breaker is open: the store is skipped until it recovers', options);
  }
}

/** The loader did not settle within its hard timeout; it was aborted through its signal. */
export class LoaderTimeoutError extends LarderError {
  override readonly name = 'LoaderTimeoutError';
  readonly timeoutMs: number;
  constructor(timeoutMs: number, options?: LarderErrorOptions) {
    super('E_LOADER_TIMEOUT', `The loader did not settle within ${timeoutMs} ms`, options);
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The caller's `AbortSignal` fired. `name` is `'AbortError'`, as in Node's own APIs, and
 * `cause` is the signal's `reason`.
 */
export class AbortError extends LarderError {
  override readonly name = 'AbortError';
  constructor(options?: LarderErrorOptions) {
    super('E_ABORTED', 'The operation was aborted', options);
  }
}

/** A value could not be serialized (a `BigInt` for JSON, a circular structure, a function, …). */
export class SerializationError extends LarderError {
  override readonly name = 'SerializationError';
  constructor(message: string, options?: LarderErrorOptions) {
    super('E_SERIALIZATION', message, options);
  }
}

/** A value did not fit the schema it was checked against. */
export class ValidationError extends LarderError {
  override readonly name = 'ValidationError';
  readonly issues: readonly { readonly message: string; readonly path?: readonly unknown[] | undefined }[];
  constructor(
    message: string,
    issues: readonly { readonly message: string; readonly path?: readonly unknown[] | undefined }[],
    options?: LarderErrorOptions,
  ) {
    super('E_VALIDATION', message, options);
    this.issues = issues;
  }
}

/** The cache (or session manager) was used after `close()`. */
export class ClosedError extends LarderError {
  override readonly name = 'ClosedError';
  constructor(what = 'cache') {
    super('E_CLOSED', `The ${what} is closed`);
  }
}

/** True for any error raised by Larder, even from another installed copy of it. */
export function isLarderError(error: unknown, code?: LarderErrorCode): error is LarderError {
  if (typeof error !== 'object' || error === null) return false;
  if ((error as { [BRAND]?: unknown })[BRAND] !== true) return false;
  return code === undefined || (error as LarderError).code === code;
}

/** True when the store failed, timed out or was skipped by the breaker. */
export function isStoreError(error: unknown): error is StoreError {
  return (
    isLarderError(error, 'E_STORE_UNAVAILABLE') ||
    isLarderError(error, 'E_COMMAND_TIMEOUT') ||
    isLarderError(error, 'E_CIRCUIT_OPEN')
  );
}

/** True for an abort, whether raised by Larder or by the platform. */
export function isAbortError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'AbortError';
}

/** Why a session operation found no usable session. */
export type SessionInvalidReason =
  /** The session does not exist (never did, expired in the store, or was revoked). */
  | 'gone'
  /** The token was rotated away and is only valid, read-only, within its grace window. */
  | 'rotated'
  /** The token is not a Larder session token, or its secret does not match. */
  | 'invalid'
  /** The request failed the cross-site (CSRF) check. */
  | 'csrf'
  /** A login raced `revokeAllForUser`: the user's epoch moved since `userEpoch()` was read. */
  | 'epoch';

/** No usable session for the operation (revoked, expired, rotated away, or a forged token). */
export class SessionInvalidError extends LarderError {
  override readonly name = 'SessionInvalidError';
  readonly reason: SessionInvalidReason;
  constructor(reason: SessionInvalidReason, message: string, options?: LarderErrorOptions) {
    super('E_SESSION_INVALID', message, options);
    this.reason = reason;
  }
}

/** `create()` refused: the user already has `maxSessionsPerUser` sessions and `onLimit` is `'reject'`. */
export class SessionLimitError extends LarderError {
  override readonly name = 'SessionLimitError';
  readonly limit: number;
  constructor(limit: number, options?: LarderErrorOptions) {
    super('E_SESSION_LIMIT', `The user already has the maximum of ${limit} sessions`, options);
    this.limit = limit;
  }
}

/** Session data refused: too large, too many keys, not JSON, a prototype-polluting key, or not the schema. */
export class SessionDataError extends LarderError {
  override readonly name = 'SessionDataError';
  readonly issues: readonly { readonly message: string; readonly path?: readonly unknown[] | undefined }[];
  constructor(
    message: string,
    issues: readonly { readonly message: string; readonly path?: readonly unknown[] | undefined }[] = [],
    options?: LarderErrorOptions,
  ) {
    super('E_SESSION_DATA', message, options);
    this.issues = issues;
  }
}

/**
 * The session store failed, timed out or is behind an open circuit breaker. `cause` is the
 * underlying `StoreError`. Sessions fail closed: the middleware answers 503 and never treats the
 * request as authenticated.
 */
export class SessionStoreError extends LarderError {
  override readonly name = 'SessionStoreError';
  readonly operation: string;
  constructor(operation: string, options?: LarderErrorOptions) {
    super('E_SESSION_STORE', `The session store failed during ${operation}`, options);
    this.operation = operation;
  }
}
