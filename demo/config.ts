/**
 * The demo's configuration, from the environment. Every variable is optional; the defaults make
 * `npm start` work with nothing installed (embedded Postgres, in-memory cache when no Redis
 * answers). A bad value stops the service at start-up with a message naming the variable.
 *
 * @see docs/demo.md
 */

/** How a request is served: through Larder, straight from the database, or by hand-written cache-aside. */
export type CacheMode = 'larder' | 'off' | 'naive';
export const CACHE_MODES: readonly CacheMode[] = ['larder', 'off', 'naive'];

export interface DemoConfig {
  /** TCP port; `0` picks a free one. */
  readonly port: number;
  readonly host: string;
  /** Real Postgres (through `pg`); `undefined`: embedded PGlite. */
  readonly databaseUrl: string | undefined;
  /** Schema holding the demo's tables (created if missing). */
  readonly databaseSchema: string;
  /** PGlite data directory; `undefined`: in memory. Ignored with `databaseUrl`. */
  readonly pgliteDir: string | undefined;
  /** Connections in the `pg` pool. */
  readonly dbPoolSize: number;
  /** Simulated cost added to every database query, in ms (`pg_sleep` on Postgres, a timer on PGlite). */
  readonly dbDelayMs: number;
  /** Explicit Redis URL; `'memory'`: no Redis; `undefined`: try {@link redisDefaultUrl}, else memory. */
  readonly redisUrl: string | undefined;
  /** Where to look for Redis when `REDIS_URL` is unset. */
  readonly redisDefaultUrl: string;
  /** How long to wait for Redis at start-up, in ms. */
  readonly redisConnectTimeoutMs: number;
  /** First segment of every cache key. */
  readonly cacheNamespace: string;
  readonly productTtlMs: number;
  readonly profileTtlMs: number;
  readonly negativeTtlMs: number;
  /** How long past its TTL an entry may be served while reloading, or when Postgres fails. */
  readonly graceMs: number;
  /** Entries in the in-process tier (L1); `0` turns it off. */
  readonly l1MaxEntries: number;
  /** The default way requests are served. */
  readonly cacheMode: CacheMode;
  /** Whether the `x-cache-mode` request header may override {@link cacheMode} (for `npm run load`). */
  readonly cacheModeHeader: boolean;
  /** Larder's early refresh (refresh-ahead + XFetch); `false` turns it off. */
  readonly earlyRefresh: boolean;
  /** Larder's cross-process leases; `false` turns them off. */
  readonly lock: boolean;
  readonly sessionSecret: string;
  /** Cookie without `Secure`/`__Host-` for http://localhost. */
  readonly sessionDevelopment: boolean;
  /**
   * Let unsafe requests with no origin information at all (no `Sec-Fetch-Site`, `Origin` or
   * `Referer`: curl, scripts, `npm run load`) past the sessions' CSRF check. Browsers always send
   * `Origin` on unsafe requests, so they are checked either way.
   */
  readonly csrfAllowMissingOrigin: boolean;
  readonly seedUsers: number;
  readonly seedProducts: number;
  /** Password of every seeded user. */
  readonly seedPassword: string;
  /** Longest wait for in-flight requests on SIGTERM before connections are cut, in ms. */
  readonly shutdownTimeoutMs: number;
  /** Log lines to stdout. */
  readonly log: boolean;
}

/** A development-only secret: fine for a demo on localhost, refused in production. */
export const DEV_SESSION_SECRET = 'larder-demo-development-secret-do-not-use-in-production';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Env = Readonly<Record<string, string | undefined>>;

