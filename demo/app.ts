/**
 * The product API, on Hono: routes, input checks and error answers. Everything it talks to
 * (database, cache, sessions) comes in as {@link Services}, so the same app runs in `npm start`,
 * in `npm run load` and in the tests.
 *
 * More routes (`/metrics`, `/dashboard`) plug in as {@link Extension}s: functions that add routes
 * to the app, given the services.
 */
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { honoSessions, type SessionVariables } from '../src/adapters/hono.js';
import type { Cache } from '../src/index.js';
import { isLarderError, SessionInvalidError } from '../src/errors.js';
import type { SessionManager } from '../src/sessions/index.js';
import { CACHE_MODES, type CacheMode, type DemoConfig } from './config.js';
import { DatabaseError, type Database, type QueryRunner, type Row } from './db.js';
import type { NaiveCache } from './naive.js';
import { dummyHash, verifyPassword } from './passwords.js';
import {
  HttpError,
  badRequest,
  checkQuery,
  parseCredentials,
  parseId,
  parseIds,
  parseJsonObject,
  parseProductPatch,
} from './validate.js';

export interface Product {
  readonly id: number;
  readonly name: string;
  readonly price: number;
  readonly stock: number;
  readonly updatedAt: string;
}

export interface Profile {
  readonly id: number;
  readonly email: string;
  readonly name: string;
  readonly createdAt: string;
}

/** What the Redis side of the service is, for `/healthz`. */
export interface RedisInfo {
  readonly mode: 'redis' | 'memory';
  /** The URL (password redacted), with Redis. */
  readonly target: string | undefined;
  /** Whether the connection is up right now. */
  ready(): boolean;
}

export interface Services {
  readonly config: DemoConfig;
  readonly database: Database;
  /** Counted queries (every query the routes make goes through it). */
  readonly db: QueryRunner;
  /** The root cache; `products` and `users` are its namespaces. */
  readonly cache: Cache;
  readonly products: Cache;
  readonly users: Cache;
  /** Hand-written cache-aside, for comparison (`x-cache-mode: naive`). */
  readonly naive: NaiveCache;
  readonly sessions: SessionManager;
  readonly redis: RedisInfo;
  readonly log: (message: string) => void;
}

export type DemoEnv = { Variables: SessionVariables };
export type DemoApp = Hono<DemoEnv>;
/** Adds routes to the app (the observability issue mounts `/metrics` and `/dashboard` this way). */
export type Extension = (app: DemoApp, services: Services) => void;

/** Tags carried by every cached product / user entry: one write invalidates them all (after a re-seed). */
export const PRODUCTS_TAG = 'products';
export const USERS_TAG = 'users';
export const MODE_HEADER = 'x-cache-mode';

const PRODUCT_COLUMNS = 'id, name, price::float8 AS price, stock, updated_at';

const toIso = (value: unknown): string => new Date(value as string | Date).toISOString();

function toProduct(row: Row): Product {
  return {
    id: Number(row.id),
    name: String(row.name),
    price: Number(row.price),
    stock: Number(row.stock),
    updatedAt: toIso(row.updated_at),
  };
}

function toProfile(row: Row): Profile {
  return { id: Number(row.id), email: String(row.email), name: String(row.name), createdAt: toIso(row.created_at) };
}

const error = (c: Context, status: 400 | 401 | 403 | 404 | 409 | 413 | 500 | 503, code: string, message: string) =>
  c.json({ error: code, message }, status, { 'Cache-Control': 'no-store' });

/** How long `/healthz` waits for `SELECT 1`. */
export const PING_TIMEOUT_MS = 2_000;

class PingTimeout extends Error {
  override readonly name = 'PingTimeout';
}

