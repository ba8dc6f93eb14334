/**
 * Demo test helpers: a private Postgres schema per test file (dropped afterwards), services
 * started in-process on port 0 with small seed counts, and a tiny HTTP client with a cookie jar.
 */
import { randomBytes } from 'node:crypto';
import { Client as PgClient } from 'pg';
import { loadConfig, type DemoConfig } from '../../demo/config.js';
import { startService, type DemoService, type StartOptions } from '../../demo/service.js';
import { REDIS_URL, uniqueNamespace } from '../helpers/redis.js';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const SEED_USERS = 40;
export const SEED_PRODUCTS = 300;
export const PASSWORD = 'larder-demo';

/** A schema name no other test file (or run) uses. */
export function uniqueSchema(label: string): string {
  return `demo_${label}_${randomBytes(4).toString('hex')}`;
}

export async function dropSchema(schema: string): Promise<void> {
  const client = new PgClient({ connectionString: DATABASE_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

/** The environment of a test service: real Postgres in `schema`, the shared Redis, a fresh namespace. */
export function testEnv(schema: string, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    DATABASE_URL,
    DATABASE_SCHEMA: schema,
    REDIS_URL,
    CACHE_NAMESPACE: uniqueNamespace('demo'),
    SEED_USERS: String(SEED_USERS),
    SEED_PRODUCTS: String(SEED_PRODUCTS),
    PORT: '0',
    LOG: '0',
    ...extra,
  };
}

export function testConfig(env: Record<string, string | undefined>, overrides: Partial<DemoConfig> = {}): DemoConfig {
  return { ...loadConfig(env), ...overrides };
}

export async function startTestService(
  env: Record<string, string | undefined>,
  overrides: Partial<DemoConfig> = {},
  options: StartOptions = {},
): Promise<DemoService> {
  return startService(testConfig(env, overrides), options);
}

export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly body: unknown;
}

export interface RequestOptions {
  readonly json?: unknown;
  /** A raw body (sent as is, with the headers given). */
  readonly body?: string;
  readonly headers?: Record<string, string>;
}

/** An HTTP client for one user: keeps the `sid` cookie the service sets. */
export class Client {
  readonly base: string;
  cookie: string | undefined;

  constructor(base: string) {
    this.base = base;
  }

  async request(method: string, path: string, options: RequestOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = { ...options.headers };
    if (this.cookie !== undefined) headers.cookie = `sid=${this.cookie}`;
    let body = options.body;
    if (options.json !== undefined) {
      headers['content-type'] ??= 'application/json';
      body = JSON.stringify(options.json);
    }
    const response = await fetch(this.base + path, { method, headers, ...(body === undefined ? {} : { body }) });
    for (const line of response.headers.getSetCookie()) {
      const match = /^sid=([^;]*)/.exec(line);
      if (match === null) continue;
      this.cookie = match[1] === '' || /max-age=0/i.test(line) ? undefined : match[1];
    }
    const text = await response.text();
    let parsed: unknown = text;
    if ((response.headers.get('content-type') ?? '').includes('application/json')) parsed = JSON.parse(text);
    return { status: response.status, headers: response.headers, body: parsed };
  }

  get(path: string, options?: RequestOptions): Promise<Reply> {
    return this.request('GET', path, options);
  }

  async login(email = 'user1@example.com', password = PASSWORD): Promise<Reply> {
    return this.request('POST', '/login', { json: { email, password } });
  }
}
