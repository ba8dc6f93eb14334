/**
 * Wires the service: database (Postgres or PGlite) and seed data, Redis (or memory), the Larder
 * cache and sessions, the Hono app and its HTTP server; and takes it all down again on
 * {@link DemoService.close} (drain in-flight requests, then sessions, cache, Redis, database).
 */
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createAdaptorServer } from '@hono/node-server';
import { createClient } from 'redis';
import { createCache, memoryStore, type CacheOptions, type Store } from '../src/index.js';
import { createSessions } from '../src/sessions/index.js';
import { redisStore } from '../src/stores/redis.js';
import { createApp, PRODUCTS_TAG, USERS_TAG, type DemoApp, type Extension, type RedisInfo, type Services } from './app.js';
import { redact, type DemoConfig } from './config.js';
import { openDatabase, type Database } from './db.js';
import { memoryKeyValue, NaiveCache, redisKeyValue } from './naive.js';
import { seed, type SeedResult } from './seed.js';

export type RedisClient = ReturnType<typeof createClient>;

/** The Redis side: a connected (or reconnecting) client, or none (memory). */
export interface RedisConnection {
  readonly client: RedisClient | undefined;
  readonly info: RedisInfo;
  close(): Promise<void>;
}

export interface DemoService {
  readonly url: string;
  readonly port: number;
  readonly app: DemoApp;
  readonly services: Services;
  /** The Redis connection (shared with other services through {@link StartOptions.redis}). */
  readonly redis: RedisConnection;
  readonly seeded: SeedResult | undefined;
  /** Stops taking connections, lets in-flight requests finish, then closes everything it opened. */
  close(): Promise<void>;
}

export interface StartOptions {
  readonly extensions?: readonly Extension[];
  /** An open database to use instead of opening one (it is not closed, and not seeded again). */
  readonly database?: Database;
  /** A Redis connection to use instead of connecting (it is not closed). */
  readonly redis?: RedisConnection;
  readonly log?: (message: string) => void;
}

/** What answered a `PING` at Redis' address. */
type Probe = { readonly kind: 'up' } | { readonly kind: 'down' } | { readonly kind: 'refused'; readonly reply: string };

/**
 * An error reply that means "you may not": no password or a wrong one (`NOAUTH`, `WRONGPASS`,
 * `ERR AUTH ... without any password configured`), an ACL user lacking permissions (`NOPERM`),
 * protected mode (`DENIED`). Retrying cannot fix any of them.
 */
const REFUSAL = /^(NOAUTH|WRONGPASS|NOPERM|DENIED)\b|^ERR\b.*\b(AUTH|password)\b/i;

/**
 * Sends `PING` over a raw socket. `up` when Redis answers it (`+PONG`, or a passing state such as
 * `-LOADING`), `refused` when it answers with a {@link REFUSAL}, `down` when nothing answers
 * like Redis within `timeoutMs`.
 */
function probeRedis(url: string, timeoutMs: number): Promise<Probe> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (probe: Probe) => {
      socket.destroy();
      resolve(probe);
    };
    socket.setTimeout(timeoutMs, () => done({ kind: 'down' }));
    socket.once('error', () => done({ kind: 'down' }));
    socket.once('data', (data) => {
      const line = data.toString().split('\r\n')[0] ?? '';
      if (line.startsWith('+')) done({ kind: 'up' });
      else if (line.startsWith('-'))
        done(REFUSAL.test(line.slice(1)) ? { kind: 'refused', reply: line.slice(1) } : { kind: 'up' });
      else done({ kind: 'down' });
    });
    socket.connect(Number(port || 6379), hostname, () => socket.write('PING\r\n'));
  });
}

/** Redis refused the demo's connection (authentication or permissions): a start-up error, not an outage. */
export class RedisRefusedError extends Error {
  override readonly name = 'RedisRefusedError';
}

