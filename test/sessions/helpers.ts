/**
 * Shared helpers for the sessions suites: stores per driver, event recorders, a small HTTP client
 * that keeps full control of the Cookie header, and a raw-socket request for bytes `fetch`
 * refuses to send (NUL, invalid UTF-8).
 */
import { once } from 'node:events';
import { Socket } from 'node:net';
import { createSessions, type SessionManager, type SessionOptions } from '../../src/sessions/index.js';
import type { SessionEventMap, SessionEventName } from '../../src/sessions/events.js';
import { memoryStore } from '../../src/stores/memory.js';
import { ioredisStore } from '../../src/stores/ioredis.js';
import { redisStore } from '../../src/stores/redis.js';
import type { RedisConnectionOptions } from '../../src/stores/redis-store.js';
import type { Store } from '../../src/stores/store.js';
import { ioredis, nodeRedis, REDIS_URL } from '../helpers/redis.js';

export const SECRET = 'test-secret-0123456789-abcdefghijklmnop';
export type Driver = 'redis' | 'ioredis' | 'memory';
export const DRIVERS: readonly Driver[] = ['redis', 'ioredis', 'memory'];

const cleanups: (() => Promise<unknown>)[] = [];

/** Closes every connection the helpers opened (call from `afterAll`). */
export async function closeAll(): Promise<void> {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
}

/**
 * A store for `driver`. `autoPipelining` turns on ioredis's `enableAutoPipelining` (commands
 * issued in one tick go out in one write, as node-redis always does).
 */
export async function storeFor(
  driver: Driver,
  url = REDIS_URL,
  options: RedisConnectionOptions = {},
  { autoPipelining = false }: { autoPipelining?: boolean } = {},
): Promise<Store> {
  if (driver === 'memory') return memoryStore();
  if (driver === 'redis') {
    const client = await nodeRedis(url);
    cleanups.push(async () => (client.isOpen ? client.destroy() : undefined));
    return redisStore({ client, ...options });
  }
  const client = await ioredis(url, { enableAutoPipelining: autoPipelining });
  cleanups.push(async () => client.disconnect());
  return ioredisStore({ client, ...options });
}

export async function sessionsOn<D extends object = Record<string, unknown>>(
  store: Store,
  options: Omit<SessionOptions<D>, 'store'> = {},
): Promise<SessionManager<D>> {
  const manager = createSessions<D>({ secret: SECRET, ...options, store });
  cleanups.push(() => manager.close());
  return manager;
}

export type Recorded = { [K in SessionEventName]: SessionEventMap[K][0][] };

/** Records every event the manager emits. */
export function record(manager: SessionManager<object>): Recorded {
  const names: SessionEventName[] = [
    'created',
    'rotated',
    'revoked',
    'expired',
    'invalid',
    'brute-force',
    'security',
    'store-error',
  ];
  const recorded = Object.fromEntries(names.map((n) => [n, []])) as unknown as Recorded;
  for (const name of names) manager.on(name, (event: unknown) => void (recorded[name] as unknown[]).push(event));
  return recorded;
}

export interface HttpResult {
  status: number;
  headers: Headers;
  body: unknown;
  setCookies: string[];
}

export interface RequestOptions {
  method?: string;
  cookie?: string;
  headers?: Record<string, string>;
  body?: string;
}

export async function http(baseUrl: string, path: string, options: RequestOptions = {}): Promise<HttpResult> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.cookie !== undefined) headers.cookie = options.cookie;
  const response = await fetch(baseUrl + path, {
    method: options.method ?? 'GET',
    headers,
    ...(options.body === undefined ? {} : { body: options.body }),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    // plain text
  }
  return { status: response.status, headers: response.headers, body, setCookies: response.headers.getSetCookie() };
}

/** The token a Set-Cookie line carries (`undefined` for a clearing line). */
export function tokenFrom(setCookies: readonly string[], name = '__Host-sid'): string | undefined {
  for (const line of setCookies) {
    const match = new RegExp(`^${name}=([^;]*);`).exec(line);
    if (match !== null && match[1] !== '') return match[1];
  }
  return undefined;
}

/**
 * Sends raw bytes as a request (no client-side header validation) and returns the status code,
 * or 0 if the server closed the connection without a response.
 */
export async function rawRequest(port: number, head: Buffer): Promise<number> {
  const socket = new Socket();
  socket.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.end(head);
  await Promise.race([once(socket, 'close'), new Promise((r) => setTimeout(r, 5_000))]);
  socket.destroy();
  const text = Buffer.concat(chunks).toString('latin1');
  const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
  return match === null ? 0 : Number(match[1]);
}

export { nodeRedis, REDIS_URL };

/** True when `fn` throws an error with `code` (sync). */
export function throwsCode(fn: () => unknown, code: string): boolean {
  try {
    fn();
    return false;
  } catch (error) {
    return (error as { code?: unknown }).code === code;
  }
}
