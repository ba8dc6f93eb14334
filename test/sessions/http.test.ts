/**
 * The attack table (study C.11) and the HTTP checklist items, written once and run on every
 * framework: a real server on 127.0.0.1 per framework, `fetch` (or a raw socket for bytes fetch
 * refuses), and a private redis-server so `INFO commandstats` counts only this file's commands.
 * Time moves on a ManualClock.
 */
import crypto from 'node:crypto';
import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { expressSessions } from '../../src/adapters/express.js';
import { fastifySessions } from '../../src/adapters/fastify.js';
import { honoSessions } from '../../src/adapters/hono.js';
import { nodeSessions } from '../../src/adapters/node.js';
import { InvalidOptionError } from '../../src/errors.js';
import { SessionHeaders, type SessionManager, type SessionMiddlewareOptions } from '../../src/sessions/index.js';
import { applyOnWriteHead } from '../../src/sessions/node-http.js';
import { userRef } from '../../src/sessions/keys.js';
import { formatToken, hashSecret, newId, newSecret, parseToken } from '../../src/sessions/token.js';
import type { Store } from '../../src/stores/store.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { commandStats, ManualClock, sleep, statsDelta, uniqueNamespace, type NodeRedis } from '../helpers/redis.js';
import { systemClock } from '../../src/core/clock.js';
import { FRAMEWORKS, RAW_HEADERS, startApp, type Framework, type TestApp, type TestData } from './apps.js';
import {
  closeAll,
  http,
  nodeRedis,
  rawRequest,
  record,
  SECRET,
  sessionsOn,
  storeFor,
  throwsCode,
  tokenFrom,
  type Recorded,
} from './helpers.js';

const MIN = 60_000;
const IDLE = 30 * MIN;
const ABSOLUTE = 12 * 60 * MIN;
const TOUCH = 3 * MIN;
const COOKIE_ATTRIBUTES = 'Path=/; HttpOnly; Secure; SameSite=Lax';
const SAME_ORIGIN = { 'sec-fetch-site': 'same-origin' };

let server: RedisServer;
let inspector: NodeRedis;
let store: Store;

beforeAll(async () => {
  server = await startRedis();
  inspector = await nodeRedis(server.url);
  store = await storeFor('redis', server.url);
});

afterAll(async () => {
  await closeAll();
  await inspector?.close();
  await server?.stop();
});

/** Commands the server ran since `before`, without the INFO calls that measure them. */
async function commandsSince(before: Map<string, number>): Promise<Record<string, number>> {
  const delta = statsDelta(before, await commandStats(inspector));
  delete delta.info;
  return delta;
}

const factories = {
  node: nodeSessions,
  express: expressSessions,
  fastify: fastifySessions,
  hono: honoSessions,
} as const;

