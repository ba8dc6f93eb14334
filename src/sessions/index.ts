/**
 * `larder/sessions`: secure sessions over the same store as the cache.
 *
 * The manager ({@link createSessions}) is framework-free and promise-first. Framework middleware
 * lives in `larder/node`, `larder/express`, `larder/fastify` and `larder/hono`, each a separate
 * subpath so importing one never loads another (or any framework). Backends, scripts and the
 * key layout are internal and may change without a major version.
 *
 * @see docs/sessions.md
 * @module
 */
export {
  createSessions,
  SessionManager,
  type CreateOptions,
  type IssuedSession,
  type ListOptions,
  type LoginWithVerifyOptions,
  type RequestMeta,
  type RevokeAllOptions,
  type RevokeOptions,
  type Session,
  type SessionInfo,
  type SessionPatch,
  type ValidateOptions,
  type ValidationResult,
  type VerifyCredentials,
} from './manager.js';
export type { BruteForceOptions, SessionOptions, SessionSettings } from './options.js';
export type {
  BruteForceEvent,
  InvalidTokenEvent,
  InvalidTokenReason,
  RevokeReason,
  SecurityEvent,
  SessionCreatedEvent,
  SessionEventMap,
  SessionEventName,
  SessionExpiredEvent,
  SessionRevokedEvent,
  SessionRotatedEvent,
  SessionStoreErrorEvent,
} from './events.js';
export type { CookieOptions } from './cookies.js';
export type { CsrfOptions } from './csrf.js';
export {
  SessionHttp,
  SessionHeaders,
  type BeginResult,
  type HeaderTarget,
  type HttpExchange,
  type LoginOptions,
  type VerifiedLoginOptions,
  type SessionContext,
  type SessionMiddlewareOptions,
  type SessionStatus,
} from './http.js';
export {
  SessionDataError,
  SessionInvalidError,
  SessionLimitError,
  SessionStoreError,
  isLarderError,
  type SessionInvalidReason,
} from '../errors.js';
