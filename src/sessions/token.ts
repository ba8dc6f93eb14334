/**
 * Session tokens: `v1.<tag>.<id>.<secret>`, base64url, fixed lengths.
 *
 * - `tag` (4 chars) is the user's Redis Cluster hash tag: an HMAC of the user id under the
 *   manager's secret, so it says nothing about the user to anyone without that secret.
 * - `id` (22 chars, 128 random bits) names the session record; it is the lookup key and the only
 *   part that ever appears in events or logs.
 * - `secret` (43 chars, 256 random bits from `crypto.randomBytes`) is never stored: Redis keeps
 *   its SHA-256, compared in constant time after the lookup by id.
 *
 * Anything else (other lengths, characters, dots, versions) is refused by one anchored regex
 * before any store command, so a token can never carry `*`, `{`, `:` or other key syntax.
 *
 * @module
 */
// Through the module object (not named imports) so tests can observe the constant-time compare.
import crypto from 'node:crypto';

export const TOKEN_VERSION = 'v1';
export const TAG_LENGTH = 4;
export const ID_BYTES = 16;
export const SECRET_BYTES = 32;
/** Length of every token this module issues. */
export const TOKEN_LENGTH = TOKEN_VERSION.length + 1 + TAG_LENGTH + 1 + 22 + 1 + 43;

const TOKEN = /^v1\.([A-Za-z0-9_-]{4})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;
const ID = /^[A-Za-z0-9_-]{22}$/;

export interface ParsedToken {
  readonly tag: string;
  readonly id: string;
  readonly secret: string;
}

/** The parts of a well-formed token, or `undefined`. Never throws, whatever it is given. */
export function parseToken(token: unknown): ParsedToken | undefined {
  if (typeof token !== 'string' || token.length !== TOKEN_LENGTH) return undefined;
  const match = TOKEN.exec(token);
  if (match === null) return undefined;
  return { tag: match[1]!, id: match[2]!, secret: match[3]! };
}

/** True for a session id as issued (22 base64url characters). */
export function isSessionId(id: unknown): id is string {
  return typeof id === 'string' && ID.test(id);
}

/** A new session id (128 bits). */
export function newId(): string {
  return crypto.randomBytes(ID_BYTES).toString('base64url');
}

/** A new secret (256 bits). */
export function newSecret(): string {
  return crypto.randomBytes(SECRET_BYTES).toString('base64url');
}

export function formatToken(tag: string, id: string, secret: string): string {
  return `${TOKEN_VERSION}.${tag}.${id}.${secret}`;
}

/** What the store keeps instead of the secret: base64url SHA-256 of the secret's text. */
export function hashSecret(secret: string): string {
  return crypto.createHash('sha256').update(secret, 'utf8').digest('base64url');
}

const HASH = /^[A-Za-z0-9_-]{43}$/;

/**
 * Constant-time check of a presented secret against the stored hash. A malformed stored hash
 * (a planted or damaged record) never matches.
 */
export function secretMatches(secret: string, storedHash: string | undefined): boolean {
  const presented = crypto.createHash('sha256').update(secret, 'utf8').digest();
  const stored = storedHash !== undefined && HASH.test(storedHash) ? Buffer.from(storedHash, 'base64url') : undefined;
  // Compare even when the stored hash is unusable, so both paths cost the same.
  const equal = crypto.timingSafeEqual(presented, stored ?? Buffer.alloc(presented.length));
  return equal && stored !== undefined;
}

/** Constant-time equality of two strings (different lengths are unequal). */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  if (x.length !== y.length) {
    crypto.timingSafeEqual(x, x);
    return false;
  }
  return crypto.timingSafeEqual(x, y);
}
