/**
 * The demo when things go wrong or go away: Redis stopped mid-test (a private redis-server), the
 * round trips of the bulk route (counted on that private server), and embedded mode (PGlite and
 * the in-memory store, with nothing answering where Redis would be); and no token in the log
 * through all of it (checklist C.7).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PING_TIMEOUT_MS } from '../../demo/app.js';
import { openDatabase } from '../../demo/db.js';
import { observability } from '../../demo/observability.js';
import { seed } from '../../demo/seed.js';
import type { DemoService } from '../../demo/service.js';
import { commandStats, eventually, nodeRedis, statsDelta } from '../helpers/redis.js';
import { sparePort, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { parseExposition, sampleValue } from '../observability/exposition.js';
import {
  Client,
  DATABASE_URL,
  PASSWORD,
  SEED_PRODUCTS,
  SEED_USERS,
  dropSchema,
  startTestService,
  testEnv,
  uniqueSchema,
} from './helpers.js';

describe('with a private Redis', () => {
  const schema = uniqueSchema('outage');
  let redis: RedisServer;
  let service: DemoService;

  beforeAll(async () => {
    redis = await startRedis();
    service = await startTestService(testEnv(schema, { REDIS_URL: redis.url }), { l1MaxEntries: 0 });
  });

  afterAll(async () => {
    await service?.close();
    await redis?.stop();
    await dropSchema(schema);
  });

  it('bulk reads take one MGET for every id and one query for the misses', async () => {
    const admin = await nodeRedis(redis.url);
    try {
      const client = new Client(service.url);
      // The first tagged read of the process also fetches the tag's version (then kept current by the bus).
      await client.get('/products/100');
      const written = `${service.services.config.cacheNamespace}:v1/products:100`;
      await eventually(async () => (await admin.exists(written)) === 1, 5_000, 'the entry to be written');
      const before = await commandStats(admin);
      const queries = service.services.db.queries;
      const reply = await client.get('/products?ids=101,102,103,104,105');
      expect((reply.body as { products: unknown[] }).products).toHaveLength(5);
      expect(service.services.db.queries - queries).toBe(1);
      const cold = statsDelta(before, await commandStats(admin));
      // One MGET for the five ids; then per missed id a lease (SET NX) and a conditional write
      // (a script), each group sent together in one pipeline. (Commands run inside scripts are
      // counted by Redis too.)
      expect(cold).toMatchObject({ mget: 1, evalsha: 5 });

      const warm = await commandStats(admin);
      await client.get('/products?ids=101,102,103,104,105');
      const hot = statsDelta(warm, await commandStats(admin));
      // One MGET (the tags' versions are known locally, kept current by the bus); no write.
      expect(hot).toMatchObject({ mget: 1 });
      expect(Object.keys(hot).filter((command) => command !== 'mget' && command !== 'info')).toEqual([]);
      expect(service.services.db.queries - queries).toBe(1);
    } finally {
      await admin.close();
    }
  });

  it('keeps answering from Postgres while Redis is stopped, and recovers when it is back', async () => {
    const user = new Client(service.url);
    expect((await user.login('user2@example.com')).status).toBe(200);
    expect((await user.get('/products/201')).status).toBe(200);

    await redis.stop();
    const queries = service.services.db.queries;
    for (let i = 0; i < 5; i++) {
      const one = await user.get('/products/202');
      expect(one.status).toBe(200);
      expect(one.body).toMatchObject({ id: 202 });
      const many = await user.get('/products?ids=201,203');
      expect(many.status).toBe(200);
      expect((many.body as { products: unknown[] }).products).toHaveLength(2);
    }
    // Answered by Postgres (no L1 here, and Redis is gone).
    expect(service.services.db.queries - queries).toBeGreaterThanOrEqual(10);
    const health = await user.get('/healthz');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'degraded', postgres: { ok: true }, redis: { mode: 'redis', ready: false } });
    // Sessions fail closed: no Redis, no way to check the token.
    expect((await user.get('/profile')).status).toBe(503);
    const login = await new Client(service.url).login('user2@example.com');
    expect(login.status).toBe(503);
    expect(login.body).toMatchObject({ error: 'sessions_unavailable' });

    await redis.restart();
    // Script-only traffic: sessions use nothing but scripts, and logins alone bring them back
    // (the restarted Redis answers the breaker's half-open probe, a script, with NOSCRIPT, which
    // counts as Redis answering).
    await eventually(
      async () => (await new Client(service.url).login('user2@example.com')).status === 200,
      25_000,
      'login after restart',
    );
    await eventually(async () => ((await user.get('/healthz')).body as { status: string }).status === 'ok', 15_000, 'healthy');
    const afterRestart = service.services.db.queries;
    await user.get('/products/204');
    await user.get('/products/204');
    expect(service.services.db.queries - afterRestart).toBe(1);
  }, 45_000);
});

describe("C.7: no token in the service's log", () => {
  const schema = uniqueSchema('logs');
  let redis: RedisServer;
  let service: DemoService;
  const lines: string[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    service = await startTestService(testEnv(schema, { REDIS_URL: redis.url }), {}, { log: (line) => lines.push(line) });
  });

  afterAll(async () => {
    await service?.close();
    await redis?.stop();
    await dropSchema(schema);
  });

  it('a session lifecycle, a Redis outage and its recovery log no token, secret or cookie', async () => {
    const tokens: string[] = [];
    const keep = (client: Client) => client.cookie !== undefined && tokens.push(client.cookie);
    const user = new Client(service.url);
    expect((await user.login('user3@example.com')).status).toBe(200);
    keep(user);
    expect((await user.get('/profile')).status).toBe(200);
    expect((await user.login('user3@example.com')).status).toBe(200); // rotates: a new token
    keep(user);
    const stale = new Client(service.url);
    stale.cookie = tokens[0];
    expect((await stale.get('/profile')).status).toBe(401);
    expect((await user.request('POST', '/logout')).status).toBe(200);
    const other = new Client(service.url);
    expect((await other.login('user4@example.com')).status).toBe(200);
    keep(other);
    await redis.stop();
    expect((await other.get('/profile')).status).toBe(503);
    expect((await new Client(service.url).login('user4@example.com')).status).toBe(503);
    await redis.restart();
    await eventually(
      async () => (await other.get('/profile')).status === 401,
      25_000,
      'sessions back (the restarted Redis is empty)',
    );
    const again = new Client(service.url);
    await eventually(async () => (await again.login('user4@example.com')).status === 200, 25_000, 'login after restart');
    keep(again);
    expect(tokens).toHaveLength(4);
    // The outage was logged: the check below looked at real lines.
    expect(lines.some((line) => line.includes('Redis'))).toBe(true);
    const log = lines.join('\n');
    const secrets = tokens.flatMap((token) => [token, token.split('.').at(-1)!, encodeURIComponent(token)]);
    expect(secrets.filter((secret) => log.includes(secret))).toEqual([]);
  }, 60_000);
});

describe('with Postgres gone', () => {
  const schema = uniqueSchema('pgdown');

  afterAll(async () => {
    await dropSchema(schema);
  });

  it('serves what is cached, answers 503 (JSON) for the rest, and /healthz says so', async () => {
    const database = await openDatabase({ url: DATABASE_URL, schema, poolSize: 2, pgliteDir: undefined });
    await seed(database, { schema, users: SEED_USERS, products: SEED_PRODUCTS, password: PASSWORD });
    const logged: string[] = [];
    const service = await startTestService(testEnv(schema), {}, { database, log: (line) => logged.push(line) });
    try {
      const client = new Client(service.url);
      const cached = await client.get('/products/11');
      expect(cached.status).toBe(200);

      await database.close(); // every later query fails, for real
      const again = await client.get('/products/11');
      expect(again.status).toBe(200);
      expect(again.body).toEqual(cached.body);
      const uncached = await client.get('/products/12');
      expect(uncached.status).toBe(503);
      expect(uncached.body).toMatchObject({ error: 'database_unavailable' });
      const bulk = await client.get('/products?ids=11,13');
      expect(bulk.status).toBe(503);
      const health = await client.get('/healthz');
      expect(health.status).toBe(503);
      expect(health.body).toMatchObject({
        status: 'down',
        postgres: { ok: false, reason: 'the check query failed (details in the service log)' },
      });
      // The driver's own words go to the log, not to whoever asks /healthz.
      const detail = 'Cannot use a pool after calling end on the pool';
      expect(JSON.stringify(health.body)).not.toContain(detail);
      expect(Object.keys((health.body as { postgres: object }).postgres)).not.toContain('error');
      await client.get('/healthz');
      expect(logged.filter((line) => line.startsWith('Postgres: /healthz'))).toEqual([
        `Postgres: /healthz check failed: ${detail}`,
      ]);
    } finally {
      await service.close();
    }
  });

  it('gives /healthz a bounded wait when the database hangs', async () => {
    const database = await openDatabase({ url: DATABASE_URL, schema, poolSize: 2, pgliteDir: undefined });
    const logged: string[] = [];
    const hung = { ...database, ping: () => new Promise<number>(() => undefined) };
    const service = await startTestService(testEnv(schema), {}, { database: hung, log: (line) => logged.push(line) });
    try {
      const started = Date.now();
      const health = await new Client(service.url).get('/healthz');
      expect(Date.now() - started).toBeLessThan(PING_TIMEOUT_MS + 1_500);
      expect(health.status).toBe(503);
      expect(health.body).toMatchObject({
        status: 'down',
        postgres: { ok: false, reason: `no answer within ${PING_TIMEOUT_MS} ms` },
      });
      expect(logged).toContain(`Postgres: /healthz check failed: SELECT 1 took over ${PING_TIMEOUT_MS} ms`);
    } finally {
      await service.close();
      await database.close();
    }
  });
});

describe('embedded mode: PGlite and the in-memory store', () => {
  let service: DemoService;

  beforeAll(async () => {
    const nobody = `redis://127.0.0.1:${await sparePort()}`;
    service = await startTestService(
      testEnv('unused', { DATABASE_URL: undefined, DATABASE_SCHEMA: undefined, REDIS_URL: undefined }),
      { redisDefaultUrl: nobody },
      { extensions: [observability] },
    );
  }, 60_000);

  afterAll(async () => {
    await service?.close();
  });

  it('serves /metrics and /dashboard over the in-memory store', async () => {
    const user = new Client(service.url);
    for (let i = 0; i < 3; i++) await user.get('/products/9');
    const families = parseExposition((await user.get('/metrics')).body as string);
    const labels = { cache: service.services.config.cacheNamespace, namespace: 'products' };
    expect(
      sampleValue(families, 'larder_cache_hits_total', { ...labels, tier: 'l1' }) +
        sampleValue(families, 'larder_cache_hits_total', { ...labels, tier: 'l2' }),
    ).toBeGreaterThanOrEqual(2);
    expect(sampleValue(families, 'larder_store_ready', { cache: labels.cache, store: 'memory' })).toBe(1);
    const feed = await user.get('/dashboard/stats.json');
    expect(feed.body).toMatchObject({ caches: [{ store: { name: 'memory', ready: true } }] });
    expect((await user.get('/dashboard')).status).toBe(200);
  });

  it('runs the whole API with nothing installed', async () => {
    const user = new Client(service.url);
    const health = await user.get('/healthz');
    expect(health.body).toMatchObject({
      status: 'ok',
      embedded: { postgres: true, redis: true },
      postgres: { mode: 'pglite', ok: true },
      redis: { mode: 'memory' },
    });
    expect((await user.login('user4@example.com')).status).toBe(200);
    expect((await user.get('/profile')).body).toMatchObject({ id: 4, email: 'user4@example.com' });

    const queries = service.services.db.queries;
    expect((await user.get('/products/5')).headers.get('x-cache')).toBe('miss');
    expect((await user.get('/products/5')).headers.get('x-cache')).toBe('hit');
    expect((await user.get(`/products/${SEED_PRODUCTS + 1}`)).status).toBe(404);
    expect((await user.get(`/products/${SEED_PRODUCTS + 1}`)).status).toBe(404);
    const bulk = await user.get(`/products?ids=5,6,${SEED_PRODUCTS + 1}`);
    expect(bulk.body).toMatchObject({ products: [{ id: 5 }, { id: 6 }], missing: [SEED_PRODUCTS + 1] });
    expect(service.services.db.queries - queries).toBe(3);

    const put = await user.request('PUT', '/products/5', { json: { stock: 7 } });
    expect(put.body).toMatchObject({ id: 5, stock: 7 });
    expect((await user.get('/products/5')).body).toMatchObject({ id: 5, stock: 7 });
    expect((await user.get('/products/abc')).status).toBe(400);
  });

  it('refuses NUL and lone surrogates before PGlite sees them', async () => {
    const user = new Client(service.url);
    expect((await user.login('user6@example.com')).status).toBe(200);
    for (const name of ['a\u0000b', '\ud800']) {
      const put = await user.request('PUT', '/products/8', { json: { name } });
      expect(put.status).toBe(400);
      expect(put.body).toMatchObject({ error: 'bad_request', message: expect.stringMatching(/^name must /) as unknown });
    }
    const login = await new Client(service.url).login('a\u0000b@example.com', 'x');
    expect(login.status).toBe(400);
    expect((await user.get('/healthz')).body).toMatchObject({ status: 'ok', postgres: { ok: true } });
  });
});
