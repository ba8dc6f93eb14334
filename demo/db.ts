/**
 * The database: real Postgres through `pg` (a pool), or PGlite (Postgres compiled to WebAssembly,
 * in this process) when no `DATABASE_URL` is given. Both speak the same SQL, so the rest of the
 * demo does not know which one it has.
 *
 * Queries go through a {@link QueryRunner}, which counts them (the load test reports database
 * queries per second from that counter) and adds the simulated cost `DB_DELAY_MS`: `pg_sleep` on
 * the query's own connection on Postgres (a slow query holds one of the pool's `DB_POOL_SIZE`
 * connections, as on a loaded database), and on PGlite, which runs one query at a time (where
 * `pg_sleep` would serialize every request), a timer taken under a semaphore of `DB_POOL_SIZE`
 * slots: the same capacity, `DB_POOL_SIZE / DB_DELAY_MS` queries per ms, either way.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { PGlite } from '@electric-sql/pglite';
import type { PoolClient } from 'pg';
import { redact } from './config.js';

export type Row = Record<string, unknown>;

/** Runs SQL with `$1`-style parameters and returns the rows. */
export type Query = <R extends Row = Row>(sql: string, params?: readonly unknown[]) => Promise<R[]>;

export interface QueryRunner {
  readonly query: Query;
  /** Queries run so far through this runner. */
  readonly queries: number;
}

export interface Database {
  readonly kind: 'postgres' | 'pglite';
  /** Where the data lives, safe to log. */
  readonly target: string;
  /** A counting runner; `delayMs` adds a simulated cost to each query. */
  runner(options?: { delayMs?: number }): QueryRunner;
  /** Runs `work` in one transaction on one connection (uncounted, no delay). */
  transaction<T>(work: (query: Query) => Promise<T>): Promise<T>;
  /** Round-trip time of `SELECT 1`, in ms (uncounted). */
  ping(): Promise<number>;
  close(): Promise<void>;
}

export interface OpenOptions {
  readonly url: string | undefined;
  readonly schema: string;
  readonly poolSize: number;
  readonly pgliteDir: string | undefined;
}

/** Opens Postgres (`url`) or PGlite; checks the connection before returning. */
export async function openDatabase(options: OpenOptions): Promise<Database> {
  return options.url === undefined ? openPglite(options) : openPostgres(options.url, options);
}

/** A query failed (the database is down, or refused it); `cause` is the driver's error. */
export class DatabaseError extends Error {
  override readonly name = 'DatabaseError';
}

class Runner implements QueryRunner {
  queries = 0;
  readonly query: Query;

  constructor(run: Query, delayed: Query | undefined) {
    const execute = delayed ?? run;
    this.query = async (sql, params) => {
      this.queries++;
      try {
        return await execute(sql, params);
      } catch (cause) {
        throw new DatabaseError(`The database failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
      }
    };
  }
}

async function openPostgres(url: string, options: OpenOptions): Promise<Database> {
  const { Pool } = await import('pg');
  const pool = new Pool({
    connectionString: url,
    max: options.poolSize,
    // Every connection works in the demo's schema.
    options: `-c search_path=${options.schema}`,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 10_000,
    application_name: 'larder-demo',
  });
  // An idle connection that dies (Postgres restarted) must not crash the process; the pool replaces it.
  pool.on('error', () => undefined);
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw new Error(`Postgres at ${redact(url)} is not answering: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
    });
  }
  const run: Query = async <R extends Row>(sql: string, params?: readonly unknown[]) =>
    (await pool.query(sql, params as unknown[] | undefined)).rows as R[];
  const withClient = async <T>(work: (client: PoolClient) => Promise<T>): Promise<T> => {
    const client = await pool.connect();
    try {
      return await work(client);
    } finally {
      client.release();
    }
  };
  return {
    kind: 'postgres',
    target: redact(url),
    runner: ({ delayMs = 0 } = {}) =>
      new Runner(
        run,
        delayMs > 0
          ? (sql, params) =>
              withClient(async (client) => {
                await client.query('SELECT pg_sleep($1)', [delayMs / 1000]);
                return (await client.query(sql, params as unknown[] | undefined)).rows;
              })
          : undefined,
      ),
    transaction: (work) =>
      withClient(async (client) => {
        await client.query('BEGIN');
        try {
          const result = await work(async (sql, params) => (await client.query(sql, params as unknown[] | undefined)).rows);
          await client.query('COMMIT');
          return result;
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw error;
        }
      }),
    ping: async () => {
      const started = performance.now();
      await pool.query('SELECT 1');
      return performance.now() - started;
    },
    close: () => pool.end(),
  };
}

/** At most `size` holders at once; the others wait in line. */
class Semaphore {
  readonly #waiting: (() => void)[] = [];
  #free: number;

  constructor(size: number) {
    this.#free = size;
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await work();
    } finally {
      const next = this.#waiting.shift();
      if (next === undefined) this.#free++;
      else next();
    }
  }
}

async function openPglite(options: OpenOptions): Promise<Database> {
  const { PGlite } = await import('@electric-sql/pglite');
  const db: PGlite = await PGlite.create(options.pgliteDir ?? 'memory://');
  await db.exec(`CREATE SCHEMA IF NOT EXISTS ${options.schema}; SET search_path TO ${options.schema}`);
  const run: Query = async <R extends Row>(sql: string, params?: readonly unknown[]) =>
    (await db.query<R>(sql, params as unknown[] | undefined)).rows;
  let closed = false;
  // The simulated pool: shared by every runner, like a real pool.
  const slots = new Semaphore(options.poolSize);
  return {
    kind: 'pglite',
    target: options.pgliteDir === undefined ? 'PGlite (in memory)' : `PGlite (${options.pgliteDir})`,
    runner: ({ delayMs = 0 } = {}) =>
      new Runner(
        run,
        delayMs > 0
          ? (sql, params) =>
              slots.run(async () => {
                await sleep(delayMs);
                return run(sql, params);
              })
          : undefined,
      ),
    transaction: (work) =>
      db.transaction(async (tx) =>
        work(
          async <R extends Row>(sql: string, params?: readonly unknown[]) =>
            (await tx.query<R>(sql, params as unknown[] | undefined)).rows,
        ),
      ),
    ping: async () => {
      const started = performance.now();
      await db.query('SELECT 1');
      return performance.now() - started;
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await db.close();
    },
  };
}
