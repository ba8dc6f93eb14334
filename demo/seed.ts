/**
 * Schema and seed data, in one transaction under an advisory lock (so two instances starting
 * together on the same database do not race), written as set-based SQL: `generate_series` makes
 * 100k products in well under a second, with no round trip per row.
 *
 * Idempotent: tables are created if missing, and only the ids past the current maximum are
 * inserted, so restarting on a seeded database costs two `max(id)` lookups. Rows are never reset:
 * products changed through `PUT` keep their values across restarts.
 *
 * Every seeded user (`user<N>@example.com`) has the same password (`SEED_PASSWORD`, default
 * `larder-demo`), hashed once per seeding run and that one hash reused for every row: scrypt is
 * deliberately slow (~50 ms), and 10k hashes would take minutes. Real users each get their own salt.
 */
import type { Database } from './db.js';
import { hashPassword } from './passwords.js';

export interface SeedOptions {
  readonly schema: string;
  readonly users: number;
  readonly products: number;
  readonly password: string;
}

export interface SeedResult {
  readonly usersInserted: number;
  readonly productsInserted: number;
  readonly ms: number;
}

const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS users (
  id integer PRIMARY KEY,
  email text NOT NULL UNIQUE,
  name text NOT NULL,
  password_hash text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS products (
  id integer PRIMARY KEY,
  name text NOT NULL,
  price numeric(10, 2) NOT NULL CHECK (price >= 0),
  stock integer NOT NULL CHECK (stock >= 0),
  updated_at timestamptz NOT NULL DEFAULT now()
)`;

const FIRST_NAMES = [
  'Ada',
  'Grace',
  'Alan',
  'Barbara',
  'Edsger',
  'Frances',
  'Donald',
  'Margaret',
  'Ken',
  'Radia',
  'Dennis',
  'Sophie',
];
const LAST_NAMES = ['Lovelace', 'Hopper', 'Turing', 'Liskov', 'Dijkstra', 'Allen', 'Knuth', 'Hamilton', 'Thompson', 'Perlman'];
const ADJECTIVES = ['Sturdy', 'Compact', 'Deluxe', 'Classic', 'Rustic', 'Modern', 'Foldable', 'Vintage', 'Ergonomic', 'Smart'];
const MATERIALS = ['Oak', 'Steel', 'Linen', 'Bamboo', 'Copper', 'Wool', 'Ceramic', 'Glass', 'Leather', 'Granite', 'Cotton'];
const NOUNS = ['Chair', 'Lamp', 'Kettle', 'Shelf', 'Backpack', 'Mug', 'Desk', 'Blanket', 'Clock', 'Skillet', 'Vase', 'Stool'];

const array = (words: readonly string[]) => `ARRAY[${words.map((word) => `'${word}'`).join(', ')}]`;

/** Creates the tables if needed and inserts the missing seed rows. */
export async function seed(db: Database, options: SeedOptions): Promise<SeedResult> {
  const started = performance.now();
  return db.transaction(async (query) => {
    await query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`larder-demo:${options.schema}`]);
    await query(`CREATE SCHEMA IF NOT EXISTS ${options.schema}`);
    for (const statement of SCHEMA_SQL.split(';')) await query(statement);

    let usersInserted = 0;
    const [users] = await query<{ max: number }>('SELECT coalesce(max(id), 0)::int AS max FROM users');
    if (users!.max < options.users) {
      const hash = await hashPassword(options.password);
      const [row] = await query<{ n: number }>(
        `WITH inserted AS (
           INSERT INTO users (id, email, name, password_hash)
           SELECT g, 'user' || g || '@example.com',
                  (${array(FIRST_NAMES)})[1 + g % ${FIRST_NAMES.length}] || ' ' ||
                  (${array(LAST_NAMES)})[1 + (g / ${FIRST_NAMES.length}) % ${LAST_NAMES.length}],
                  $2
           FROM generate_series($1::int, $3::int) AS g
           ON CONFLICT DO NOTHING
           RETURNING 1)
         SELECT count(*)::int AS n FROM inserted`,
        [users!.max + 1, hash, options.users],
      );
      usersInserted = row!.n;
    }

    let productsInserted = 0;
    const [products] = await query<{ max: number }>('SELECT coalesce(max(id), 0)::int AS max FROM products');
    if (products!.max < options.products) {
      const [row] = await query<{ n: number }>(
        `WITH inserted AS (
           INSERT INTO products (id, name, price, stock)
           SELECT g,
                  (${array(ADJECTIVES)})[1 + g % ${ADJECTIVES.length}] || ' ' ||
                  (${array(MATERIALS)})[1 + (g / ${ADJECTIVES.length}) % ${MATERIALS.length}] || ' ' ||
                  (${array(NOUNS)})[1 + (g / ${ADJECTIVES.length * MATERIALS.length}) % ${NOUNS.length}],
                  round(1 + (g::bigint * 7919 % 49900) / 100.0, 2),
                  (g::bigint * 104729 % 1000)::int
           FROM generate_series($1::int, $2::int) AS g
           ON CONFLICT DO NOTHING
           RETURNING 1)
         SELECT count(*)::int AS n FROM inserted`,
        [products!.max + 1, options.products],
      );
      productsInserted = row!.n;
    }
    return { usersInserted, productsInserted, ms: performance.now() - started };
  });
}
