/** Connections to the shared test Redis (REDIS_URL, default 127.0.0.1:6379) and small helpers. */
import { randomBytes } from 'node:crypto';
import { createClient } from 'redis';
import { Redis } from 'ioredis';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A namespace no other test (or test run) uses. */
export function uniqueNamespace(label = 't'): string {
  return `${label}-${randomBytes(5).toString('hex')}`;
}

export type NodeRedis = Awaited<ReturnType<typeof nodeRedis>>;

export async function nodeRedis(url = REDIS_URL) {
  const client = createClient({ url, socket: { reconnectStrategy: 50 } });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** An ioredis client; `enableAutoPipelining` sends the commands of one tick in one write. */
export async function ioredis(url = REDIS_URL, { enableAutoPipelining = false } = {}): Promise<Redis> {
  const client = new Redis(url, { lazyConnect: true, retryStrategy: () => 50, enableAutoPipelining });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** `INFO commandstats` as command → calls. */
export async function commandStats(client: NodeRedis): Promise<Map<string, number>> {
  const info = await client.info('commandstats');
  const stats = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) stats.set(match[1]!, Number(match[2]));
  return stats;
}

/** Calls per command between two `commandStats` snapshots. */
export function statsDelta(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const delta: Record<string, number> = {};
  for (const [command, calls] of after) {
    const d = calls - (before.get(command) ?? 0);
    if (d > 0) delta[command] = d;
  }
  return delta;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it is true or `timeoutMs` passes. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(10);
  }
  throw new Error(`Timed out waiting for ${what}`);
}

/** A clock tests can move by hand. */
export class ManualClock {
  #now: number;
  constructor(start = Date.now()) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  advance(ms: number): void {
    this.#now += ms;
  }
}

export const randomSuffix = (): string => randomBytes(4).toString('hex');
