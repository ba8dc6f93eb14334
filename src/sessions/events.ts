/**
 * Session lifecycle and security events. Emitted synchronously by the process that performed
 * (or detected) the action, exactly once per action; they never depend on Redis keyspace
 * notifications. They carry the session id (the non-secret part of a token), the user id and a
 * reason, never a token, a secret, its hash or session data.
 *
 * @module
 */
import { EventEmitter } from 'node:events';

export interface SessionCreatedEvent {
  readonly id: string;
  readonly userId: string;
}
export interface SessionRotatedEvent {
  readonly id: string;
  readonly previousId: string;
  readonly userId: string;
  /** How long the previous token keeps working, in ms (`0`: it is dead already). */
  readonly graceMs: number;
}
/** Why a session was revoked: Larder's own reasons, or the one passed to `revoke*()`. */
export type RevokeReason = 'logout' | 'login' | 'revoke-all' | 'revoke-others' | 'limit' | (string & {});
export interface SessionRevokedEvent {
  readonly id: string;
  readonly userId: string;
  readonly reason: RevokeReason;
}
export interface SessionExpiredEvent {
  readonly id: string;
  readonly userId: string;
  /**
   * `validate`: a token was presented after its deadline (until its absolute deadline, even once
   * the store dropped the session); `prune`: found while cleaning the user's index.
   */
  readonly detectedBy: 'validate' | 'prune';
}
export type InvalidTokenReason =
  /** Not a Larder token (wrong shape, length, characters). No store command was sent. */
  | 'malformed'
  /** Well formed, but no such session (never issued, or past its absolute deadline). */
  | 'unknown'
  /** The session exists (or existed) but the secret does not match: someone knows an id but not its secret. */
  | 'mismatch'
  /** A rotated-away token presented after its grace window, with its own secret (not counted as brute force). */
  | 'rotated'
  /** A revoked session's token, with its own secret: a stale cookie, or a replay (not counted as brute force). */
  | 'revoked'
  /** A valid token whose session's stored data the schema rejects: refused (not counted as brute force). */
  | 'data';
export interface InvalidTokenEvent {
  readonly reason: InvalidTokenReason;
  /** The session id the token names, when it is well formed. */
  readonly id?: string;
  readonly ip?: string;
}
export interface BruteForceEvent {
  /** `ip`: many invalid tokens from one address; `id`: many wrong secrets for one session id. */
  readonly scope: 'ip' | 'id';
  readonly subject: string;
  readonly attempts: number;
  readonly windowMs: number;
}
export interface SecurityEvent {
  /**
   * `duplicate-cookie`: the session cookie appeared more than once (cookie tossing); the request
   * was treated as unauthenticated. `csrf`: an unsafe cross-site request was refused.
   */
  readonly type: 'duplicate-cookie' | 'csrf';
  readonly ip?: string;
  readonly detail: string;
}
export interface SessionStoreErrorEvent {
  readonly operation: string;
  readonly error: unknown;
}

export interface SessionEventMap {
  created: [SessionCreatedEvent];
  rotated: [SessionRotatedEvent];
  revoked: [SessionRevokedEvent];
  expired: [SessionExpiredEvent];
  invalid: [InvalidTokenEvent];
  'brute-force': [BruteForceEvent];
  security: [SecurityEvent];
  /** A store failure Larder absorbed (a failed renewal); failures it cannot absorb are thrown. */
  'store-error': [SessionStoreErrorEvent];
}

export type SessionEventName = keyof SessionEventMap;

export class SessionEmitter extends EventEmitter<SessionEventMap> {
  wants(name: SessionEventName): boolean {
    return this.listenerCount(name) > 0;
  }

  /** Listeners are user code: one that throws must not break a session operation. */
  fire<K extends SessionEventName>(name: K, event: SessionEventMap[K][0]): void {
    if (!this.wants(name)) return;
    try {
      (this.emit as (name: K, event: SessionEventMap[K][0]) => boolean)(name, event);
    } catch {
      // Ignored on purpose: see above.
    }
  }
}