describe.each(FRAMEWORKS)('sessions over HTTP with %s', (framework: Framework) => {
  let clock: ManualClock;
  let namespace: string;
  let sessions: SessionManager<TestData>;
  let events: Recorded;
  let app: TestApp;
  const issued: string[] = [];
  const extra: (() => Promise<unknown>)[] = [];

  async function another(
    options: Parameters<typeof sessionsOn<TestData>>[1] = {},
    middleware: SessionMiddlewareOptions = {},
  ): Promise<{ sessions: SessionManager<TestData>; app: TestApp }> {
    const other = await sessionsOn<TestData>(store, { clock, namespace: uniqueNamespace('http'), ...options });
    const otherApp = await startApp(framework, other, middleware);
    extra.push(() => otherApp.close());
    return { sessions: other, app: otherApp };
  }

  /** Logs in and returns the cookie header value for the new session. */
  async function login(user = 'alice', target: TestApp = app): Promise<{ cookie: string; token: string }> {
    const res = await http(target.url, `/login?user=${user}`, { method: 'POST', headers: SAME_ORIGIN });
    expect(res.status).toBe(200);
    const token = tokenFrom(res.setCookies)!;
    issued.push(token);
    return { token, cookie: `__Host-sid=${token}` };
  }

  beforeAll(async () => {
    clock = new ManualClock();
    namespace = uniqueNamespace(`http-${framework}`);
    sessions = await sessionsOn<TestData>(store, { clock, namespace, touchInterval: TOUCH });
    events = record(sessions);
    app = await startApp(framework, sessions);
  });

  afterAll(async () => {
    for (const close of extra.splice(0)) await close();
    await app?.close();
  });

  it('login -> exact cookie attributes -> authorised request -> logout -> replay refused (C.8, C.11, C.12, C.21)', async () => {
    const res = await http(app.url, '/login?user=alice&role=user', { method: 'POST', headers: SAME_ORIGIN });
    expect(res.status).toBe(200);
    const token = tokenFrom(res.setCookies)!;
    issued.push(token);
    expect(res.setCookies).toEqual([`__Host-sid=${token}; Max-Age=43200; ${COOKIE_ATTRIBUTES}`]);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const me = await http(app.url, '/me', { cookie: `theme=dark; __Host-sid=${token}` });
    expect(me).toMatchObject({ status: 200, body: { user: 'alice', data: { role: 'user' } } });
    expect(me.setCookies).toEqual([]);
    const out = await http(app.url, '/logout', { method: 'POST', cookie: `__Host-sid=${token}`, headers: SAME_ORIGIN });
    expect(out.status).toBe(204);
    expect(out.setCookies).toEqual([`__Host-sid=; Max-Age=0; ${COOKIE_ATTRIBUTES}`]);
    expect(out.headers.get('cache-control')).toBe('no-store');
    const before = app.hits.get('/me') ?? 0;
    const replay = await http(app.url, '/me', { cookie: `__Host-sid=${token}` });
    expect(replay.status).toBe(401);
    expect(app.hits.get('/me') ?? 0).toBe(before);
    // The stale cookie is cleared on sight.
    expect(replay.setCookies).toEqual([`__Host-sid=; Max-Age=0; ${COOKIE_ATTRIBUTES}`]);
  });

  it('C.10: Max-Age follows the absolute deadline: at creation, at each renewal, near the limit', async () => {
    const { cookie } = await login();
    clock.advance(TOUCH);
    const renewed = await http(app.url, '/me', { cookie });
    expect(renewed.status).toBe(200);
    expect(renewed.setCookies).toEqual([`${cookie}; Max-Age=${(ABSOLUTE - TOUCH) / 1000}; ${COOKIE_ATTRIBUTES}`]);
    expect(renewed.headers.get('cache-control')).toBe('no-store');
    // Inside the interval: no renewal, no cookie.
    expect((await http(app.url, '/me', { cookie })).setCookies).toEqual([]);
    // Near the absolute deadline the cookie lives only what is left.
    let elapsed = TOUCH;
    while (elapsed + IDLE / 2 < ABSOLUTE - 90_000) {
      clock.advance(IDLE / 2);
      elapsed += IDLE / 2;
      expect((await http(app.url, '/me', { cookie })).status).toBe(200);
    }
    clock.advance(ABSOLUTE - 90_000 - elapsed);
    const late = await http(app.url, '/me', { cookie });
    expect(late.setCookies).toEqual([`${cookie}; Max-Age=90; ${COOKIE_ATTRIBUTES}`]);
    clock.advance(90_000);
    expect((await http(app.url, '/me', { cookie })).status).toBe(401);
  });

  it('C.12, C.13: a handler answering by hand (raw Response, writeHead, its own Cache-Control, Set-Cookie and Vary) keeps the session headers', async () => {
    const noStore = 'no-store';
    const first = await http(app.url, '/raw/login?user=alice', { method: 'POST', headers: SAME_ORIGIN });
    expect(first.status).toBe(200);
    const token = tokenFrom(first.setCookies)!;
    issued.push(token);
    const cookie = `__Host-sid=${token}`;
    expect(first.setCookies).toEqual(
      expect.arrayContaining([RAW_HEADERS['set-cookie'], `${cookie}; Max-Age=43200; ${COOKIE_ATTRIBUTES}`]),
    );
    expect(first.setCookies).toHaveLength(2);
    expect(first.headers.get('cache-control')).toBe(noStore);
    expect(first.body).toBe('welcome');
    // Inside the renewal interval the handler's own caching stands: no session cookie goes out.
    const quiet = await http(app.url, '/raw/me', { cookie });
    expect(quiet).toMatchObject({ status: 200, body: 'alice', setCookies: [RAW_HEADERS['set-cookie']] });
    expect(quiet.headers.get('cache-control')).toBe(RAW_HEADERS['cache-control']);
    // A renewal carries the token: never cacheable, whatever the handler said.
    clock.advance(TOUCH);
    const renewed = await http(app.url, '/raw/me', { cookie });
    expect(renewed.setCookies).toContain(`${cookie}; Max-Age=${(ABSOLUTE - TOUCH) / 1000}; ${COOKIE_ATTRIBUTES}`);
    expect(renewed.headers.get('cache-control')).toBe(noStore);
    // Cookie-authenticated unsafe requests vary on the CSRF headers, merged with the handler's Vary.
    const out = await http(app.url, '/raw/logout', { method: 'POST', cookie, headers: SAME_ORIGIN });
    expect(out.status).toBe(200);
    expect(out.setCookies).toContain(`__Host-sid=; Max-Age=0; ${COOKIE_ATTRIBUTES}`);
    expect(out.headers.get('cache-control')).toBe(noStore);
    expect(out.headers.get('vary')).toBe('Accept-Encoding, Sec-Fetch-Site, Origin');
    // A stale cookie is cleared even by a handler that answers by hand.
    const stale = await http(app.url, '/raw/me', { cookie });
    expect(stale).toMatchObject({ status: 200, body: 'nobody' });
    expect(stale.setCookies).toContain(`__Host-sid=; Max-Age=0; ${COOKIE_ATTRIBUTES}`);
    expect(stale.headers.get('cache-control')).toBe(noStore);
  });

  it('C.15, C.16: idle and absolute timeouts over HTTP', async () => {
    const idle = await login();
    clock.advance(IDLE + 1_000);
    expect((await http(app.url, '/me', { cookie: idle.cookie })).status).toBe(401);
    const active = await login();
    const statuses = new Set<number>();
    for (let t = IDLE / 2; t < ABSOLUTE; t += IDLE / 2) {
      clock.advance(IDLE / 2);
      statuses.add((await http(app.url, '/me', { cookie: active.cookie })).status);
    }
    expect([...statuses]).toEqual([200]);
    clock.advance(IDLE / 2 + 1_000);
    expect((await http(app.url, '/me', { cookie: active.cookie })).status).toBe(401);
  });

  it('C.15 on real time: a cookie whose session Redis already dropped is reported expired (not invalid), cleared, and raises no brute-force signal', async () => {
    const real = await another({
      clock: systemClock,
      idleTimeout: 300,
      absoluteTimeout: 1_500,
      bruteForce: { threshold: 2, windowMs: 60_000 },
    });
    const seen = record(real.sessions);
    const started = Date.now();
    const { cookie, token } = await login('alice', real.app);
    const { tag, id } = parseToken(token)!;
    await sleep(500);
    expect(await inspector.exists(`${real.sessions.options.namespace}:{${tag}}:s:${id}`)).toBe(0);
    for (let i = 0; i < 3; i++) {
      const res = await http(real.app.url, '/public', { cookie });
      expect(res.body).toEqual({ status: 'expired', user: null });
      expect(res.setCookies).toEqual([`__Host-sid=; Max-Age=0; ${COOKIE_ATTRIBUTES}`]);
    }
    expect((await http(real.app.url, '/me', { cookie })).status).toBe(401);
    expect(seen.expired).toEqual([{ id, userId: 'alice', detectedBy: 'validate' }]);
    expect(seen.invalid).toEqual([]);
    expect(seen['brute-force']).toEqual([]);
    // Past the absolute deadline the browser no longer sends it; if something does, it is unknown.
    await sleep(Math.max(0, started + 1_600 - Date.now()));
    expect((await http(real.app.url, '/public', { cookie })).body).toEqual({ status: 'invalid', user: null });
  });

  it('C.36: cookies replayed after logout, revoke-all and rotation are refused but not counted as guesses; guessed ones are', async () => {
    const guarded = await another({ bruteForce: { threshold: 3, windowMs: 60_000 } });
    const seen = record(guarded.sessions);
    const out = await login('alice', guarded.app);
    await http(guarded.app.url, '/logout', { method: 'POST', cookie: out.cookie, headers: SAME_ORIGIN });
    const all = await login('alice', guarded.app);
    await http(guarded.app.url, '/admin/revoke-all?user=alice', { method: 'POST', headers: SAME_ORIGIN });
    const old = await login('alice', guarded.app);
    const rotated = await http(guarded.app.url, '/rotate', { method: 'POST', cookie: old.cookie, headers: SAME_ORIGIN });
    expect(rotated.status).toBe(200);
    for (let i = 0; i < 3; i++) {
      for (const { cookie } of [out, all, old]) {
        const res = await http(guarded.app.url, '/me', { cookie });
        expect(res.status).toBe(401);
        expect(res.setCookies).toEqual([`__Host-sid=; Max-Age=0; ${COOKIE_ATTRIBUTES}`]);
      }
    }
    expect(seen['brute-force']).toEqual([]);
    expect([...new Set(seen.invalid.map((e) => e.reason))].sort()).toEqual(['revoked', 'rotated']);
    expect(seen.invalid.every((e) => e.ip !== undefined)).toBe(true);
    // Three guesses from the same address: the signal fires.
    const { tag, id } = parseToken(out.token)!;
    for (const guess of [formatToken(tag, id, newSecret()), formatToken(tag, newId(), newSecret()), 'v1.junk']) {
      expect((await http(guarded.app.url, '/me', { cookie: `__Host-sid=${guess}` })).status).toBe(401);
    }
    expect(seen['brute-force']).toEqual([{ scope: 'ip', subject: seen.invalid.at(-1)!.ip, attempts: 3, windowMs: 60_000 }]);
  });

  it('C.18: throttled renewal: 100 requests write to Redis once (INFO commandstats)', async () => {
    const { cookie } = await login();
    let before = await commandStats(inspector);
    for (let i = 0; i < 100; i++) expect((await http(app.url, '/me', { cookie })).status).toBe(200);
    let delta = await commandsSince(before);
    // Each validation reads the session and its tombstone, pipelined: one round trip, no write.
    expect(delta).toEqual({ hgetall: 200 });
    clock.advance(TOUCH);
    before = await commandStats(inspector);
    for (let i = 0; i < 100; i++) expect((await http(app.url, '/me', { cookie })).status).toBe(200);
    delta = await commandsSince(before);
    // One renewal script: one HSET of last-seen, the session's and the index's TTL, the index score.
    expect(delta).toMatchObject({ hgetall: 200, evalsha: 1, hset: 1, zadd: 1 });
    expect(Object.keys(delta).filter((c) => ['set', 'hdel', 'del', 'expire', 'incr'].includes(c))).toEqual([]);
  });

  it('C.14: the token is only read from the cookie (not the URL, not the body, not Authorization unless enabled)', async () => {
    const { token } = await login();
    expect((await http(app.url, `/me?sid=${token}&__Host-sid=${token}`)).status).toBe(401);
    const body = await http(app.url, '/echo', {
      method: 'POST',
      headers: { ...SAME_ORIGIN, 'content-type': 'text/plain' },
      body: `sid=${token}&__Host-sid=${token}`,
    });
    expect(body.status).toBe(401);
    expect((await http(app.url, '/me', { headers: { authorization: `Bearer ${token}` } })).status).toBe(401);
    // Enabled explicitly: bearer tokens work, need no CSRF headers, and set no cookie.
    const bearer = await another({}, { bearer: true });
    const issuedBearer = await bearer.sessions.create('bob');
    const me = await http(bearer.app.url, '/echo', {
      method: 'POST',
      headers: { authorization: `Bearer ${issuedBearer.token}`, 'sec-fetch-site': 'cross-site' },
    });
    expect(me).toMatchObject({ status: 200, body: { user: 'bob' } });
    expect((await http(bearer.app.url, '/me', { headers: { authorization: 'Bearer x.y.z' } })).status).toBe(401);
    expect((await http(bearer.app.url, '/me', { headers: { authorization: `Bearer ${issuedBearer.token} extra` } })).status).toBe(
      401,
    );
  });

  it('C.11 session fixation (C.19): login issues a new token; planted and pre-login tokens get 401', async () => {
    // The attacker's own session, planted in the victim's browser.
    const attacker = await login('mallory');
    const res = await http(app.url, '/login?user=victim', { method: 'POST', cookie: attacker.cookie, headers: SAME_ORIGIN });
    const fresh = tokenFrom(res.setCookies)!;
    issued.push(fresh);
    expect(fresh).not.toBe(attacker.token);
    expect((await http(app.url, '/me', { cookie: attacker.cookie })).status).toBe(401);
    expect((await http(app.url, '/me', { cookie: `__Host-sid=${fresh}` })).body).toMatchObject({ user: 'victim' });
    // A planted unknown token is never adopted: login issues its own.
    const planted = formatToken(userRef(SECRET, 'victim').tag, newId(), newSecret());
    const again = await http(app.url, '/login?user=victim', {
      method: 'POST',
      cookie: `__Host-sid=${planted}`,
      headers: SAME_ORIGIN,
    });
    expect(tokenFrom(again.setCookies)).not.toBe(planted);
    issued.push(tokenFrom(again.setCookies)!);
    expect((await http(app.url, '/me', { cookie: `__Host-sid=${planted}` })).status).toBe(401);
    expect(await inspector.exists(`${namespace}:{${parseToken(planted)!.tag}}:s:${parseToken(planted)!.id}`)).toBe(0);
  });

  it('C.19: a privilege change rotates the token; the old one gets 401', async () => {
    const { cookie, token } = await login();
    const res = await http(app.url, '/rotate?role=admin', { method: 'POST', cookie, headers: SAME_ORIGIN });
    expect(res.status).toBe(200);
    const rotated = tokenFrom(res.setCookies)!;
    issued.push(rotated);
    expect(rotated).not.toBe(token);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect((await http(app.url, '/me', { cookie })).status).toBe(401);
    expect((await http(app.url, '/me', { cookie: `__Host-sid=${rotated}` })).body).toMatchObject({ data: { role: 'admin' } });
  });

  it('C.11 replay after rotation (C.20): the old token works within the grace window only', async () => {
    const graced = await another({ rotationGrace: 5_000 });
    const { cookie } = await login('alice', graced.app);
    const res = await http(graced.app.url, '/rotate', { method: 'POST', cookie, headers: SAME_ORIGIN });
    const rotated = tokenFrom(res.setCookies)!;
    issued.push(rotated);
    const inGrace = await http(graced.app.url, '/me', { cookie });
    expect(inGrace).toMatchObject({ status: 200, body: { user: 'alice', grace: true } });
    // The grace token is read-only: it cannot rotate again, write, revoke others or get a CSRF token.
    const writes = [
      await http(graced.app.url, '/rotate', { method: 'POST', cookie, headers: SAME_ORIGIN }),
      await http(graced.app.url, '/data?key=a&value=1', { method: 'POST', cookie, headers: SAME_ORIGIN }),
      await http(graced.app.url, '/revoke-others', { method: 'POST', cookie, headers: SAME_ORIGIN }),
      await http(graced.app.url, '/csrf', { cookie }),
    ];
    expect(writes.map((r) => r.status)).toEqual([403, 403, 403, 403]);
    const successor = await http(graced.app.url, '/me', { cookie: `__Host-sid=${rotated}` });
    expect(successor).toMatchObject({ status: 200, body: { data: {}, grace: false } });
    clock.advance(5_001);
    expect((await http(graced.app.url, '/me', { cookie })).status).toBe(401);
    expect((await http(graced.app.url, '/me', { cookie: `__Host-sid=${rotated}` })).status).toBe(200);
  });

  it('C.20: requests in flight during a rotation (grace window) are served and log no one out', async () => {
    const graced = await another({ rotationGrace: 5_000 });
    const { cookie } = await login('alice', graced.app);
    // 30 reads with the old cookie race the rotation: before it, or after it through the grace window.
    const [rotation, ...reads] = await Promise.all([
      http(graced.app.url, '/rotate', { method: 'POST', cookie, headers: SAME_ORIGIN }),
      ...Array.from({ length: 30 }, () => http(graced.app.url, '/me', { cookie })),
    ]);
    expect(rotation.status).toBe(200);
    const rotated = tokenFrom(rotation.setCookies)!;
    issued.push(rotated);
    expect(reads.map((r) => r.status)).toEqual(reads.map(() => 200));
    expect(reads.map((r) => (r.body as { user: string }).user)).toEqual(reads.map(() => 'alice'));
    // No racing response clears or overwrites the browser's cookie.
    expect(reads.flatMap((r) => r.setCookies).filter((line) => line.startsWith('__Host-sid='))).toEqual([]);
    // After the rotation, the old cookie still reads through its grace window, then dies; the new one lives on.
    const late = await Promise.all(Array.from({ length: 10 }, () => http(graced.app.url, '/me', { cookie })));
    expect(late.map((r) => [r.status, (r.body as { grace?: boolean }).grace])).toEqual(late.map(() => [200, true]));
    clock.advance(5_001);
    expect((await http(graced.app.url, '/me', { cookie })).status).toBe(401);
    expect((await http(graced.app.url, '/me', { cookie: `__Host-sid=${rotated}` })).status).toBe(200);
  });

  it('C.11 token guessing (C.36): 1000 random tokens and one-character flips: 0 successes, the brute-force hook fires', async () => {
    const { token } = await login();
    const tag = parseToken(token)!.tag;
    const seen = events['brute-force'].length;
    let successes = 0;
    for (let i = 0; i < 1_000; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: 100 }, () =>
          http(app.url, '/me', { cookie: `__Host-sid=${formatToken(tag, newId(), newSecret())}` }),
        ),
      );
      successes += batch.filter((r) => r.status !== 401).length;
    }
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (let i = 3; i < token.length; i++) {
      if (token[i] === '.') continue;
      const flipped = token.slice(0, i) + alphabet[(alphabet.indexOf(token[i]!) + 1) % 64] + token.slice(i + 1);
      if ((await http(app.url, '/me', { cookie: `__Host-sid=${flipped}` })).status !== 401) successes++;
    }
    expect(successes).toBe(0);
    expect(events['brute-force'].length).toBeGreaterThan(seen);
    expect(events['brute-force'].at(-1)).toMatchObject({ scope: 'ip', attempts: 100 });
    expect((await http(app.url, '/me', { cookie: `__Host-sid=${token}` })).status).toBe(200);
  }, 30_000);

  it('C.11 timing attack on lookup (C.4): constant-time compare, no exploitable latency difference', async () => {
    const { token } = await login();
    const { tag, id, secret } = parseToken(token)!;
    const spy = vi.spyOn(crypto, 'timingSafeEqual');
    try {
      expect((await http(app.url, '/me', { cookie: `__Host-sid=${formatToken(tag, id, newSecret())}` })).status).toBe(401);
      expect(spy).toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
    const last = secret.at(-1) === 'A' ? 'B' : 'A';
    const kinds = {
      unknownId: () => formatToken(tag, newId(), secret),
      wrongSecret: () => formatToken(tag, id, newSecret()),
      prefixSecret: () => formatToken(tag, id, secret.slice(0, -1) + last),
    };
    const samples: Record<keyof typeof kinds, number[]> = { unknownId: [], wrongSecret: [], prefixSecret: [] };
    for (let i = 0; i < 150; i++) {
      for (const kind of Object.keys(kinds) as (keyof typeof kinds)[]) {
        const started = performance.now();
        const res = await http(app.url, '/me', { cookie: `__Host-sid=${kinds[kind]()}` });
        samples[kind].push(performance.now() - started);
        expect(res.status).toBe(401);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const m = {
      unknownId: median(samples.unknownId),
      wrongSecret: median(samples.wrongSecret),
      prefixSecret: median(samples.prefixSecret),
    };
    const bound = (x: number, y: number) => Math.max(1, 0.3 * Math.min(x, y));
    expect({ m, close: Math.abs(m.wrongSecret - m.prefixSecret) < bound(m.wrongSecret, m.prefixSecret) }).toMatchObject({
      close: true,
    });
    expect({ m, close: Math.abs(m.unknownId - m.wrongSecret) < bound(m.unknownId, m.wrongSecret) }).toMatchObject({
      close: true,
    });
    // The lookup key is the id, never the secret or its hash.
    const keys = await inspector.keys(`${namespace}:*`);
    expect(keys.some((k) => k.includes(id))).toBe(true);
    expect(keys.some((k) => k.includes(secret.slice(0, 8)) || k.includes(hashSecret(secret).slice(0, 8)))).toBe(false);
  }, 30_000);

  it('C.11 cookie tossing (C.8, C.32): only __Host-sid is read; duplicates make the request unauthenticated', async () => {
    const { token, cookie } = await login();
    const other = await login('mallory');
    const before = await commandStats(inspector);
    const tossed = [
      `__Host-sid=${other.token}; ${cookie}`,
      `${cookie}; __Host-sid=${other.token}`,
      `${cookie}; __Host-sid=${token}`,
    ];
    const seen = events.security.length;
    for (const header of tossed) {
      const res = await http(app.url, '/public', { cookie: header });
      expect(res.body).toEqual({ status: 'duplicate', user: null });
      expect((await http(app.url, '/me', { cookie: header })).status).toBe(401);
    }
    expect(await commandsSince(before)).toEqual({});
    expect(events.security.slice(seen).filter((e) => e.type === 'duplicate-cookie')).toHaveLength(6);
    // A sibling subdomain's `sid` (or a case variant) is not the session cookie.
    for (const header of [`sid=${token}`, `__host-sid=${token}`, `__Secure-sid=${token}`]) {
      expect((await http(app.url, '/me', { cookie: header })).status).toBe(401);
    }
    expect((await http(app.url, '/me', { cookie: `sid=${other.token}; ${cookie}` })).body).toMatchObject({ user: 'alice' });
  });

  it('C.11 replay after logout, revokeAll and password change (C.21, C.23)', async () => {
    const devices = await Promise.all([login('dave'), login('dave'), login('dave')]);
    const res = await http(app.url, '/revoke-others', { method: 'POST', cookie: devices[0].cookie, headers: SAME_ORIGIN });
    expect(res.body).toEqual({ count: 2 });
    expect((await http(app.url, '/me', { cookie: devices[0].cookie })).status).toBe(200);
    for (const d of devices.slice(1)) expect((await http(app.url, '/me', { cookie: d.cookie })).status).toBe(401);
    const more = await Promise.all([login('dave'), login('dave')]);
    const all = await http(app.url, '/admin/revoke-all?user=dave', { method: 'POST' });
    expect(all.body).toEqual({ count: 3 });
    for (const d of [devices[0], ...more]) expect((await http(app.url, '/me', { cookie: d.cookie })).status).toBe(401);
    expect(events.revoked.filter((e) => e.userId === 'dave' && e.reason === 'password-change')).toHaveLength(3);
  });

  it('C.24: the documented login (verify) refuses wrong passwords without touching the current session, and loses to a password change', async () => {
    const user = 'erin';
    app.passwords.set(user, 'old');
    const { cookie } = await login('frank');
    const url = (password: string, gate = '') =>
      `/verified-login?user=${user}&password=${password}${gate === '' ? '' : `&gate=${gate}`}`;
    // A wrong password: 401, no cookie, and the requester's current session lives on.
    const wrong = await http(app.url, url('guess'), { method: 'POST', cookie, headers: SAME_ORIGIN });
    expect(wrong).toMatchObject({ status: 401, setCookies: [] });
    expect((await http(app.url, '/me', { cookie })).body).toMatchObject({ user: 'frank' });
    // The race: the old password is checked, the password changes and every session is revoked,
    // then the login completes. It must not leave a session the password change should have ended.
    const racing = http(app.url, url('old', 'pw-change'), { method: 'POST', headers: SAME_ORIGIN });
    await app.gates.reached('pw-change');
    app.passwords.set(user, 'new');
    await sessions.revokeAllForUser(user, { reason: 'password-change' });
    app.gates.release('pw-change');
    const raced = await racing;
    expect(raced.status).toBe(409);
    expect(raced.setCookies).toEqual([]);
    expect(await sessions.listForUser(user)).toEqual([]);
    // Afterwards only the new password works.
    expect((await http(app.url, url('old'), { method: 'POST', headers: SAME_ORIGIN })).status).toBe(401);
    const ok = await http(app.url, url('new'), { method: 'POST', headers: SAME_ORIGIN });
    expect(ok.status).toBe(200);
    const token = tokenFrom(ok.setCookies)!;
    issued.push(token);
    expect((await http(app.url, '/me', { cookie: `__Host-sid=${token}` })).body).toMatchObject({ user });
  });

  it('C.11 resurrection race (C.22): a long request finishing after logout cannot bring the session back', async () => {
    const { cookie, token } = await login();
    const { tag, id } = parseToken(token)!;
    const slow = http(app.url, '/slow?gate=race', { method: 'POST', cookie, headers: SAME_ORIGIN });
    await app.gates.reached('race');
    expect((await http(app.url, '/logout', { method: 'POST', cookie, headers: SAME_ORIGIN })).status).toBe(204);
    app.gates.release('race');
    expect((await slow).status).toBe(410);
    expect(await inspector.exists(`${namespace}:{${tag}}:s:${id}`)).toBe(0);
    expect((await http(app.url, '/me', { cookie })).status).toBe(401);
  });

  it('C.28: concurrent requests writing different keys both persist', async () => {
    const { cookie } = await login();
    const [a, b] = await Promise.all([
      http(app.url, '/data?key=a&value=1', { method: 'POST', cookie, headers: SAME_ORIGIN }),
      http(app.url, '/data?key=b&value=2', { method: 'POST', cookie, headers: SAME_ORIGIN }),
    ]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect((await http(app.url, '/me', { cookie })).body).toMatchObject({ data: { a: 1, b: 2 } });
  });

  it('C.11 oversized and malformed cookies (C.2, C.31): anonymous, no crash, no Redis command', async () => {
    const { token } = await login();
    const before = await commandStats(inspector);
    const headers = [
      `__Host-sid=${'x'.repeat(8192)}`,
      Array.from({ length: 300 }, (_, i) => `c${i}=v${i}`).join('; '),
      `__Host-sid=${token.replace(/[A-Za-z]/, '!')}`,
      `__Host-sid=%E0%A4%A`,
      `__Host-sid=${token}.x.y`,
      `__Host-sid=a.b.c.d.e.f`,
      `__Host-sid=${encodeURIComponent(token)}%20`,
      `__Host-sid=`,
      `__Host-sid`,
      `;;;=;; __Host-sid=;=`,
    ];
    const answers = [];
    for (const cookie of headers) {
      const res = await http(app.url, '/public', { cookie });
      answers.push({ status: res.status, user: (res.body as { user?: unknown }).user });
    }
    expect(answers).toEqual(headers.map(() => ({ status: 200, user: null })));
    // Bytes fetch refuses to send: NUL, invalid UTF-8, Unicode look-alikes.
    const raw = [
      Buffer.from(`__Host-sid=${token.slice(0, 20)}\u0000${token.slice(21)}`, 'latin1'),
      Buffer.concat([Buffer.from('__Host-sid='), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from(token.slice(4))]),
      Buffer.from(`__Host-sid=${token.slice(0, 10)}\u0430${token.slice(11)}`, 'utf8'),
      Buffer.from(`__Host-sid=${token.replace(/\./g, '\u2024')}`, 'utf8'),
    ];
    for (const value of raw) {
      const head = Buffer.concat([
        Buffer.from('GET /me HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: '),
        value,
        Buffer.from('\r\n\r\n'),
      ]);
      expect([400, 401]).toContain(await rawRequest(app.port, head));
    }
    expect(await commandsSince(before)).toEqual({});
    expect((await http(app.url, '/me', { cookie: `__Host-sid=${token}` })).status).toBe(200);
  });

  it('C.11 Redis key / pattern injection: tokens with * ? [ { } : are refused before any Redis command', async () => {
    const { token } = await login();
    const before = await commandStats(inspector);
    for (const char of ['*', '?', '[', '{', '}', ':', ' ', '\\']) {
      const forged = token.slice(0, 10) + char + token.slice(11);
      expect((await http(app.url, '/me', { cookie: `__Host-sid=${forged}` })).status).toBe(401);
      expect(
        (await http(app.url, '/me', { cookie: `__Host-sid=v1.${char.repeat(4)}.${'*'.repeat(22)}.${'?'.repeat(43)}` })).status,
      ).toBe(401);
    }
    expect(await commandsSince(before)).toEqual({});
  });

  it('C.11 header injection (C.9): unsafe cookie settings refuse to start', () => {
    const factory = factories[framework] as (s: SessionManager<TestData>, o: SessionMiddlewareOptions) => unknown;
    const bad: SessionMiddlewareOptions[] = [
      { cookie: { name: 'sid\r\nX-Injected: 1' } },
      { cookie: { name: 'sid;' } },
      { cookie: { name: 'a=b' } },
      { cookie: { name: 'sid', path: '/\r\nX: 1' } },
      { cookie: { name: 'sid', path: '/;Domain=evil.example' } },
      { cookie: { name: 'sid', domain: 'example.com; Secure' } },
      { cookie: { name: 'sid', domain: 'a=b' } },
      { cookie: { domain: 'example.com' } },
      { cookie: { name: 'sid', sameSite: 'none', secure: false } },
      { cookie: { secure: false } },
    ];
    expect(bad.filter((options) => !throwsCode(() => factory(sessions, options), 'E_INVALID_OPTION'))).toEqual([]);
    expect(() => factory(sessions, bad[0]!)).toThrow(InvalidOptionError);
  });

  it('C.11 CSRF (C.33): cross-site form posts and credentialed fetches get 403 and never reach the handler', async () => {
    const { cookie } = await login();
    const host = new URL(app.url).host;
    const before = app.hits.get('/echo') ?? 0;
    const refused = [
      { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example', 'content-type': 'application/x-www-form-urlencoded' },
      { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'cors', origin: 'https://evil.example' },
      { 'sec-fetch-site': 'same-site', origin: `https://sub.${host}` },
      { origin: 'https://evil.example' },
      { origin: 'null' },
      // The app is https (its cookie is Secure): the same host over http is another origin.
      { origin: `http://${host}` },
      { referer: 'https://evil.example/page' },
      // No origin information at all: refused by default, as OWASP recommends.
      {},
    ];
    const answers = [];
    for (const headers of refused) {
      const res = await http(app.url, '/echo', { method: 'POST', cookie, headers });
      answers.push({ status: res.status, vary: res.headers.get('vary') });
    }
    expect(answers).toEqual(refused.map(() => ({ status: 403, vary: 'Sec-Fetch-Site, Origin' })));
    expect(app.hits.get('/echo') ?? 0).toBe(before);
    expect(events.security.filter((e) => e.type === 'csrf').length).toBeGreaterThanOrEqual(refused.length);
    const allowed: Record<string, string>[] = [SAME_ORIGIN, { origin: `https://${host}` }, { referer: `https://${host}/cart` }];
    const statuses = [];
    for (const headers of allowed) statuses.push((await http(app.url, '/echo', { method: 'POST', cookie, headers })).status);
    expect(statuses).toEqual([200, 200, 200]);
    // Clients without origin information pass only where the app opted in.
    const trusting = await another({}, { csrf: { allowMissingOrigin: true } });
    const theirs = await login('alice', trusting.app);
    expect((await http(trusting.app.url, '/echo', { method: 'POST', cookie: theirs.cookie })).status).toBe(200);
    expect(
      (
        await http(trusting.app.url, '/echo', {
          method: 'POST',
          cookie: theirs.cookie,
          headers: { origin: 'https://evil.example' },
        })
      ).status,
    ).toBe(403);
    // Safe methods are never blocked.
    expect((await http(app.url, '/me', { cookie, headers: { 'sec-fetch-site': 'cross-site' } })).status).toBe(200);
    // Login CSRF: a cross-site login is refused and creates nothing.
    const forced = await http(app.url, '/login?user=mallory-forced', {
      method: 'POST',
      headers: { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' },
    });
    expect(forced.status).toBe(403);
    expect(forced.setCookies).toEqual([]);
    expect(await sessions.listForUser('mallory-forced')).toEqual([]);
  });

  it('C.34: with CSRF tokens on, a header-less client needs a token bound to its own session', async () => {
    const tokens = await another({}, { csrf: { token: true } });
    const a = await login('alice', tokens.app);
    const b = await login('bob', tokens.app);
    const tokenA = ((await http(tokens.app.url, '/csrf', { cookie: a.cookie })).body as { token: string }).token;
    expect((await http(tokens.app.url, '/echo', { method: 'POST', cookie: a.cookie })).status).toBe(403);
    expect(
      (await http(tokens.app.url, '/echo', { method: 'POST', cookie: b.cookie, headers: { 'x-csrf-token': tokenA } })).status,
    ).toBe(403);
    expect(
      (await http(tokens.app.url, '/echo', { method: 'POST', cookie: a.cookie, headers: { 'x-csrf-token': tokenA } })).status,
    ).toBe(200);
    expect((await http(tokens.app.url, '/echo', { method: 'POST', cookie: b.cookie, headers: SAME_ORIGIN })).status).toBe(200);
    // A valid token never makes up for a foreign origin.
    for (const origin of ['https://evil.example', `http://${new URL(tokens.app.url).host}`]) {
      const res = await http(tokens.app.url, '/echo', {
        method: 'POST',
        cookie: a.cookie,
        headers: { 'x-csrf-token': tokenA, origin },
      });
      expect({ origin, status: res.status }).toEqual({ origin, status: 403 });
    }
  });

  it('C.11 TTL drift (C.17): a key TTL extended by hand does not extend the session', async () => {
    const { cookie, token } = await login();
    const { tag, id } = parseToken(token)!;
    await inspector.pExpire(`${namespace}:{${tag}}:s:${id}`, 90 * 24 * 3600_000);
    clock.advance(IDLE + 1);
    expect((await http(app.url, '/me', { cookie })).status).toBe(401);
    expect(await inspector.exists(`${namespace}:{${tag}}:s:${id}`)).toBe(0);
  });

  it('C.11 concurrent-login limit race (C.27): 50 parallel logins with a limit of 5 leave exactly 5', async () => {
    const limited = await another({ maxSessionsPerUser: 5 });
    const results = await Promise.all(
      Array.from({ length: 50 }, () => http(limited.app.url, '/login?user=carol', { method: 'POST', headers: SAME_ORIGIN })),
    );
    expect(results.every((r) => r.status === 200)).toBe(true);
    const tokens = results.map((r) => tokenFrom(r.setCookies)!);
    issued.push(...tokens);
    expect(await limited.sessions.listForUser('carol')).toHaveLength(5);
    let alive = 0;
    for (const t of tokens) if ((await http(limited.app.url, '/me', { cookie: `__Host-sid=${t}` })).status === 200) alive++;
    expect(alive).toBe(5);
    const user = userRef(SECRET, 'carol');
    expect(await inspector.zCard(`${limited.sessions.options.namespace}:{${user.tag}}:u:${user.uref}`)).toBe(5);
  });

  it('C.7: no issued secret ever reached an event (the only log surface Larder has)', () => {
    expect(issued.length).toBeGreaterThan(20);
    const dump = JSON.stringify(events);
    expect(issued.filter((token) => dump.includes(parseToken(token)!.secret))).toEqual([]);
  });

  it('development mode sets a non-Secure, unprefixed cookie for http://localhost', async () => {
    const dev = await another({}, { development: true });
    const res = await http(dev.app.url, '/login?user=alice', { method: 'POST', headers: SAME_ORIGIN });
    const token = tokenFrom(res.setCookies, 'sid')!;
    issued.push(token);
    expect(res.setCookies).toEqual([`sid=${token}; Max-Age=43200; Path=/; HttpOnly; SameSite=Lax`]);
    expect((await http(dev.app.url, '/me', { cookie: `sid=${token}` })).status).toBe(200);
  });
});

describe('session headers at send time on a bare node:http response', () => {
  it('C.12, C.13: every writeHead form (reason, flat header array, implicit head on write) ends with the session headers', async () => {
    const answers: ((res: ServerResponse) => void)[] = [
      (res) => void res.writeHead(200, 'Fine', ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'Cache-Control', 'public']).end(),
      (res) => {
        res.setHeader('Cache-Control', 'public, max-age=60');
        res.setHeader('Vary', '*');
        res.end();
      },
      (res) => {
        res.statusCode = 201;
        res.write('z');
        res.end();
      },
    ];
    let next = 0;
    const bare = createServer((_req, res) => {
      const headers = new SessionHeaders();
      headers.cookie('sid=token');
      headers.vary();
      applyOnWriteHead(res, headers);
      answers[next++]!(res);
    });
    bare.listen(0, '127.0.0.1');
    await once(bare, 'listening');
    const url = `http://127.0.0.1:${(bare.address() as AddressInfo).port}`;
    const seen = [];
    for (let i = 0; i < answers.length; i++) {
      const res = await fetch(url);
      await res.arrayBuffer();
      seen.push([
        res.status,
        res.statusText,
        res.headers.getSetCookie(),
        res.headers.get('cache-control'),
        res.headers.get('vary'),
      ]);
    }
    bare.close();
    expect(seen).toEqual([
      [200, 'Fine', ['a=1', 'b=2', 'sid=token'], 'no-store', 'Sec-Fetch-Site, Origin'],
      [200, 'OK', ['sid=token'], 'no-store', '*'],
      [201, 'Created', ['sid=token'], 'no-store', 'Sec-Fetch-Site, Origin'],
    ]);
  });
});