function text(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = text(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

function flag(env: Env, name: string, fallback: boolean): boolean {
  const raw = text(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false (1/0), got ${JSON.stringify(raw)}`);
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;
const NAMESPACE = /^[A-Za-z0-9_.-]{1,64}$/;
const DAY = 86_400_000;

/** Reads the configuration from `env` (default `process.env`). Throws a {@link ConfigError} on a bad value. */
export function loadConfig(env: Env = process.env): DemoConfig {
  const production = env.NODE_ENV === 'production';
  const databaseSchema = text(env, 'DATABASE_SCHEMA') ?? 'public';
  if (!IDENTIFIER.test(databaseSchema)) {
    throw new ConfigError(`DATABASE_SCHEMA must be a lower-case SQL identifier, got ${JSON.stringify(databaseSchema)}`);
  }
  const cacheNamespace = text(env, 'CACHE_NAMESPACE') ?? 'demo';
  if (!NAMESPACE.test(cacheNamespace)) {
    throw new ConfigError(`CACHE_NAMESPACE must be 1-64 characters from [A-Za-z0-9_.-], got ${JSON.stringify(cacheNamespace)}`);
  }
  const cacheMode = (text(env, 'CACHE_MODE') ?? 'larder') as CacheMode;
  if (!CACHE_MODES.includes(cacheMode)) {
    throw new ConfigError(`CACHE_MODE must be one of ${CACHE_MODES.join(', ')}, got ${JSON.stringify(cacheMode)}`);
  }
  const sessionSecret = text(env, 'SESSION_SECRET') ?? (production ? undefined : DEV_SESSION_SECRET);
  if (sessionSecret === undefined) throw new ConfigError('SESSION_SECRET is required when NODE_ENV=production');
  if (sessionSecret.length < 32) throw new ConfigError('SESSION_SECRET must be at least 32 characters');
  const redisUrl = text(env, 'REDIS_URL');
  if (redisUrl !== undefined && redisUrl !== 'memory' && !/^rediss?:\/\//.test(redisUrl)) {
    throw new ConfigError(`REDIS_URL must be a redis:// or rediss:// URL, or "memory", got ${JSON.stringify(redisUrl)}`);
  }
  const databaseUrl = text(env, 'DATABASE_URL');
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL must be a postgres:// or postgresql:// URL');
  }
  const seedPassword = text(env, 'SEED_PASSWORD') ?? 'larder-demo';
  return {
    port: integer(env, 'PORT', 3000, 0, 65_535),
    host: text(env, 'HOST') ?? '127.0.0.1',
    databaseUrl,
    databaseSchema,
    pgliteDir: text(env, 'PGLITE_DIR'),
    dbPoolSize: integer(env, 'DB_POOL_SIZE', 10, 1, 1_000),
    dbDelayMs: integer(env, 'DB_DELAY_MS', 0, 0, 60_000),
    redisUrl,
    redisDefaultUrl: 'redis://127.0.0.1:6379',
    redisConnectTimeoutMs: integer(env, 'REDIS_CONNECT_TIMEOUT_MS', 1_000, 50, 60_000),
    cacheNamespace,
    productTtlMs: integer(env, 'PRODUCT_TTL_MS', 60_000, 1, DAY),
    profileTtlMs: integer(env, 'PROFILE_TTL_MS', 300_000, 1, DAY),
    negativeTtlMs: integer(env, 'NEGATIVE_TTL_MS', 10_000, 0, DAY),
    graceMs: integer(env, 'CACHE_GRACE_MS', 300_000, 0, DAY),
    l1MaxEntries: integer(env, 'L1_MAX_ENTRIES', 10_000, 0, 10_000_000),
    cacheMode,
    cacheModeHeader: flag(env, 'CACHE_MODE_HEADER', !production),
    earlyRefresh: flag(env, 'CACHE_EARLY_REFRESH', true),
    lock: flag(env, 'CACHE_LOCK', true),
    sessionSecret,
    sessionDevelopment: !production,
    csrfAllowMissingOrigin: flag(env, 'CSRF_ALLOW_MISSING_ORIGIN', !production),
    seedUsers: integer(env, 'SEED_USERS', 10_000, 1, 10_000_000),
    seedProducts: integer(env, 'SEED_PRODUCTS', 100_000, 1, 100_000_000),
    seedPassword,
    shutdownTimeoutMs: integer(env, 'SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000),
    log: flag(env, 'LOG', true),
  };
}

/** A URL with its password replaced, for logs and `/healthz`. */
export function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<unparseable url>';
  }
}