/** `database.ping()`, given up after {@link PING_TIMEOUT_MS} (a hung database must not hang the probe). */
async function ping(database: Database): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PingTimeout(`SELECT 1 took over ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS);
  });
  try {
    return await Promise.race([database.ping(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const METHOD_ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** `/products/:id` → a RegExp matching one path of that shape. */
function routePattern(path: string): RegExp {
  const source = path
    .split('/')
    .map((segment) =>
      segment === '*' ? '.*' : segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('/');
  return new RegExp(`^${source}$`);
}

/**
 * The methods some route answers at `pathname` (`HEAD` with `GET`, as Hono does), for a `405`
 * with `Allow`. Middleware and mounted apps (method `ALL`) do not count: a mounted app answers
 * every method itself.
 */
function allowedMethods(app: DemoApp, pathname: string): string[] {
  const methods = new Set<string>();
  for (const route of app.routes) {
    if (route.method === 'ALL' || !routePattern(route.path).test(pathname)) continue;
    methods.add(route.method);
    if (route.method === 'GET') methods.add('HEAD');
  }
  return [...methods].sort((x, y) => METHOD_ORDER.indexOf(x) - METHOD_ORDER.indexOf(y));
}

/** Keys read per cache mode, and how many of them the database had to answer. */
export type ReadCounters = Record<CacheMode, { keys: number; loaded: number }>;

export function createApp(services: Services, extensions: readonly Extension[] = []): DemoApp {
  const { config, db, products, users, naive, sessions } = services;
  const reads: ReadCounters = { larder: { keys: 0, loaded: 0 }, naive: { keys: 0, loaded: 0 }, off: { keys: 0, loaded: 0 } };
  const countReads = (mode: CacheMode, keys: number, loaded: number) => {
    reads[mode].keys += keys;
    reads[mode].loaded += loaded;
  };
  const app: DemoApp = new Hono<DemoEnv>();
  const auth = honoSessions(sessions, {
    development: config.sessionDevelopment,
    // curl and `npm run load` send no Origin; in production only browsers (which do) log in.
    csrf: { allowMissingOrigin: config.csrfAllowMissingOrigin },
  });
  const required: MiddlewareHandler<DemoEnv> = async (c, next) => {
    if (c.var.session.session === undefined) {
      return error(c, 401, 'unauthorized', 'log in first: POST /login with {"email", "password"}');
    }
    await next();
    return undefined;
  };

  /** The request's cache mode: the `x-cache-mode` header when allowed, else the configured one. */
  const modeOf = (c: Context): CacheMode => {
    const header = config.cacheModeHeader ? c.req.header(MODE_HEADER) : undefined;
    if (header === undefined) return config.cacheMode;
    if (!CACHE_MODES.includes(header as CacheMode)) {
      throw badRequest(`${MODE_HEADER} must be one of ${CACHE_MODES.join(', ')}, got ${JSON.stringify(header)}`);
    }
    return header as CacheMode;
  };

  const jsonBody = async (c: Context) => parseJsonObject(c.req.header('content-type'), await c.req.arrayBuffer());

  const loadProduct = async (id: number): Promise<Product | undefined> => {
    const [row] = await db.query(`SELECT ${PRODUCT_COLUMNS} FROM products WHERE id = $1`, [id]);
    return row === undefined ? undefined : toProduct(row);
  };
  const loadProducts = async (ids: readonly number[]): Promise<Map<number, Product>> => {
    const rows = await db.query(`SELECT ${PRODUCT_COLUMNS} FROM products WHERE id = ANY($1::int[])`, [ids]);
    return new Map(rows.map((row) => [Number(row.id), toProduct(row)]));
  };
  const loadProfile = async (id: number): Promise<Profile | undefined> => {
    const [row] = await db.query('SELECT id, email, name, created_at FROM users WHERE id = $1', [id]);
    return row === undefined ? undefined : toProfile(row);
  };

  app.use(
    bodyLimit({
      maxSize: 16 * 1024,
      onError: (c) => error(c, 413, 'payload_too_large', 'the body is larger than 16 KiB'),
    }),
  );

  /** What the extensions added, for the list at `/` (filled once they have run). */
  const extensionRoutes: string[] = [];
  app.get('/', (c) => {
    checkQuery(c.req.url, []);
    return c.json({
      name: 'Larder demo: a product API on Postgres + Redis',
      docs: 'docs/demo.md',
      routes: [
        'POST /login {"email","password"}',
        'POST /logout',
        'GET /profile (session)',
        'GET /products/:id',
        'GET /products?ids=1,2,3',
        'PUT /products/:id {"name"?,"price"?,"stock"?} (session)',
        'GET /healthz',
        'GET /stats',
        ...extensionRoutes,
      ],
    });
  });

  app.post('/login', auth, async (c) => {
    checkQuery(c.req.url, []);
    const { email, password } = parseCredentials(await jsonBody(c));
    const [user] = await db.query<{ id: number }>('SELECT id FROM users WHERE email = $1', [email]);
    // An unknown email goes the same way as a known one (user ids start at 1: 0 is no one): the
    // same queries and a hash check too, so timing does not tell which emails exist.
    const id = user?.id ?? 0;
    let session;
    try {
      // login() reads the user's revocation epoch, then runs `verify`, which reads the password
      // hash: a password change (revokeAllForUser) landing meanwhile makes this login fail
      // instead of creating a session the change should have ended. On success, a new token;
      // the request's previous session (if any) is revoked.
      session = await c.var.session.login(String(id), {
        verify: async () => {
          const [row] = await db.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE id = $1', [id]);
          const matches = await verifyPassword(password, row?.password_hash ?? (await dummyHash()));
          return user !== undefined && row !== undefined && matches;
        },
      });
    } catch (cause) {
      if (cause instanceof SessionInvalidError && cause.reason === 'epoch') {
        return error(c, 409, 'login_conflict', "the account's sessions were revoked during this login: log in again");
      }
      throw cause;
    }
    if (session === undefined) return error(c, 401, 'invalid_credentials', 'wrong email or password');
    return c.json({ userId: id }, 200, { 'Cache-Control': 'no-store' });
  });

  app.post('/logout', auth, async (c) => {
    checkQuery(c.req.url, []);
    await c.var.session.logout();
    return c.json({ loggedOut: true }, 200, { 'Cache-Control': 'no-store' });
  });

  app.get('/profile', auth, required, async (c) => {
    checkQuery(c.req.url, []);
    const mode = modeOf(c);
    const id = Number(c.var.session.session!.userId);
    let loaded = false;
    const load = () => {
      loaded = true;
      return loadProfile(id);
    };
    const profile =
      mode === 'larder'
        ? await users.getOrSet(String(id), load, { ttl: config.profileTtlMs, tags: [USERS_TAG] })
        : mode === 'naive'
          ? await naive.getOrSet(`user:${id}`, config.profileTtlMs, load)
          : await load();
    countReads(mode, 1, loaded ? 1 : 0);
    c.header('x-cache', mode === 'off' ? 'bypass' : loaded ? 'miss' : 'hit');
    c.header('Cache-Control', 'no-store');
    if (profile === undefined) return error(c, 404, 'not_found', 'your user no longer exists');
    return c.json(profile);
  });

  app.get('/products/:id', async (c) => {
    const id = parseId(c.req.param('id'));
    checkQuery(c.req.url, []);
    const mode = modeOf(c);
    let loaded = false;
    const load = () => {
      loaded = true;
      return loadProduct(id);
    };
    const product =
      mode === 'larder'
        ? await products.getOrSet(String(id), load, { tags: [PRODUCTS_TAG] })
        : mode === 'naive'
          ? await naive.getOrSet(`product:${id}`, config.productTtlMs, load)
          : await load();
    countReads(mode, 1, loaded ? 1 : 0);
    c.header('x-cache', mode === 'off' ? 'bypass' : loaded ? 'miss' : 'hit');
    if (product === undefined) return error(c, 404, 'not_found', `no product with id ${id}`);
    return c.json(product);
  });

  app.get('/products', async (c) => {
    const ids = parseIds(checkQuery(c.req.url, ['ids']).get('ids') ?? undefined);
    const mode = modeOf(c);
    let misses = 0;
    let found: (Product | undefined)[];
    if (mode === 'larder') {
      // One MGET for every id, one query for the misses, one round trip to write them.
      found = await products.getOrSetMany(
        ids.map(String),
        async (missing) => {
          misses = missing.length;
          const rows = await loadProducts(missing.map(Number));
          return new Map([...rows].map(([id, product]) => [String(id), product]));
        },
        { tags: [PRODUCTS_TAG] },
      );
    } else if (mode === 'naive') {
      found = await Promise.all(
        ids.map((id) =>
          naive.getOrSet(`product:${id}`, config.productTtlMs, () => {
            misses++;
            return loadProduct(id);
          }),
        ),
      );
    } else {
      const rows = await loadProducts(ids);
      found = ids.map((id) => rows.get(id));
      misses = ids.length;
    }
    countReads(mode, ids.length, misses);
    c.header('x-cache', mode === 'off' ? 'bypass' : misses > 0 ? 'miss' : 'hit');
    c.header('x-cache-misses', String(misses));
    return c.json({
      products: found.filter((product) => product !== undefined),
      missing: ids.filter((_, i) => found[i] === undefined),
    });
  });

  app.put('/products/:id', auth, required, async (c) => {
    const id = parseId(c.req.param('id'));
    checkQuery(c.req.url, []);
    const patch = parseProductPatch(await jsonBody(c));
    // Write Postgres, then invalidate: the key goes from Redis, and the bus tells every
    // instance to drop it from its L1. A load racing the write cannot put the old row back.
    const row = await products.invalidateAfter(
      async () => {
        const [updated] = await db.query(
          `UPDATE products
              SET name = coalesce($2, name), price = coalesce($3::numeric, price), stock = coalesce($4, stock), updated_at = now()
            WHERE id = $1
        RETURNING ${PRODUCT_COLUMNS}`,
          [id, patch.name ?? null, patch.price ?? null, patch.stock ?? null],
        );
        return updated;
      },
      { keys: [String(id)] },
    );
    await naive.delete([`product:${id}`]);
    if (row === undefined) return error(c, 404, 'not_found', `no product with id ${id}`);
    return c.json(toProduct(row), 200, { 'Cache-Control': 'no-store' });
  });

  // The database's error text stays in the log: it can name hosts, users, schemas or tables.
  let lastPingError: string | undefined;
  app.get('/healthz', async (c) => {
    checkQuery(c.req.url, []);
    const { database, redis, cache } = services;
    let postgres: { ok: boolean; latencyMs?: number; reason?: string };
    try {
      postgres = { ok: true, latencyMs: Math.round((await ping(database)) * 100) / 100 };
      if (lastPingError !== undefined) services.log('Postgres: answering /healthz again');
      lastPingError = undefined;
    } catch (cause) {
      const timedOut = cause instanceof PingTimeout;
      postgres = {
        ok: false,
        reason: timedOut ? `no answer within ${PING_TIMEOUT_MS} ms` : 'the check query failed (details in the service log)',
      };
      const detail = cause instanceof Error ? cause.message : String(cause);
      // Once per distinct error, not once per probe.
      if (detail !== lastPingError) services.log(`Postgres: /healthz check failed: ${detail}`);
      lastPingError = detail;
    }
    const store = cache.store.status();
    const redisOk = redis.mode === 'memory' || (redis.ready() && store.breaker !== 'open');
    return c.json(
      {
        status: !postgres.ok ? 'down' : redisOk ? 'ok' : 'degraded',
        embedded: { postgres: database.kind === 'pglite', redis: redis.mode === 'memory' },
        postgres: {
          mode: database.kind,
          target: database.target,
          poolSize: config.dbPoolSize,
          simulatedDelayMs: config.dbDelayMs,
          ...postgres,
        },
        redis: {
          mode: redis.mode,
          ...(redis.target === undefined ? {} : { target: redis.target }),
          ready: redis.mode === 'memory' || redis.ready(),
          breaker: store.breaker,
        },
        cacheMode: config.cacheMode,
      },
      postgres.ok ? 200 : 503,
      { 'Cache-Control': 'no-store' },
    );
  });

  app.get('/stats', (c) => {
    checkQuery(c.req.url, []);
    const { latency: _latency, ...counters } = services.cache.stats();
    return c.json({ dbQueries: db.queries, reads, cache: counters, naive: { hits: naive.hits, misses: naive.misses } }, 200, {
      'Cache-Control': 'no-store',
    });
  });

  const before = app.routes.length;
  for (const extend of extensions) extend(app, services);
  for (const route of app.routes.slice(before)) {
    // A mounted app (`ALL /dashboard/*`) is listed by its page.
    const line = route.method === 'ALL' ? `GET ${route.path.replace(/\/\*$/, '')}` : `${route.method} ${route.path}`;
    if (!extensionRoutes.includes(line)) extensionRoutes.push(line);
  }

  app.notFound((c) => {
    const pathname = new URL(c.req.url).pathname;
    const allowed = allowedMethods(app, pathname);
    if (allowed.length > 0) {
      return c.json(
        { error: 'method_not_allowed', message: `${pathname} takes ${allowed.join(', ')}, not ${c.req.method}` },
        405,
        { Allow: allowed.join(', '), 'Cache-Control': 'no-store' },
      );
    }
    return error(c, 404, 'not_found', `no route for ${c.req.method} ${pathname}`);
  });
  app.onError((cause, c) => {
    if (cause instanceof HttpError) return error(c, cause.status, cause.code, cause.message);
    if (isLarderError(cause, 'E_SESSION_STORE')) {
      return error(c, 503, 'sessions_unavailable', 'sessions are unavailable right now (Redis); try again shortly');
    }
    if (isLarderError(cause, 'E_SESSION_INVALID')) return error(c, 403, 'forbidden', cause.message);
    if (cause instanceof DatabaseError) {
      services.log(`${c.req.method} ${new URL(c.req.url).pathname}: ${cause.message}`);
      return error(c, 503, 'database_unavailable', 'the database is unavailable right now; try again shortly');
    }
    services.log(
      `error on ${c.req.method} ${new URL(c.req.url).pathname}: ${cause instanceof Error ? (cause.stack ?? cause.message) : String(cause)}`,
    );
    return error(c, 500, 'internal', 'internal error');
  });
  return app;
}
