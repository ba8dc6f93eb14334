/**
 * The demo API end to end: real HTTP against two instances of the service sharing the real
 * Postgres (a private schema) and the real Redis (a private namespace).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Query } from '../../demo/db.js';
import type { DemoService } from '../../demo/service.js';
import { eventually } from '../helpers/redis.js';
import { Client, PASSWORD, SEED_PRODUCTS, dropSchema, startTestService, testEnv, uniqueSchema } from './helpers.js';

const schema = uniqueSchema('api');
let a: DemoService;
let b: DemoService;

beforeAll(async () => {
  const env = testEnv(schema);
  a = await startTestService(env);
  // A second instance: same database, same Redis namespace, its own L1.
  b = await startTestService(env);
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await dropSchema(schema);
});

const queriesOf = (service: DemoService) => service.services.db.queries;

interface ProductBody {
  id: number;
  name: string;
  price: number;
  stock: number;
  updatedAt: string;
}

describe('health', () => {
  it('reports Postgres and Redis', async () => {
    const reply = await new Client(a.url).get('/healthz');
    expect(reply.status).toBe(200);
    expect(reply.body).toMatchObject({
      status: 'ok',
      embedded: { postgres: false, redis: false },
      postgres: { mode: 'postgres', ok: true },
      redis: { mode: 'redis', ready: true, breaker: 'closed' },
    });
  });

  it('seeded the data, and a second instance on the same database inserted nothing', () => {
    expect(a.seeded).toMatchObject({ usersInserted: 40, productsInserted: SEED_PRODUCTS });
    expect(b.seeded).toMatchObject({ usersInserted: 0, productsInserted: 0 });
  });
});

describe('sessions', () => {
  it('logs in, serves the profile from the cache, rotates the token on a new login, logs out', async () => {
    const user = new Client(a.url);
    expect((await user.get('/profile')).status).toBe(401);

    const wrong = await user.login('user3@example.com', 'not-the-password');
    expect(wrong.status).toBe(401);
    expect(wrong.body).toEqual({ error: 'invalid_credentials', message: 'wrong email or password' });
    const unknown = await user.login('nobody@example.com', 'whatever');
    expect(unknown.status).toBe(401);
    expect(user.cookie).toBeUndefined();

    const login = await user.login('USER3@example.com');
    expect(login.status).toBe(200);
    expect(login.body).toEqual({ userId: 3 });
    const first = user.cookie;
    expect(first).toBeDefined();

    const before = queriesOf(a);
    const profile = await user.get('/profile');
    expect(profile.status).toBe(200);
    expect(profile.body).toMatchObject({ id: 3, email: 'user3@example.com' });
    expect(profile.headers.get('x-cache')).toBe('miss');
    const again = await user.get('/profile');
    expect(again.body).toEqual(profile.body);
    expect(again.headers.get('x-cache')).toBe('hit');
    expect(queriesOf(a) - before).toBe(1);

    // The same session works on the other instance (sessions live in Redis).
    const onB = new Client(b.url);
    onB.cookie = first;
    expect((await onB.get('/profile')).status).toBe(200);

    // Logging in again issues a new token and revokes the one the request carried.
    expect((await user.login('user3@example.com')).status).toBe(200);
    expect(user.cookie).toBeDefined();
    expect(user.cookie).not.toBe(first);
    expect((await onB.get('/profile')).status).toBe(401);
    expect((await user.get('/profile')).status).toBe(200);

    const logout = await user.request('POST', '/logout');
    expect(logout.status).toBe(200);
    expect(user.cookie).toBeUndefined();
    expect((await user.get('/profile')).status).toBe(401);
  });

  it('a login racing a revoke-all (a password change) loses: the epoch is read before the password hash', async () => {
    const { sessions } = a.services;
    const runner = a.services.db as { query: Query };
    const original = runner.query;
    let raced = 0;
    // The password change lands between the login's epoch read and its password check.
    runner.query = async (sql: string, params?: readonly unknown[]) => {
      if (sql.includes('password_hash') && raced++ === 0) await sessions.revokeAllForUser('11', { reason: 'password-change' });
      return original(sql, params);
    };
    const user = new Client(a.url);
    try {
      const login = await user.login('user11@example.com');
      expect(login.status).toBe(409);
      expect(login.body).toMatchObject({ error: 'login_conflict' });
      expect(user.cookie).toBeUndefined();
      expect(await sessions.listForUser('11')).toEqual([]);
    } finally {
      runner.query = original;
    }
    expect(raced).toBe(1);
    // Without a race the same login goes through.
    expect((await user.login('user11@example.com')).status).toBe(200);
    expect(await sessions.listForUser('11')).toHaveLength(1);
    expect((await user.get('/profile')).status).toBe(200);
  });
});

describe('products', () => {
  it('serves one product cache-aside: one query, then hits', async () => {
    const client = new Client(a.url);
    const before = queriesOf(a);
    const first = await client.get('/products/7');
    expect(first.status).toBe(200);
    expect(first.headers.get('x-cache')).toBe('miss');
    const product = first.body as ProductBody;
    expect(product).toMatchObject({ id: 7 });
    expect(typeof product.name).toBe('string');
    expect(typeof product.price).toBe('number');
    expect(Number.isInteger(product.stock)).toBe(true);
    expect(new Date(product.updatedAt).toISOString()).toBe(product.updatedAt);
    for (let i = 0; i < 5; i++) {
      const again = await client.get('/products/7');
      expect(again.body).toEqual(product);
      expect(again.headers.get('x-cache')).toBe('hit');
    }
    expect(queriesOf(a) - before).toBe(1);
  });

  it('caches "not found" for an unknown id', async () => {
    const client = new Client(a.url);
    const before = queriesOf(a);
    for (let i = 0; i < 5; i++) {
      const reply = await client.get(`/products/${SEED_PRODUCTS + 1000}`);
      expect(reply.status).toBe(404);
      expect(reply.body).toEqual({ error: 'not_found', message: `no product with id ${SEED_PRODUCTS + 1000}` });
    }
    expect(queriesOf(a) - before).toBe(1);
  });

  it('serves many products with one query for the misses, in the order asked, listing unknown ids', async () => {
    const client = new Client(a.url);
    await client.get('/products/21'); // cached already
    const before = queriesOf(a);
    const reply = await client.get(`/products?ids=22,21,${SEED_PRODUCTS + 5},23,22`);
    expect(reply.status).toBe(200);
    const body = reply.body as { products: ProductBody[]; missing: number[] };
    expect(body.products.map((p) => p.id)).toEqual([22, 21, 23]);
    expect(body.missing).toEqual([SEED_PRODUCTS + 5]);
    expect(reply.headers.get('x-cache-misses')).toBe('3');
    expect(queriesOf(a) - before).toBe(1);

    const again = await client.get(`/products?ids=22,21,${SEED_PRODUCTS + 5},23`);
    expect(again.body).toEqual(body);
    expect(again.headers.get('x-cache')).toBe('hit');
    expect(queriesOf(a) - before).toBe(1);
    // The bulk route and the single route share entries.
    const single = await client.get('/products/23');
    expect(single.headers.get('x-cache')).toBe('hit');
    expect(single.body).toEqual(body.products[2]);
  });

  it('updates a product: the next read on either instance has the new value', async () => {
    const reader = new Client(b.url);
    const old = (await reader.get('/products/31')).body as ProductBody;
    // B holds it in L1 now, A in Redis and L1 after one read.
    expect((await reader.get('/products/31')).headers.get('x-cache')).toBe('hit');
    expect((await new Client(a.url).get('/products/31')).status).toBe(200);
    await reader.get('/products?ids=31,32');

    const anonymous = await new Client(a.url).request('PUT', '/products/31', { json: { price: 1 } });
    expect(anonymous.status).toBe(401);

    const writer = new Client(a.url);
    expect((await writer.login('user5@example.com')).status).toBe(200);
    const put = await writer.request('PUT', '/products/31', { json: { price: 12.34, stock: 99, name: '  Renamed lamp ' } });
    expect(put.status).toBe(200);
    const updated = put.body as ProductBody;
    expect(updated).toMatchObject({ id: 31, price: 12.34, stock: 99, name: 'Renamed lamp' });
    expect(updated.updatedAt >= old.updatedAt).toBe(true);

    // The writing instance reads its own write at once.
    expect((await writer.get('/products/31')).body).toEqual(updated);
    // The other instance drops its L1 copy when the invalidation reaches it over the bus.
    await eventually(
      async () => JSON.stringify((await reader.get('/products/31')).body) === JSON.stringify(updated),
      5_000,
      'B sees the update',
    );
    const bulk = (await reader.get('/products?ids=31,32')).body as { products: ProductBody[] };
    expect(bulk.products[0]).toEqual(updated);

    const missing = await writer.request('PUT', `/products/${SEED_PRODUCTS + 9}`, { json: { stock: 1 } });
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({ error: 'not_found' });
  });
});

describe('bad input: 400 with a JSON message, never a 500', () => {
  let user: Client;
  beforeAll(async () => {
    user = new Client(a.url);
    const login = await user.login('user9@example.com');
    if (login.status !== 200) throw new Error(`login failed: ${login.status}`);
  });

  const cases: [string, string, { json?: unknown; body?: string; headers?: Record<string, string> }?][] = [
    ['GET', '/?x=1'],
    ['GET', '/healthz?verbose=1'],
    ['GET', '/stats?x=1'],
    ['GET', '/profile?x=1'],
    ['POST', '/logout?all=1'],
    ['GET', '/products/abc'],
    ['GET', '/products/0'],
    ['GET', '/products/-1'],
    ['GET', '/products/1.5'],
    ['GET', '/products/01'],
    ['GET', '/products/99999999999'],
    ['GET', '/products/2147483648'],
    ['GET', '/products/1?fields=name'],
    ['GET', '/products/1', { headers: { 'x-cache-mode': 'sometimes' } }],
    ['GET', '/products'],
    ['GET', '/products?ids='],
    ['GET', '/products?ids=a,b'],
    ['GET', '/products?ids=1,,2'],
    ['GET', '/products?ids=1&ids=2'],
    ['GET', '/products?ids=1&sort=price'],
    ['GET', `/products?ids=${Array.from({ length: 101 }, (_, i) => i + 1).join(',')}`],
    ['POST', '/login', { body: 'email=a@b.c&password=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }],
    ['POST', '/login', { body: '{"email":', headers: { 'content-type': 'application/json' } }],
    ['POST', '/login', { json: [1, 2] }],
    ['POST', '/login', { json: 'user1@example.com' }],
    ['POST', '/login', { json: { email: 'user1@example.com' } }],
    ['POST', '/login', { json: { email: 'not-an-email', password: 'x' } }],
    ['POST', '/login', { json: { email: 42, password: 'x' } }],
    ['POST', '/login', { json: { email: 'user1@example.com', password: '' } }],
    ['POST', '/login', { json: { email: 'user1@example.com', password: 'x', admin: true } }],
    ['POST', '/login?next=/profile', { json: { email: 'user1@example.com', password: 'x' } }],
    ['PUT', '/products/abc', { json: { price: 1 } }],
    ['PUT', '/products/1', { json: {} }],
    ['PUT', '/products/1', { json: { price: -1 } }],
    ['PUT', '/products/1', { json: { price: '1.00' } }],
    ['PUT', '/products/1', { json: { price: 1.234 } }],
    ['PUT', '/products/1', { json: { price: 1e12 } }],
    ['PUT', '/products/1', { json: { stock: 1.5 } }],
    ['PUT', '/products/1', { json: { stock: -3 } }],
    ['PUT', '/products/1', { json: { name: '   ' } }],
    ['PUT', '/products/1', { json: { name: 'x'.repeat(201) } }],
    ['PUT', '/products/1', { json: { id: 2, price: 1 } }],
    ['PUT', '/products/1', { json: null }],
    ['PUT', '/products/1', { body: 'price=1', headers: { 'content-type': 'text/plain' } }],
    ['PUT', '/products/1', { body: 'not json', headers: { 'content-type': 'application/json' } }],
    ['PUT', '/products/1?dry=1', { json: { price: 1 } }],
    // Text Postgres cannot store (NUL), or would store as U+FFFD (a lone surrogate).
    ['POST', '/login', { json: { email: 'a\u0000b@example.com', password: 'x' } }],
    ['POST', '/login', { json: { email: 'user1@example.com', password: 'x\u0000' } }],
    ['POST', '/login', { json: { email: '\ud800@example.com', password: 'x' } }],
    ['POST', '/login', { json: { email: 'user1@example.com', password: '\udc00x' } }],
    ['PUT', '/products/3', { json: { name: 'a\u0000b' } }],
    ['PUT', '/products/3', { json: { name: '\ud800' } }],
    ['PUT', '/products/3', { json: { name: 'pear \udc50\ud83c' } }],
    ['PUT', '/products/3', { json: { ['na\u0000me']: 'x' } }],
  ];

  it.each(cases)('%s %s', async (method, path, options) => {
    const reply = await user.request(method, path, options);
    expect({ status: reply.status, body: reply.body }).toMatchObject({ status: 400, body: { error: 'bad_request' } });
    expect(reply.headers.get('content-type')).toContain('application/json');
    expect(reply.body).toMatchObject({ error: 'bad_request' });
    expect((reply.body as { message: string }).message.length).toBeGreaterThan(10);
  });

  it('says which text is refused: NUL and lone surrogates in JSON, bytes that are not UTF-8', async () => {
    const nul = await user.request('PUT', '/products/3', { json: { name: 'a\u0000b' } });
    expect(nul.body).toEqual({ error: 'bad_request', message: 'name must not contain the NUL character (U+0000)' });
    const login = await new Client(a.url).login('a\u0000b@example.com', 'x');
    expect(login.body).toEqual({ error: 'bad_request', message: 'email must not contain the NUL character (U+0000)' });
    // JSON.stringify escapes a lone surrogate: the service receives the text `"\ud800"`.
    const surrogate = await user.request('PUT', '/products/3', {
      body: '{"name":"\\ud800"}',
      headers: { 'content-type': 'application/json' },
    });
    expect(surrogate.body).toEqual({
      error: 'bad_request',
      message: 'name must be valid Unicode text: it contains a lone surrogate (\\uD800), which is not a character',
    });
    // Raw bytes: 0xFF, and a surrogate encoded as if it were a character (CESU-8).
    for (const bytes of [[0xff], [0xed, 0xa0, 0x80]]) {
      const body = Buffer.concat([Buffer.from('{"name":"a'), Buffer.from(bytes), Buffer.from('"}')]);
      const response = await fetch(`${a.url}/products/3`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', cookie: `sid=${user.cookie}` },
        body,
      });
      expect(response.status).toBe(400);
      expect(await response.json()).toEqual({ error: 'bad_request', message: 'the body is not valid UTF-8' });
    }
    // Nothing of it reached the database.
    const three = (await user.get('/products/3')).body as ProductBody;
    expect(three.name).not.toMatch(/^a|\ufffd/);
  });

  it('stores characters outside the BMP (a surrogate pair) as they are', async () => {
    const name = 'Pear 🍐 lamp';
    const put = await user.request('PUT', '/products/4', { json: { name } });
    expect(put.status).toBe(200);
    expect((await user.get('/products/4')).body).toMatchObject({ id: 4, name });
    expect((await new Client(b.url).get('/products/4')).body).toMatchObject({ id: 4, name });
  });

  it('refuses a body over 16 KiB with 413 (JSON), and answers unknown routes with 404 (JSON)', async () => {
    const big = await user.request('PUT', '/products/1', { json: { name: 'x'.repeat(20_000) } });
    expect(big.status).toBe(413);
    expect(big.body).toMatchObject({ error: 'payload_too_large' });
    const nowhere = await user.get('/nowhere');
    expect(nowhere.status).toBe(404);
    expect(nowhere.body).toMatchObject({ error: 'not_found' });
  });

  it('answers a known route with an unsupported method with 405 and Allow (JSON)', async () => {
    const wrongMethods: [string, string, string][] = [
      ['DELETE', '/products/1', 'GET, HEAD, PUT'],
      ['PATCH', '/products/1', 'GET, HEAD, PUT'],
      ['POST', '/products', 'GET, HEAD'],
      ['GET', '/login', 'POST'],
      ['PUT', '/logout', 'POST'],
      ['POST', '/healthz', 'GET, HEAD'],
      ['DELETE', '/profile', 'GET, HEAD'],
      ['OPTIONS', '/stats', 'GET, HEAD'],
    ];
    for (const [method, path, allow] of wrongMethods) {
      const reply = await user.request(method, path);
      expect({ method, path, status: reply.status, allow: reply.headers.get('allow') }).toEqual({
        method,
        path,
        status: 405,
        allow,
      });
      expect(reply.body).toEqual({ error: 'method_not_allowed', message: `${path} takes ${allow}, not ${method}` });
    }
    // HEAD goes wherever GET does; an unknown path is still a 404.
    expect((await fetch(`${a.url}/products/1`, { method: 'HEAD' })).status).toBe(200);
    expect((await user.request('DELETE', '/products/1/extra')).status).toBe(404);
    expect((await user.request('DELETE', '/nowhere')).status).toBe(404);
  });

  it('left the product untouched', async () => {
    const product = (await user.get('/products/1')).body as ProductBody;
    expect(product.price).toBeGreaterThanOrEqual(1);
    expect(product.name).not.toBe('x');
  });
});

describe('cache modes (x-cache-mode, for npm run load)', () => {
  it('off reads Postgres every time; naive is hand-written cache-aside', async () => {
    const client = new Client(a.url);
    const before = queriesOf(a);
    for (let i = 0; i < 3; i++) {
      const reply = await client.get('/products/41', { headers: { 'x-cache-mode': 'off' } });
      expect(reply.headers.get('x-cache')).toBe('bypass');
    }
    expect(queriesOf(a) - before).toBe(3);
    const naive1 = await client.get('/products/41', { headers: { 'x-cache-mode': 'naive' } });
    const naive2 = await client.get('/products/41', { headers: { 'x-cache-mode': 'naive' } });
    expect([naive1.headers.get('x-cache'), naive2.headers.get('x-cache')]).toEqual(['miss', 'hit']);
    expect(naive2.body).toEqual(naive1.body);
    expect(queriesOf(a) - before).toBe(4);
    const stats = await client.get('/stats');
    expect(stats.body).toMatchObject({ naive: { hits: 1, misses: 1 } });
  });
});

describe('CSRF: requests without any origin information', () => {
  it('pass in development (curl, scripts); refused with CSRF_ALLOW_MISSING_ORIGIN=0, where an Origin is needed', async () => {
    const foreign = await new Client(a.url).request('POST', '/login', {
      json: { email: 'user7@example.com', password: PASSWORD },
      headers: { origin: 'http://evil.example' },
    });
    expect(foreign.status).toBe(403);

    const strict = await startTestService(testEnv(schema, { CSRF_ALLOW_MISSING_ORIGIN: '0' }));
    try {
      const bare = await new Client(strict.url).login('user7@example.com');
      expect(bare.status).toBe(403);
      const user = new Client(strict.url);
      const withOrigin = await user.request('POST', '/login', {
        json: { email: 'user7@example.com', password: PASSWORD },
        headers: { origin: strict.url },
      });
      expect(withOrigin.status).toBe(200);
      expect((await user.get('/profile')).status).toBe(200);
    } finally {
      await strict.close();
    }
  });
});