function refused(url: string, reply: string, explicit: boolean): RedisRefusedError {
  const password = /^(NOAUTH|WRONGPASS)\b|\b(AUTH|password)\b/i.test(reply);
  const fix = !password
    ? 'Fix that on the Redis side, or set REDIS_URL=memory to use the in-memory store.'
    : explicit
      ? 'Check the password in REDIS_URL: redis://:password@host:port (redis://user:password@host:port with ACL users).'
      : 'Set REDIS_URL=redis://:password@host:port (redis://user:password@host:port with ACL users), ' +
        'or REDIS_URL=memory to use the in-memory store.';
  const said = reply.trim().replace(/\.?$/, '.');
  return new RedisRefusedError(
    `Redis at ${redact(url)} refused the connection${password ? ' (it wants a password, or another one)' : ''}; ` +
      `it answered: ${said} ${fix}`,
  );
}

/**
 * Connects to Redis: `REDIS_URL` if set (the service starts even if it is down, and serves from
 * Postgres until it answers), else 127.0.0.1:6379 if something answers there, else nothing.
 * A Redis that answers but refuses the connection (no password or a wrong one, ACLs, protected
 * mode) stops the start-up with a {@link RedisRefusedError} saying what to set.
 */
export async function connectRedis(config: DemoConfig, log: (message: string) => void): Promise<RedisConnection> {
  const memory: RedisConnection = {
    client: undefined,
    info: { mode: 'memory', target: undefined, ready: () => true },
    close: async () => undefined,
  };
  if (config.redisUrl === 'memory') {
    log('Redis: off (REDIS_URL=memory): cache and sessions are in this process');
    return memory;
  }
  const explicit = config.redisUrl !== undefined;
  const url = config.redisUrl ?? config.redisDefaultUrl;
  if (!explicit) {
    const probe = await probeRedis(url, Math.min(config.redisConnectTimeoutMs, 500));
    // A Redis that is there but will not let us in is a configuration to fix, not an absence.
    if (probe.kind === 'refused') throw refused(url, probe.reply, false);
    if (probe.kind === 'down') {
      log(
        `Redis: nothing answers at ${url} and REDIS_URL is unset: using Larder's in-memory store. ` +
          'Cache and sessions live in this process only; set REDIS_URL to share them between instances.',
      );
      return memory;
    }
  }
  const client: RedisClient = createClient({
    url,
    // Commands fail at once while disconnected (Larder fails open) instead of queueing.
    disableOfflineQueue: true,
    socket: {
      connectTimeout: config.redisConnectTimeoutMs,
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2_000) + Math.floor(Math.random() * 100),
    },
  });
  let down = false;
  // node-redis does not reject connect() when the handshake is refused: it reports the error
  // and tries again, forever. At start-up, a refusal ends the attempt.
  let refusal: ((reply: string) => void) | undefined;
  const refusedAtStart = new Promise<string>((resolve) => (refusal = resolve));
  client.on('error', (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    if (refusal !== undefined && REFUSAL.test(message)) {
      refusal(message);
      return;
    }
    if (down) return;
    down = true;
    log(`Redis: connection lost (${message}); serving from Postgres meanwhile`);
  });
  client.on('ready', () => {
    if (!down) return;
    down = false;
    log('Redis: connection back');
  });
  const connecting = client.connect().then(
    () => true,
    () => false,
  );
  const timeout = new AbortController();
  const connected = await Promise.race([
    connecting,
    refusedAtStart,
    sleep(config.redisConnectTimeoutMs, false, { signal: timeout.signal }).catch(() => false),
  ]);
  timeout.abort();
  refusal = undefined;
  if (typeof connected === 'string') {
    client.destroy();
    throw refused(url, connected, explicit);
  }
  if (!connected) {
    if (!explicit) {
      client.destroy();
      log(`Redis: ${url} did not connect: using Larder's in-memory store`);
      return memory;
    }
    log(`Redis: ${redact(url)} is not answering yet; serving from Postgres and retrying in the background`);
  } else {
    log(`Redis: connected to ${redact(url)}`);
  }
  let closed = false;
  return {
    client,
    info: { mode: 'redis', target: redact(url), ready: () => client.isReady },
    close: async () => {
      if (closed) return;
      closed = true;
      if (client.isReady) await client.close().catch(() => client.destroy());
      else if (client.isOpen) client.destroy();
    },
  };
}

