/**
 * The session manager, backend by backend: the same behaviour over node-redis, ioredis and the
 * memory store. Time moves on a ManualClock; nothing sleeps.
 */
import crypto from 'node:crypto';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  isLarderError,
  SessionDataError,
  SessionInvalidError,
  SessionLimitError,
  type SessionManager,
} from '../../src/sessions/index.js';
import { userRef } from '../../src/sessions/keys.js';
import { formatToken, newId, newSecret, parseToken } from '../../src/sessions/token.js';
import { slotOf } from '../../src/stores/slot.js';
import type { Store } from '../../src/stores/store.js';
import { ManualClock, sleep, uniqueNamespace, type NodeRedis } from '../helpers/redis.js';
import { closeAll, DRIVERS, nodeRedis, record, SECRET, sessionsOn, storeFor, type Driver } from './helpers.js';

const MIN = 60_000;
const IDLE = 30 * MIN;
const ABSOLUTE = 12 * 60 * MIN;

let inspector: NodeRedis | undefined;
afterAll(async () => {
  await inspector?.close();
  await closeAll();
});

interface Data {
  role?: string;
  a?: number;
  b?: number;
  n?: number;
  blob?: string;
  nested?: unknown;
}

describe.each(DRIVERS)('session manager over %s', (driver: Driver) => {
  let store: Store;
  let clock: ManualClock;
  let namespace: string;

  async function manager(options: Parameters<typeof sessionsOn<Data>>[1] = {}): Promise<SessionManager<Data>> {
    return sessionsOn<Data>(store, { clock, namespace, ...options });
  }

  /** Keys of this namespace (Redis only; memory returns []). */
  async function keys(): Promise<string[]> {
    if (driver === 'memory') return [];
    inspector ??= await nodeRedis();
    const found: string[] = [];
    for await (const batch of inspector.scanIterator({ MATCH: `${namespace}:*`, COUNT: 1000 })) found.push(...batch);
    return found;
  }

  beforeEach(async () => {
    store = await storeFor(driver);
    clock = new ManualClock();
    namespace = uniqueNamespace('sess');
  });

  it('C.1, C.2, C.6: create issues a well-formed token that validates; it carries no user id', async () => {
    const sessions = await manager();
    const { token, session } = await sessions.create('alice@example.com', {
      data: { role: 'user' },
      ip: '10.0.0.1',
      userAgent: 'UA',
    });
    const parsed = parseToken(token)!;
    expect(parsed.id).toBe(session.id);
    expect(Buffer.from(parsed.secret, 'base64url').length).toBeGreaterThanOrEqual(16);
    expect(token).not.toContain('alice');
    const result = await sessions.validate(token);
    expect(result).toMatchObject({ valid: true, renewed: false, grace: false });
    if (!result.valid) throw new Error('unreachable');
    expect(result.session).toMatchObject({
      id: session.id,
      userId: 'alice@example.com',
      data: { role: 'user' },
      createdAt: clock.now(),
      lastSeenAt: clock.now(),
      expiresAt: clock.now() + IDLE,
      absoluteExpiresAt: clock.now() + ABSOLUTE,
      ip: '10.0.0.1',
      userAgent: 'UA',
    });
  });

  it('C.4: lookup by id, then a constant-time compare of the hash', async () => {
    const sessions = await manager();
    const { token } = await sessions.create('alice');
    const parsed = parseToken(token)!;
    const spy = vi.spyOn(crypto, 'timingSafeEqual');
    try {
      const wrong = formatToken(parsed.tag, parsed.id, newSecret());
      expect(await sessions.validate(wrong)).toEqual({ valid: false, reason: 'unknown' });
      expect(spy).toHaveBeenCalled();
      spy.mockClear();
      expect((await sessions.validate(token)).valid).toBe(true);
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      spy.mockRestore();
    }
  });

  it('C.5: strict mode: an unknown well-formed token is never adopted', async () => {
    const sessions = await manager();
    const { tag } = userRef(SECRET, 'alice');
    const planted = formatToken(tag, newId(), newSecret());
    expect(await sessions.validate(planted)).toEqual({ valid: false, reason: 'unknown' });
    expect(await sessions.revoke(planted)).toBe(false);
    await expect(sessions.rotate(planted)).rejects.toThrow(SessionInvalidError);
    expect((await keys()).some((key) => key.includes(parseToken(planted)!.id))).toBe(false);
    expect(await sessions.validate(undefined)).toEqual({ valid: false, reason: 'missing' });
    expect(await sessions.validate('garbage')).toEqual({ valid: false, reason: 'malformed' });
  });

  it('C.15: idle timeout from the stored last-seen time; the expired hook fires once', async () => {
    const sessions = await manager();
    const events = record(sessions);
    const { token } = await sessions.create('alice');
    clock.advance(IDLE - 1_000);
    expect((await sessions.validate(token, { touch: false })).valid).toBe(true);
    clock.advance(2_000);
    expect(await sessions.validate(token)).toEqual({ valid: false, reason: 'expired' });
    // Still expired (not unknown) when presented again; reported once.
    expect(await sessions.validate(token)).toEqual({ valid: false, reason: 'expired' });
    expect(events.expired).toHaveLength(1);
    expect(events.expired[0]).toMatchObject({ userId: 'alice', detectedBy: 'validate' });
    expect(events.invalid).toEqual([]);
    // Only the tombstone is left: no data, no metadata.
    expect((await keys()).filter((key) => !key.includes(':t:'))).toEqual([]);
    // An expiry found while cleaning the user's index is reported there, and not again.
    const other = await sessions.create('alice');
    clock.advance(IDLE + 1);
    expect(await sessions.listForUser('alice')).toEqual([]);
    expect(await sessions.validate(other.token)).toEqual({ valid: false, reason: 'expired' });
    expect(events.expired.map((e) => e.detectedBy)).toEqual(['validate', 'prune']);
  });

  it('C.15 on real time: a session whose key Redis already dropped reads as expired, not unknown, until its absolute deadline', async () => {
    const sessions = await sessionsOn<Data>(store, {
      namespace,
      idleTimeout: 300,
      absoluteTimeout: 1_500,
      bruteForce: { threshold: 2, windowMs: 60_000 },
    });
    const events = record(sessions);
    const started = Date.now();
    const [a, b] = await Promise.all([sessions.create('alice', { data: { role: 'x' } }), sessions.create('alice')]);
    const c = await sessions.create('bob');
    await sleep(500);
    // Redis dropped the session keys on their own (TTL = idle deadline).
    expect((await keys()).filter((key) => key.includes(':s:'))).toEqual([]);
    const results = [];
    for (const issued of [a, b, c, a, b, c]) results.push(await sessions.validate(issued.token, { ip: '198.51.100.7' }));
    expect(results).toEqual(results.map(() => ({ valid: false, reason: 'expired' })));
    const byId = (x: { id: string }, y: { id: string }) => x.id.localeCompare(y.id);
    expect([...events.expired].sort(byId)).toEqual(
      [
        { id: a.session.id, userId: 'alice', detectedBy: 'validate' },
        { id: b.session.id, userId: 'alice', detectedBy: 'validate' },
        { id: c.session.id, userId: 'bob', detectedBy: 'validate' },
      ].sort(byId),
    );
    // Returning users are not attackers: no invalid token, no brute-force signal.
    expect(events.invalid).toEqual([]);
    expect(events['brute-force']).toEqual([]);
    // The tombstone answers only to its own secret.
    const { tag, id } = parseToken(a.token)!;
    expect(await sessions.validate(formatToken(tag, id, newSecret()), { ip: '198.51.100.8' })).toEqual({
      valid: false,
      reason: 'unknown',
    });
    expect(events.invalid).toEqual([{ reason: 'mismatch', id, ip: '198.51.100.8' }]);
    // Past the absolute deadline (the cookie's Max-Age) nothing is left.
    await sleep(Math.max(0, started + 1_600 - Date.now()));
    expect(await sessions.validate(a.token)).toEqual({ valid: false, reason: 'unknown' });
    expect(await keys()).toEqual([]);
  });

  it('C.16: absolute timeout however active the session is', async () => {
    const sessions = await manager();
    const { token } = await sessions.create('alice');
    let elapsed = 0;
    while (elapsed + IDLE / 2 < ABSOLUTE) {
      clock.advance(IDLE / 2);
      elapsed += IDLE / 2;
      expect((await sessions.validate(token)).valid, `at ${elapsed} ms`).toBe(true);
    }
    clock.advance(ABSOLUTE - elapsed + 1_000);
    expect(await sessions.validate(token)).toEqual({ valid: false, reason: 'expired' });
  });

  it('C.17: renewals never extend past the absolute deadline; the store TTL is the earlier deadline', async () => {
    const sessions = await manager();
    const { token, session } = await sessions.create('alice');
    while (clock.now() + IDLE / 2 < session.absoluteExpiresAt - IDLE / 3) {
      clock.advance(IDLE / 2);
      expect((await sessions.validate(token)).valid).toBe(true);
    }
    clock.advance(session.absoluteExpiresAt - IDLE / 3 - clock.now());
    const result = await sessions.validate(token);
    expect(result).toMatchObject({ valid: true, renewed: true });
    if (!result.valid) throw new Error('unreachable');
    expect(result.session.expiresAt).toBe(session.absoluteExpiresAt);
  });

  it('C.18: renewal is throttled: 100 validations inside the interval write nothing; then exactly one renews', async () => {
    const sessions = await manager({ touchInterval: MIN });
    const { token } = await sessions.create('alice');
    const first = await Promise.all(Array.from({ length: 100 }, () => sessions.validate(token)));
    expect(first.filter((r) => r.valid && r.renewed)).toHaveLength(0);
    clock.advance(MIN);
    const second = await Promise.all(Array.from({ length: 100 }, () => sessions.validate(token)));
    expect(second.every((r) => r.valid)).toBe(true);
    expect(second.filter((r) => r.valid && r.renewed)).toHaveLength(1);
    const third = await Promise.all(Array.from({ length: 100 }, () => sessions.validate(token)));
    expect(third.filter((r) => r.valid && r.renewed)).toHaveLength(0);
  });

  it('C.18: touchInterval defaults to a tenth of the idle timeout, capped at 1 h', async () => {
    expect((await manager()).options.touchInterval).toBe(IDLE / 10);
    expect((await manager({ idleTimeout: 24 * 60 * MIN, absoluteTimeout: 48 * 60 * MIN })).options.touchInterval).toBe(60 * MIN);
  });

  it('C.19, C.20: rotation issues a new token, keeps data and the absolute deadline, and kills the old one', async () => {
    const sessions = await manager();
    const events = record(sessions);
    const { token, session } = await sessions.create('alice', { data: { role: 'user' } });
    clock.advance(MIN);
    const rotated = await sessions.rotate(token);
    expect(rotated.token).not.toBe(token);
    expect(rotated.session).toMatchObject({ userId: 'alice', data: { role: 'user' }, createdAt: session.createdAt });
    expect(rotated.session.absoluteExpiresAt).toBe(session.absoluteExpiresAt);
    expect(await sessions.validate(token)).toEqual({ valid: false, reason: 'unknown' });
    expect((await sessions.validate(rotated.token)).valid).toBe(true);
    expect(events.rotated).toEqual([{ id: rotated.session.id, previousId: session.id, userId: 'alice', graceMs: 0 }]);
    expect(await sessions.listForUser('alice')).toHaveLength(1);
  });

  it('C.20: with a grace window the old token is read-only (no update, revokeOthers, CSRF token or rotation), resolves to the successor, then dies', async () => {
    const sessions = await manager({ rotationGrace: 5_000 });
    const { token } = await sessions.create('alice', { data: { a: 1 } });
    const rotated = await sessions.rotate(token);
    // Requests in flight during rotation: none is logged out.
    const inFlight = await Promise.all(
      Array.from({ length: 20 }, (_, i) => sessions.validate(i % 2 === 0 ? token : rotated.token)),
    );
    expect(inFlight.every((r) => r.valid)).toBe(true);
    const old = await sessions.validate(token);
    expect(old).toMatchObject({ valid: true, grace: true });
    if (!old.valid) throw new Error('unreachable');
    expect(old.session.id).toBe(rotated.session.id);
    // Read-only: no write, no revoke-others, no CSRF token through the grace token.
    const refused = { code: 'E_SESSION_INVALID', reason: 'rotated' };
    await expect(sessions.update(old.session, { b: 2 })).rejects.toMatchObject(refused);
    await expect(sessions.revokeOthers(old.session)).rejects.toMatchObject(refused);
    expect(() => sessions.csrfToken(old.session)).toThrow(SessionInvalidError);
    await expect(sessions.rotate(token)).rejects.toMatchObject(refused);
    const fresh = await sessions.validate(rotated.token);
    expect(fresh.valid && fresh.session.data).toEqual({ a: 1 });
    // The new token writes as usual.
    if (!fresh.valid) throw new Error('unreachable');
    expect((await sessions.update(fresh.session, { b: 2 })).data).toEqual({ a: 1, b: 2 });
    expect(sessions.verifyCsrfToken(old.session, sessions.csrfToken(fresh.session))).toBe(true);
    clock.advance(5_001);
    expect(await sessions.validate(token)).toEqual({ valid: false, reason: 'unknown' });
    // Past its window the old token cannot end its successor either.
    expect(await sessions.revoke(token)).toBe(false);
    expect((await sessions.validate(rotated.token)).valid).toBe(true);
    expect(await sessions.listForUser('alice')).toHaveLength(1);
  });

  it('C.20, C.21: logging out with a token inside its grace window ends the session it rotated into', async () => {
    const sessions = await manager({ rotationGrace: 5_000 });
    const events = record(sessions);
    const { token } = await sessions.create('alice');
    const rotated = await sessions.rotate(token);
    expect(await sessions.revoke(token)).toBe(true);
    expect((await sessions.validate(rotated.token)).valid).toBe(false);
    expect(events.revoked).toEqual([{ id: rotated.session.id, userId: 'alice', reason: 'logout' }]);
    expect(await sessions.listForUser('alice')).toEqual([]);
  });

  it('C.21: revoke takes effect at once, by token or by session; the hook carries the reason', async () => {
    const sessions = await manager();
    const events = record(sessions);
    const a = await sessions.create('alice');
    const b = await sessions.create('alice');
    expect(await sessions.revoke(a.token)).toBe(true);
    expect(await sessions.validate(a.token)).toEqual({ valid: false, reason: 'unknown' });
    expect(await sessions.revoke(b.session, { reason: 'admin' })).toBe(true);
    expect((await sessions.validate(b.token)).valid).toBe(false);
    expect(await sessions.revoke(a.token)).toBe(false);
    expect(events.revoked).toEqual([
      { id: a.session.id, userId: 'alice', reason: 'logout' },
      { id: b.session.id, userId: 'alice', reason: 'admin' },
    ]);
    // What is left are the two tombstones, marked revoked: the hash, user id and ref, no data.
    const left = await keys();
    expect(left.filter((key) => !key.includes(':t:'))).toEqual([]);
    const tombstones = await Promise.all(left.map((key) => inspector!.hGetAll(key)));
    const shape = { h: expect.any(String), u: 'alice', x: expect.any(String), k: 'revoked' };
    expect(tombstones).toEqual(driver === 'memory' ? [] : [shape, shape]);
  });

  it('C.22: no resurrection: updates and renewals after revoke write nothing', async () => {
    const sessions = await manager({ touchInterval: 0 });
    const { token } = await sessions.create('alice');
    const held = await sessions.validate(token);
    if (!held.valid) throw new Error('unreachable');
    await sessions.revoke(token);
    await expect(sessions.update(held.session, { a: 1 })).rejects.toMatchObject({ code: 'E_SESSION_INVALID', reason: 'gone' });
    clock.advance(1);
    expect((await sessions.validate(token)).valid).toBe(false);
    // Only the tombstone (marked revoked) is left.
    expect((await keys()).filter((key) => !key.includes(':t:'))).toEqual([]);
    expect(await sessions.listForUser('alice')).toEqual([]);
  });

  it('C.23: revokeAllForUser ends every session of the user and no one else; revokeOthers keeps the caller', async () => {
    const sessions = await manager();
    const alice = await Promise.all(Array.from({ length: 5 }, () => sessions.create('alice')));
    const bob = await sessions.create('bob');
    expect(await sessions.revokeOthers(alice[0]!.session)).toBe(4);
    expect((await sessions.validate(alice[0]!.token)).valid).toBe(true);
    for (const s of alice.slice(1)) expect((await sessions.validate(s.token)).valid).toBe(false);
    expect(await sessions.revokeAllForUser('alice')).toBe(1);
    expect((await sessions.validate(alice[0]!.token)).valid).toBe(false);
    expect((await sessions.validate(bob.token)).valid).toBe(true);
  });

  it('revokeById only ends a session of that user', async () => {
    const sessions = await manager();
    const a = await sessions.create('alice');
    const b = await sessions.create('bob');
    expect(await sessions.revokeById('bob', a.session.id)).toBe(false);
    expect(await sessions.revokeById('alice', 'not-an-id')).toBe(false);
    expect(await sessions.revokeById('alice', a.session.id)).toBe(true);
    expect((await sessions.validate(a.token)).valid).toBe(false);
    expect((await sessions.validate(b.token)).valid).toBe(true);
  });

  it('C.24: revokeAllForUser is race-free against concurrent logins', async () => {
    const sessions = await manager();
    for (let round = 0; round < 5; round++) {
      const before = await Promise.all(Array.from({ length: 10 }, () => sessions.create('alice')));
      const racing = Array.from({ length: 10 }, () => sessions.create('alice'));
      await sessions.revokeAllForUser('alice');
      // Every session created before revokeAllForUser was called is dead.
      for (const s of before) expect((await sessions.validate(s.token)).valid).toBe(false);
      // Racing ones either died or were created after it: they are exactly the listed ones.
      const settled = await Promise.all(racing);
      const alive = [];
      for (const s of settled) if ((await sessions.validate(s.token)).valid) alive.push(s.session.id);
      expect((await sessions.listForUser('alice')).map((s) => s.id).sort()).toEqual(alive.sort());
      await sessions.revokeAllForUser('alice');
    }
  });

  it('C.24: a login that read the epoch before revokeAllForUser cannot complete after it', async () => {
    const sessions = await manager();
    const epoch = await sessions.userEpoch('alice');
    // ... the login checks the (old) password here, while the password changes:
    await sessions.revokeAllForUser('alice', { reason: 'password-change' });
    await expect(sessions.create('alice', { epoch })).rejects.toMatchObject({ code: 'E_SESSION_INVALID', reason: 'epoch' });
    expect(await sessions.listForUser('alice')).toEqual([]);
    const fresh = await sessions.userEpoch('alice');
    expect(fresh).toBe(epoch + 1);
    expect((await sessions.create('alice', { epoch: fresh })).token).toBeTruthy();
  });

  it('C.24: login({ verify }) reads the epoch before the credentials: a password change during verify wins', async () => {
    const sessions = await manager();
    const passwords = new Map([['alice', 'old']]);
    // The documented example: the hash is loaded inside verify.
    const attempt = (password: string, during?: () => Promise<unknown>) =>
      sessions.login('alice', {
        verify: async () => {
          const stored = passwords.get('alice');
          await during?.();
          return stored === password;
        },
        data: { role: 'user' },
      });
    expect(await attempt('guess')).toBeUndefined();
    expect(await sessions.listForUser('alice')).toEqual([]);
    const changePassword = async () => {
      passwords.set('alice', 'new');
      await sessions.revokeAllForUser('alice', { reason: 'password-change' });
    };
    await expect(attempt('old', changePassword)).rejects.toMatchObject({ code: 'E_SESSION_INVALID', reason: 'epoch' });
    expect(await sessions.listForUser('alice')).toEqual([]);
    expect(await attempt('old')).toBeUndefined();
    const issued = await attempt('new');
    expect(issued?.session).toMatchObject({ userId: 'alice', data: { role: 'user' } });
    expect((await sessions.validate(issued!.token)).valid).toBe(true);
  });

  it('C.25: the per-user index cleans itself: 10k short sessions expire and the index goes away', async () => {
    // Long enough that no key expires in Redis (real time) while the sessions are being created.
    const sessions = await manager({ idleTimeout: 60_000, absoluteTimeout: 120_000 });
    const events = record(sessions);
    const n = driver === 'ioredis' ? 2_000 : 10_000;
    for (let i = 0; i < n; i += 500) {
      await Promise.all(Array.from({ length: Math.min(500, n - i) }, () => sessions.create('alice')));
    }
    expect(await sessions.listForUser('alice')).toHaveLength(n);
    clock.advance(60_001);
    expect(await sessions.listForUser('alice')).toEqual([]);
    expect(events.expired).toHaveLength(n);
    expect(events.expired.every((e) => e.detectedBy === 'prune')).toBe(true);
    // Only tombstones are left, each expiring with its session's absolute deadline.
    expect((await keys()).filter((key) => !key.includes(':t:'))).toEqual([]);
  }, 60_000);

  it('C.26: listForUser returns metadata and the current flag, never a hash, token or data', async () => {
    const sessions = await manager();
    const a = await sessions.create('alice', { ip: '10.0.0.1', userAgent: 'Firefox\u0000\r\nX', data: { role: 'admin' } });
    clock.advance(1_000);
    const b = await sessions.create('alice', { ip: '10.0.0.2', userAgent: 'Safari' });
    const list = await sessions.listForUser('alice', { current: b.session });
    expect(list).toEqual([
      {
        id: a.session.id,
        createdAt: a.session.createdAt,
        lastSeenAt: a.session.createdAt,
        expiresAt: a.session.expiresAt,
        absoluteExpiresAt: a.session.absoluteExpiresAt,
        ip: '10.0.0.1',
        userAgent: 'FirefoxX',
        current: false,
      },
      expect.objectContaining({ id: b.session.id, ip: '10.0.0.2', userAgent: 'Safari', current: true }),
    ]);
    const json = JSON.stringify(list);
    for (const forbidden of ['"h"', 'hash', 'secret', 'token', 'admin', parseToken(a.token)!.secret])
      expect(json).not.toContain(forbidden);
  });

  it('C.27: 50 parallel logins with a limit of 5 leave exactly 5 (evict-oldest)', async () => {
    const sessions = await manager({ maxSessionsPerUser: 5 });
    const events = record(sessions);
    const created = await Promise.all(Array.from({ length: 50 }, () => sessions.create('alice')));
    const list = await sessions.listForUser('alice');
    expect(list).toHaveLength(5);
    let valid = 0;
    for (const s of created) if ((await sessions.validate(s.token)).valid) valid++;
    expect(valid).toBe(5);
    expect(events.revoked.filter((e) => e.reason === 'limit')).toHaveLength(45);
  });

  it('C.27: evict-oldest evicts the earliest-created sessions', async () => {
    const sessions = await manager({ maxSessionsPerUser: 3 });
    const created = [];
    for (let i = 0; i < 5; i++) {
      created.push(await sessions.create('alice'));
      clock.advance(1);
    }
    // Using the oldest does not save it: the order is by creation.
    expect((await sessions.validate(created[0]!.token)).valid).toBe(false);
    expect((await sessions.listForUser('alice')).map((s) => s.id)).toEqual(created.slice(2).map((c) => c.session.id));
  });

  it('C.27: with onLimit reject, exactly 5 of 50 parallel logins succeed', async () => {
    const sessions = await manager({ maxSessionsPerUser: 5, onLimit: 'reject' });
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => sessions.create('alice')));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(rejected).toHaveLength(45);
    expect(rejected.every((r) => r.reason instanceof SessionLimitError && r.reason.code === 'E_SESSION_LIMIT')).toBe(true);
    expect(await sessions.listForUser('alice')).toHaveLength(5);
  });

  it('C.28: concurrent updates of different keys both survive', async () => {
    const sessions = await manager();
    const { token } = await sessions.create('alice');
    const [one, two] = await Promise.all([sessions.validate(token), sessions.validate(token)]);
    if (!one.valid || !two.valid) throw new Error('unreachable');
    await Promise.all([sessions.update(one.session, { a: 1 }), sessions.update(two.session, { b: 2 })]);
    const after = await sessions.validate(token);
    expect(after.valid && after.session.data).toEqual({ a: 1, b: 2 });
    // Deleting a key (undefined) leaves the others.
    if (!after.valid) throw new Error('unreachable');
    const next = await sessions.update(after.session, { a: undefined });
    expect(next.data).toEqual({ b: 2 });
    const again = await sessions.validate(token);
    expect(again.valid && again.session.data).toEqual({ b: 2 });
  });

  it('C.29: size and key limits hold, also under concurrent writes; polluting keys are refused', async () => {
    const sessions = await manager({ maxDataBytes: 1_000, maxDataKeys: 4 });
    await expect(sessions.create('alice', { data: { blob: 'x'.repeat(2_000) } })).rejects.toThrow(SessionDataError);
    const { token } = await sessions.create('alice');
    const [one, two] = await Promise.all([sessions.validate(token), sessions.validate(token)]);
    if (!one.valid || !two.valid) throw new Error('unreachable');
    // Each write fits alone; together they do not: the store refuses the second.
    const results = await Promise.allSettled([
      sessions.update(one.session, { blob: 'x'.repeat(600) }),
      sessions.update(two.session, { nested: 'y'.repeat(600) }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected' && r.reason instanceof SessionDataError)).toHaveLength(1);
    await expect(sessions.update(one.session, JSON.parse('{"__proto__": {"role": "admin"}}'))).rejects.toThrow(SessionDataError);
    await expect(sessions.update(one.session, { nested: { constructor: { prototype: {} } } })).rejects.toThrow(SessionDataError);
    const after = await sessions.validate(token);
    expect(after.valid && Object.keys(after.session.data).length).toBe(1);
  });

  it('typed data: a Standard Schema checks every write and its output is what is stored', async () => {
    const schema: StandardSchemaV1<unknown, { role: string; visits: number }> = {
      '~standard': {
        version: 1,
        vendor: 'test',
        validate: (value) => {
          const v = value as { role?: unknown; visits?: unknown };
          if (typeof v.role !== 'string') return { issues: [{ message: 'role must be a string', path: ['role'] }] };
          return { value: { role: v.role, visits: typeof v.visits === 'number' ? v.visits : 0 } };
        },
      },
    };
    const sessions = await sessionsOn(store, { clock, namespace, schema });
    await expect(sessions.create('alice', { data: { role: 1 as unknown as string, visits: 0 } })).rejects.toMatchObject({
      code: 'E_SESSION_DATA',
      issues: [{ message: 'role must be a string', path: ['role'] }],
    });
    const { session } = await sessions.create('alice', { data: { role: 'user' } as { role: string; visits: number } });
    expect(session.data).toEqual({ role: 'user', visits: 0 });
    const next = await sessions.update(session, { visits: 3 });
    expect(next.data.visits).toBe(3);
    await expect(sessions.update(next, { role: undefined })).rejects.toThrow(SessionDataError);
  });

  it('typed data under concurrency: two updates each valid alone never store data the schema rejects', async () => {
    // A cross-field rule: seats only on the pro plan.
    const schema: StandardSchemaV1<unknown, { plan?: 'free' | 'pro'; seats?: number; note?: string }> = {
      '~standard': {
        version: 1,
        vendor: 'test',
        validate: (value) => {
          const v = value as { plan?: string; seats?: unknown };
          if (v.seats !== undefined && v.plan !== 'pro') return { issues: [{ message: 'seats need the pro plan' }] };
          return { value: value as { plan?: 'free' | 'pro'; seats?: number } };
        },
      },
    };
    const sessions = await sessionsOn(store, { clock, namespace, schema });
    for (let round = 0; round < 5; round++) {
      const { token } = await sessions.create('alice', { data: { plan: 'pro' } });
      const [one, two] = await Promise.all([sessions.validate(token), sessions.validate(token)]);
      if (!one.valid || !two.valid) throw new Error('unreachable');
      const results = await Promise.allSettled([
        sessions.update(one.session, { seats: 10 }),
        sessions.update(two.session, { plan: 'free' }),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(rejected.map((r) => (r.reason as { code?: string }).code)).toEqual(['E_SESSION_DATA']);
      const after = await sessions.validate(token);
      expect(after.valid).toBe(true);
      if (!after.valid) throw new Error('unreachable');
      expect([{ plan: 'pro', seats: 10 }, { plan: 'free' }]).toContainEqual(after.session.data);
      // Updates of unrelated keys still both land: the loser merges onto the winner's data.
      const [three, four] = await Promise.all([sessions.validate(token), sessions.validate(token)]);
      if (!three.valid || !four.valid) throw new Error('unreachable');
      const [x] = await Promise.all([
        sessions.update(three.session, { note: 'a' }),
        sessions.update(four.session, { seats: undefined }),
      ]);
      expect(x.data.note).toBe('a');
      const last = await sessions.validate(token);
      expect(last.valid && { note: last.session.data.note, seats: last.session.data.seats }).toEqual({
        note: 'a',
        seats: undefined,
      });
    }
  });

  it('typed data on read: a stored session the schema rejects is refused (invalid-data), not handed out, not deleted', async () => {
    const untyped = await manager();
    const schema: StandardSchemaV1<unknown, { role: string }> = {
      '~standard': {
        version: 1,
        vendor: 'test',
        validate: (value) =>
          typeof (value as { role?: unknown }).role === 'string'
            ? { value: value as { role: string } }
            : { issues: [{ message: 'role must be a string', path: ['role'] }] },
      },
    };
    const typed = await sessionsOn(store, { clock, namespace, schema, bruteForce: { threshold: 1, windowMs: 60_000 } });
    const events = record(typed);
    // Written by another version of the app (no schema, or an older one).
    const { token } = await untyped.create('alice', { data: { role: 7 as unknown as string } });
    expect(await typed.validate(token, { ip: '192.0.2.1' })).toEqual({ valid: false, reason: 'invalid-data' });
    expect(events.invalid).toEqual([{ reason: 'data', id: parseToken(token)!.id, ip: '192.0.2.1' }]);
    expect(events['brute-force']).toEqual([]);
    await expect(typed.rotate(token)).rejects.toMatchObject({ code: 'E_SESSION_DATA' });
    // Left as it was: the other app version still reads it.
    expect((await untyped.validate(token)).valid).toBe(true);
    const fine = await typed.create('alice', { data: { role: 'user' } });
    expect((await typed.validate(fine.token)).valid).toBe(true);
  });

  it('C.35: hooks fire exactly once per action and carry no secret', async () => {
    const sessions = await manager({ rotationGrace: 1_000 });
    const events = record(sessions);
    const { token, session } = await sessions.create('alice');
    const rotated = await sessions.rotate(token);
    await sessions.revoke(rotated.token);
    const other = await sessions.create('alice');
    clock.advance(IDLE + 1);
    await Promise.all([sessions.validate(other.token), sessions.validate(other.token)]);
    expect(events.created.map((e) => e.id)).toEqual([session.id, other.session.id]);
    expect(events.rotated).toHaveLength(1);
    expect(events.revoked).toEqual([{ id: rotated.session.id, userId: 'alice', reason: 'logout' }]);
    expect(events.expired).toEqual([{ id: other.session.id, userId: 'alice', detectedBy: 'validate' }]);
    const dump = JSON.stringify(events);
    for (const t of [token, rotated.token, other.token]) expect(dump).not.toContain(parseToken(t)!.secret);
  });

  it('C.36: 1000 invalid tokens from one IP raise the brute-force signal; wrong secrets for one id too', async () => {
    const sessions = await manager();
    const events = record(sessions);
    const { tag } = userRef(SECRET, 'x');
    for (let i = 0; i < 1_000; i++) {
      const result = await sessions.validate(formatToken(tag, newId(), newSecret()), { ip: '203.0.113.9' });
      expect(result.valid).toBe(false);
    }
    expect(events['brute-force']).toEqual([{ scope: 'ip', subject: '203.0.113.9', attempts: 100, windowMs: 60_000 }]);
    expect(events.invalid).toHaveLength(1_000);
    const { token } = await sessions.create('alice');
    const { id } = parseToken(token)!;
    for (let i = 0; i < 100; i++) await sessions.validate(formatToken(parseToken(token)!.tag, id, newSecret()));
    expect(events['brute-force'].filter((e) => e.scope === 'id')).toEqual([
      { scope: 'id', subject: id, attempts: 100, windowMs: 60_000 },
    ]);
    clock.advance(60_000);
    for (let i = 0; i < 100; i++) await sessions.validate('junk', { ip: '203.0.113.9' });
    expect(events['brute-force'].filter((e) => e.scope === 'ip')).toHaveLength(2);
  });

  it('C.36: revoked, rotated-away, evicted and expired tokens with their own secret are stale cookies, not guesses; a wrong secret for them still counts', async () => {
    const bf = { threshold: 3, windowMs: 60_000 };
    const sessions = await manager({ bruteForce: bf });
    const limited = await manager({ bruteForce: bf, maxSessionsPerUser: 1 });
    const events = record(sessions);
    const limitedEvents = record(limited);
    const [a, b, c, e] = await Promise.all(['alice', 'alice', 'alice', 'alice'].map((u) => sessions.create(u)));
    const f = await sessions.create('bob');
    const g = await limited.create('carol');
    await limited.create('carol'); // evicts g
    expect(await sessions.revoke(a!.token)).toBe(true);
    expect(await sessions.revokeById('alice', b!.session.id)).toBe(true);
    expect(await sessions.revokeAllForUser('bob')).toBe(1);
    await sessions.rotate(c!.token);
    clock.advance(IDLE + 1); // e expires (and c's successor)
    const ip = '198.51.100.20';
    const stale = [a!, b!, c!, f, e!];
    for (let round = 0; round < 3; round++) {
      for (const s of stale) expect((await sessions.validate(s.token, { ip })).valid).toBe(false);
      expect(await limited.validate(g.token, { ip })).toEqual({ valid: false, reason: 'unknown' });
    }
    expect(await sessions.validate(a!.token, { ip })).toEqual({ valid: false, reason: 'unknown' });
    expect(await sessions.validate(e!.token, { ip })).toEqual({ valid: false, reason: 'expired' });
    expect(events['brute-force']).toEqual([]);
    expect(limitedEvents['brute-force']).toEqual([]);
    // Reported, so a replay after logout is visible, but not counted.
    const reasons = (list: { reason: string }[]) => [...new Set(list.map((x) => x.reason))].sort();
    expect(reasons(events.invalid)).toEqual(['revoked', 'rotated']);
    expect(events.invalid.filter((x) => x.id === a!.session.id)[0]).toEqual({ reason: 'revoked', id: a!.session.id, ip });
    expect(events.invalid.filter((x) => x.id === c!.session.id)[0]).toEqual({ reason: 'rotated', id: c!.session.id, ip });
    expect(reasons(limitedEvents.invalid)).toEqual(['revoked']);
    // A revoked session's id with a wrong secret is a guess: per IP and per id.
    const { tag, id } = parseToken(a!.token)!;
    for (let i = 0; i < 3; i++) {
      expect(await sessions.validate(formatToken(tag, id, newSecret()), { ip: '198.51.100.21' })).toEqual({
        valid: false,
        reason: 'unknown',
      });
    }
    expect(events['brute-force']).toEqual([
      { scope: 'ip', subject: '198.51.100.21', attempts: 3, windowMs: 60_000 },
      { scope: 'id', subject: id, attempts: 3, windowMs: 60_000 },
    ]);
    // Unknown ids count as before; the stale cookies' IP counts only its guesses.
    for (let i = 0; i < 2; i++) await sessions.validate(formatToken(tag, newId(), newSecret()), { ip });
    expect(events['brute-force']).toHaveLength(2);
    await sessions.validate(formatToken(tag, newId(), newSecret()), { ip });
    expect(events['brute-force'].at(-1)).toEqual({ scope: 'ip', subject: ip, attempts: 3, windowMs: 60_000 });
  });

  it('C.11 token guessing: 10^6 random well-formed tokens and one-character flips of a live one never validate', async () => {
    // Every guess goes through validate(): its session and tombstone reads, two HGETALLs in one
    // round trip on Redis. Measured on the 2-core dev machine, Redis on the same host, 200 in
    // flight: memory ~5 s, node-redis ~13 s, ioredis ~37 s with auto-pipelining (45 s when the
    // two reads were two round trips), hence the option here. The test timeout leaves room for
    // a busier CI box.
    // A generous command timeout: a stall of the (shared) machine must not fail the count.
    const guessStore =
      driver === 'memory'
        ? store
        : await storeFor(driver, undefined, { commandTimeout: 5_000 }, { autoPipelining: driver === 'ioredis' });
    const sessions = await sessionsOn<Data>(guessStore, { clock, namespace, bruteForce: false });
    const { token } = await sessions.create('alice');
    const { tag } = parseToken(token)!;
    const n = 1_000_000;
    // A fixed number of validations in flight (a new one starts as soon as one ends).
    const inFlight = 200;
    const chunk = 100;
    let started = 0;
    let successes = 0;
    const worker = async (): Promise<void> => {
      while (started < n) {
        const count = Math.min(chunk, n - started);
        started += count;
        const bytes = crypto.randomBytes(count * 48);
        for (let j = 0; j < count; j++) {
          const id = bytes.subarray(j * 48, j * 48 + 16).toString('base64url');
          const secret = bytes.subarray(j * 48 + 16, j * 48 + 48).toString('base64url');
          if ((await sessions.validate(formatToken(tag, id, secret))).valid) successes++;
        }
      }
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
    expect(started).toBe(n);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (let i = 3; i < token.length; i++) {
      if (token[i] === '.') continue;
      for (const shift of [1, 17, 63]) {
        const flipped = token.slice(0, i) + alphabet[(alphabet.indexOf(token[i]!) + shift) % 64] + token.slice(i + 1);
        if ((await sessions.validate(flipped)).valid) successes++;
      }
    }
    expect(successes).toBe(0);
    expect((await sessions.validate(token)).valid).toBe(true);
  }, 180_000);

  it('options are checked at construction', async () => {
    const bad = [
      { idleTimeout: -1 },
      { idleTimeout: 10, absoluteTimeout: 5 },
      { touchInterval: IDLE },
      { rotationGrace: 120_000 },
      { maxSessionsPerUser: 0 },
      { onLimit: 'drop' },
      { namespace: 'a b' },
      { secret: 'short' },
      { secret: [] },
      { bruteForce: { threshold: 0 } },
    ];
    const accepted = [];
    for (const options of bad) {
      const error = await sessionsOn(store, options as never).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (!isLarderError(error, 'E_INVALID_OPTION')) accepted.push(options);
    }
    expect(accepted).toEqual([]);
  });

  it('a secret can rotate: sessions tagged under the old secret stay valid and revocable', async () => {
    const old = 'o'.repeat(32);
    const before = await sessionsOn<Data>(store, { clock, namespace, secret: old });
    const { token } = await before.create('alice');
    const after = await sessionsOn<Data>(store, { clock, namespace, secret: ['n'.repeat(32), old] });
    const fresh = await after.create('alice');
    expect((await after.validate(token)).valid).toBe(true);
    expect(await after.listForUser('alice')).toHaveLength(2);
    expect(await after.revokeAllForUser('alice')).toBe(2);
    expect((await after.validate(token)).valid).toBe(false);
    expect((await after.validate(fresh.token)).valid).toBe(false);
  });

  it('session-bound CSRF tokens do not transfer between sessions (C.34)', async () => {
    const sessions = await manager();
    const a = await sessions.create('alice');
    const b = await sessions.create('alice');
    const token = sessions.csrfToken(a.session);
    expect(sessions.verifyCsrfToken(a.session, token)).toBe(true);
    expect(sessions.verifyCsrfToken(b.session, token)).toBe(false);
    expect(sessions.verifyCsrfToken(a.session, token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'))).toBe(false);
    expect(sessions.verifyCsrfToken(a.session, undefined)).toBe(false);
  });

  it('the resolved options never show the secrets', async () => {
    const sessions = await manager();
    expect(sessions.options).toMatchObject({ namespace, idleTimeout: IDLE, absoluteTimeout: ABSOLUTE });
    expect(JSON.stringify(Object.keys(sessions.options))).not.toContain('secret');
    expect(Object.isFrozen(sessions.options)).toBe(true);
  });

  it('close() refuses later calls', async () => {
    const sessions = await manager();
    await sessions.close();
    await expect(sessions.create('alice')).rejects.toMatchObject({ code: 'E_CLOSED' });
    expect(isLarderError(new SessionInvalidError('gone', 'x'), 'E_SESSION_INVALID')).toBe(true);
  });
});

describe.each(['redis', 'ioredis'] as const)('session layout in Redis over %s', (driver) => {
  let store: Store;
  let clock: ManualClock;
  let namespace: string;
  let redis: NodeRedis;

  async function keys(): Promise<string[]> {
    const found: string[] = [];
    for await (const batch of redis.scanIterator({ MATCH: `${namespace}:*`, COUNT: 1000 })) found.push(...batch);
    return found;
  }

  async function dump(key: string): Promise<string> {
    const type = await redis.type(key);
    if (type === 'hash') return JSON.stringify(await redis.hGetAll(key));
    if (type === 'zset') return JSON.stringify(await redis.zRange(key, 0, -1));
    return String(await redis.get(key));
  }

  beforeEach(async () => {
    store = await storeFor(driver);
    clock = new ManualClock();
    namespace = uniqueNamespace('sess');
    inspector ??= await nodeRedis();
    redis = inspector;
  });

  it('C.3: the store holds the hash of the secret, never the secret or the token', async () => {
    const sessions = await sessionsOn<Data>(store, { clock, namespace });
    const { token } = await sessions.create('alice', { data: { role: 'user' } });
    await sessions.revokeAllForUser('nobody');
    const { secret } = parseToken(token)!;
    const found = await keys();
    expect(found.length).toBeGreaterThanOrEqual(2);
    const dumps = await Promise.all(found.map(async (key) => key + (await dump(key))));
    expect(dumps.filter((text) => text.includes(secret) || text.includes(token))).toEqual([]);
  });

  it("cluster layout: a user's session, index and epoch keys share one hash slot", async () => {
    const sessions = await sessionsOn<Data>(store, { clock, namespace });
    await sessions.create('alice');
    await sessions.revokeAllForUser('alice');
    await sessions.create('alice');
    const found = await keys();
    expect(found.map((k) => k.split(':')[1])).toEqual(found.map(() => `{${userRef(SECRET, 'alice').tag}}`));
    expect(new Set(found.map(slotOf)).size).toBe(1);
    // The revoked session's tombstone stays (marked revoked) beside the new session's.
    expect(found.map((k) => k.split(':')[2]!).sort((a, b) => a.localeCompare(b))).toEqual(['e', 's', 't', 't', 'u']);
  });

  it('C.17: after a renewal near the absolute deadline the key TTL is within the remaining lifetime', async () => {
    const sessions = await sessionsOn<Data>(store, { clock, namespace });
    const { token, session } = await sessions.create('alice');
    while (clock.now() + IDLE / 2 < session.absoluteExpiresAt - IDLE / 3) {
      clock.advance(IDLE / 2);
      await sessions.validate(token);
    }
    clock.advance(session.absoluteExpiresAt - IDLE / 3 - clock.now());
    expect(await sessions.validate(token)).toMatchObject({ valid: true, renewed: true });
    const key = `${namespace}:{${parseToken(token)!.tag}}:s:${session.id}`;
    const pttl = await redis.pTTL(key);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(session.absoluteExpiresAt - clock.now());
    const user = userRef(SECRET, 'alice');
    expect(await redis.pTTL(`${namespace}:{${user.tag}}:u:${user.uref}`)).toBeLessThanOrEqual(
      session.absoluteExpiresAt - clock.now(),
    );
  });

  it('C.17, TTL drift: a key whose TTL was extended by hand is still rejected by its timestamps', async () => {
    const sessions = await sessionsOn<Data>(store, { clock, namespace });
    const events = record(sessions);
    const { token, session } = await sessions.create('alice');
    const key = `${namespace}:{${parseToken(token)!.tag}}:s:${session.id}`;
    await redis.pExpire(key, 30 * 24 * 3600_000);
    clock.advance(IDLE + 1);
    expect(await sessions.validate(token)).toEqual({ valid: false, reason: 'expired' });
    expect(await redis.exists(key)).toBe(0);
    expect(events.expired).toHaveLength(1);
  });

  it('C.25: the index holds every live session, expires with its longest member, and is pruned away', async () => {
    const sessions = await sessionsOn<Data>(store, { clock, namespace, idleTimeout: 60_000, absoluteTimeout: 120_000 });
    await Promise.all(Array.from({ length: 500 }, () => sessions.create('alice')));
    const user = userRef(SECRET, 'alice');
    const index = `${namespace}:{${user.tag}}:u:${user.uref}`;
    expect(await redis.zCard(index)).toBe(500);
    const pttl = await redis.pTTL(index);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(60_000);
    clock.advance(60_001);
    expect(await sessions.listForUser('alice')).toEqual([]);
    const left = await keys();
    expect(left.filter((key) => !key.includes(':t:'))).toEqual([]);
    expect(left).toHaveLength(500);
    for (const key of left.slice(0, 5)) {
      expect(Object.keys(await redis.hGetAll(key)).sort()).toEqual(['h', 'r', 'u', 'x']);
      const ttl = await redis.pTTL(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(120_000);
    }
  });

  it('a Redis store without a secret is refused', async () => {
    const { createSessions } = await import('../../src/sessions/index.js');
    expect(() => createSessions({ store })).toThrow(/secret/);
  });
});
