/**
 * Fail closed: with the session store stopped or hanging, a request that carries a session
 * token is answered 503 by the middleware (the handler never runs) on every framework, and the
 * manager rejects with a typed SessionStoreError. A private redis-server is stopped and paused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isLarderError, SessionStoreError, type SessionManager } from '../../src/sessions/index.js';
import type { Store } from '../../src/stores/store.js';
import { ping, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { eventually, uniqueNamespace } from '../helpers/redis.js';
import { FRAMEWORKS, startApp, type Framework, type TestApp, type TestData } from './apps.js';
import { closeAll, http, sessionsOn, storeFor, tokenFrom, type Driver } from './helpers.js';

const SAME_ORIGIN = { 'sec-fetch-site': 'same-origin' };
let server: RedisServer;

beforeAll(async () => {
  server = await startRedis();
});

afterAll(async () => {
  await closeAll();
  await server?.stop();
});

async function up(): Promise<void> {
  server.resume();
  if (!(await ping(server.port))) await server.restart();
}

describe.each(FRAMEWORKS)('store outage with %s', (framework: Framework) => {
  let sessions: SessionManager<TestData>;
  let app: TestApp;
  let anonymousApp: TestApp;

  beforeAll(async () => {
    await up();
    const store = await storeFor('redis', server.url, { commandTimeout: 200, breaker: { failureThreshold: 3, cooldown: 200 } });
    sessions = await sessionsOn<TestData>(store, { namespace: uniqueNamespace('outage') });
    app = await startApp(framework, sessions);
    anonymousApp = await startApp(framework, sessions, { onStoreError: 'anonymous' });
  });

  afterAll(async () => {
    await app?.close();
    await anonymousApp?.close();
  });

  async function login(): Promise<string> {
    const res = await http(app.url, '/login?user=alice', { method: 'POST', headers: SAME_ORIGIN });
    expect(res.status).toBe(200);
    return `__Host-sid=${tokenFrom(res.setCookies)!}`;
  }

  it('C.30: Redis stopped -> 503 and the handler never runs; it recovers when Redis is back', async () => {
    const cookie = await login();
    expect((await http(app.url, '/me', { cookie })).status).toBe(200);
    await server.stop();
    const hits = { me: app.hits.get('/me') ?? 0, echo: app.hits.get('/echo') ?? 0, pub: app.hits.get('/public') ?? 0 };
    for (let i = 0; i < 5; i++) {
      const me = await http(app.url, '/me', { cookie });
      expect(me.status).toBe(503);
      expect(me.headers.get('cache-control')).toBe('no-store');
      expect((await http(app.url, '/echo', { method: 'POST', cookie, headers: SAME_ORIGIN })).status).toBe(503);
      // Even a public route is not served as anonymous to a request that carries a session.
      expect((await http(app.url, '/public', { cookie })).status).toBe(503);
    }
    expect(app.hits.get('/me') ?? 0).toBe(hits.me);
    expect(app.hits.get('/echo') ?? 0).toBe(hits.echo);
    expect(app.hits.get('/public') ?? 0).toBe(hits.pub);
    // Requests without a token need no store.
    expect((await http(app.url, '/public')).body).toEqual({ status: 'anonymous', user: null });
    // Logging in needs the store: the helper throws a SessionStoreError (the test app maps it to 503).
    expect((await http(app.url, '/login?user=bob', { method: 'POST', headers: SAME_ORIGIN })).status).toBe(503);
    // onStoreError: 'anonymous' runs the handler, never as authenticated.
    expect((await http(anonymousApp.url, '/public', { cookie })).body).toEqual({ status: 'unavailable', user: null });
    expect((await http(anonymousApp.url, '/me', { cookie })).status).toBe(401);
    await server.restart();
    // Back up (the data is gone with the old process): the old token is simply unknown.
    await eventually(async () => (await http(app.url, '/me', { cookie })).status === 401, 10_000, 'recovery');
    expect((await http(app.url, '/me', { cookie: await login() })).status).toBe(200);
  }, 30_000);

  it('C.30: Redis hanging (longer than the command timeout) -> 503 within the timeout', async () => {
    const cookie = await login();
    const before = app.hits.get('/me') ?? 0;
    server.pause();
    try {
      const started = performance.now();
      const res = await http(app.url, '/me', { cookie });
      expect(res.status).toBe(503);
      expect(performance.now() - started).toBeLessThan(2_000);
      expect(app.hits.get('/me') ?? 0).toBe(before);
    } finally {
      server.resume();
    }
    await eventually(async () => (await http(app.url, '/me', { cookie })).status === 200, 10_000, 'recovery');
  }, 30_000);
});

describe.each(['redis', 'ioredis'] as Driver[])('manager outage over %s', (driver) => {
  it('C.30: every operation rejects with a typed SessionStoreError while Redis is down', async () => {
    await up();
    const store: Store = await storeFor(driver, server.url, { commandTimeout: 200 });
    const sessions = await sessionsOn(store, { namespace: uniqueNamespace('outage') });
    const { token, session } = await sessions.create('alice');
    await server.stop();
    try {
      const attempts = [
        sessions.validate(token),
        sessions.create('alice'),
        sessions.update(session, { a: 1 }),
        sessions.revoke(token),
        sessions.revokeAllForUser('alice'),
        sessions.listForUser('alice'),
        sessions.rotate(token),
      ];
      const results = await Promise.allSettled(attempts);
      expect(results.map((r) => r.status)).toEqual(attempts.map(() => 'rejected'));
      for (const r of results) {
        const reason = (r as PromiseRejectedResult).reason as unknown;
        expect(reason).toBeInstanceOf(SessionStoreError);
        expect(isLarderError(reason, 'E_SESSION_STORE')).toBe(true);
      }
      // A malformed token still needs no store.
      expect(await sessions.validate('junk')).toEqual({ valid: false, reason: 'malformed' });
    } finally {
      await server.restart();
    }
  }, 30_000);
});