/** Starts the service on `config.port` (0: a free port). */
export async function startService(config: DemoConfig, options: StartOptions = {}): Promise<DemoService> {
  const log = options.log ?? (config.log ? (message: string) => console.log(`[demo] ${message}`) : () => undefined);
  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanup = async () => {
    for (const step of cleanups.reverse()) await step().catch(() => undefined);
  };
  try {
    let database = options.database;
    let seeded: SeedResult | undefined;
    if (database === undefined) {
      database = await openDatabase({
        url: config.databaseUrl,
        schema: config.databaseSchema,
        poolSize: config.dbPoolSize,
        pgliteDir: config.pgliteDir,
      });
      const opened = database;
      cleanups.push(() => opened.close());
      log(
        config.databaseUrl === undefined
          ? `Postgres: DATABASE_URL is unset: using embedded ${database.target}`
          : `Postgres: ${database.target} (schema ${config.databaseSchema})`,
      );
      seeded = await seed(database, {
        schema: config.databaseSchema,
        users: config.seedUsers,
        products: config.seedProducts,
        password: config.seedPassword,
      });
      log(
        `Seed: ${seeded.usersInserted} users and ${seeded.productsInserted} products inserted in ${Math.round(seeded.ms)} ms ` +
          `(${config.seedUsers} users, ${config.seedProducts} products wanted; password "${config.seedPassword}")`,
      );
    }

    let redis = options.redis;
    if (redis === undefined) {
      const connected = await connectRedis(config, log);
      cleanups.push(() => connected.close());
      redis = connected;
    }

    const store: Store = redis.client === undefined ? memoryStore({ maxEntries: 200_000 }) : redisStore({ client: redis.client });
    const cacheOptions: CacheOptions = {
      store,
      namespace: config.cacheNamespace,
      ttl: config.productTtlMs,
      negativeTtl: config.negativeTtlMs,
      grace: config.graceMs,
      l1: config.l1MaxEntries > 0 ? { maxEntries: config.l1MaxEntries } : false,
      ...(config.earlyRefresh ? {} : { earlyRefresh: false as const }),
      ...(config.lock ? {} : { lock: false as const }),
    };
    const cache = createCache(cacheOptions);
    cleanups.push(() => cache.close());
    if (seeded !== undefined && seeded.usersInserted + seeded.productsInserted > 0) {
      // The rows changed under whatever an earlier run cached (an in-memory PGlite is new on
      // every start, while Redis keeps entries): one write per tag makes all of them misses.
      await cache.invalidateTags([PRODUCTS_TAG, USERS_TAG]);
    }
    const sessions = createSessions({ store, secret: config.sessionSecret, namespace: `${config.cacheNamespace}.sessions` });
    cleanups.push(() => sessions.close());
    const naive = new NaiveCache(
      redis.client === undefined ? memoryKeyValue() : redisKeyValue(redis.client),
      `${config.cacheNamespace}:naive:`,
    );
    const services: Services = {
      config,
      database,
      db: database.runner({ delayMs: config.dbDelayMs }),
      cache,
      products: cache.namespace('products'),
      users: cache.namespace('users'),
      naive,
      sessions,
      redis: redis.info,
      log,
    };
    const app = createApp(services, options.extensions);

    const server = createAdaptorServer({ fetch: app.fetch }) as Server;
    server.listen(config.port, config.host);
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([error]) => Promise.reject(error as Error))]);
    const port = (server.address() as AddressInfo).port;

    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= (async () => {
        const drained = new Promise<void>((resolve) => server.close(() => resolve()));
        // Keep-alive connections: close each one as soon as it has no request in flight.
        server.closeIdleConnections();
        const idle = setInterval(() => server.closeIdleConnections(), 50);
        const cut = setTimeout(() => {
          log(`Shutdown: requests still running after ${config.shutdownTimeoutMs} ms; closing their connections`);
          server.closeAllConnections();
        }, config.shutdownTimeoutMs);
        await drained;
        clearInterval(idle);
        clearTimeout(cut);
        await cleanup();
      })();
      return closing;
    };
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    return { url: `http://${host}:${port}`, port, app, services, redis, seeded, close };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
