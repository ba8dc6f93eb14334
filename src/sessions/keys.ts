/**
 * Key layout. Every key of one user shares the hash tag `{<tag>}`, so on Redis Cluster all of a
 * user's keys live in one slot and every script touches a single slot:
 *
 * - `<ns>:{<tag>}:s:<id>`   the session (a hash)
 * - `<ns>:{<tag>}:t:<id>`   its tombstone (a small hash, until the absolute deadline)
 * - `<ns>:{<tag>}:u:<uref>` the user's index (a sorted set of session ids scored by expiry)
 * - `<ns>:{<tag>}:e:<uref>` the user's epoch (a counter bumped by `revokeAllForUser`)
 *
 * `uref` is HMAC-SHA256(secret, user id) in base64url and `tag` its first 4 characters: stable
 * across processes that share the secret, and meaningless without it. Users who share a tag
 * share a slot but never a key.
 *
 * @module
 */
import { createHmac } from 'node:crypto';
import { TAG_LENGTH } from './token.js';

/** A user's place in the store: their hash tag and index name. */
export interface UserRef {
  readonly tag: string;
  readonly uref: string;
}

/** A session's place in the store. */
export interface SessionRef {
  readonly tag: string;
  readonly id: string;
}

export function userRef(secret: string, userId: string): UserRef {
  const uref = createHmac('sha256', secret).update(`larder.sessions.user\0${userId}`).digest('base64url');
  return { tag: uref.slice(0, TAG_LENGTH), uref };
}

export class KeyLayout {
  constructor(readonly namespace: string) {}

  /** Everything before the session id; scripts append member ids to it. */
  sessionPrefix(tag: string): string {
    return `${this.namespace}:{${tag}}:s:`;
  }

  session(ref: SessionRef): string {
    return `${this.sessionPrefix(ref.tag)}${ref.id}`;
  }

  /** Scripts derive it from the session prefix: `s:` becomes `t:`. */
  tombstone(ref: SessionRef): string {
    return `${this.namespace}:{${ref.tag}}:t:${ref.id}`;
  }

  index(user: UserRef): string {
    return `${this.namespace}:{${user.tag}}:u:${user.uref}`;
  }

  epoch(user: UserRef): string {
    return `${this.namespace}:{${user.tag}}:e:${user.uref}`;
  }
}
