/**
 * The fixture of a `describe` block over one Redis driver: stores on connections of their own
 * (as separate instances would have), caches and connections closed after each test, and an
 * inspector connection for looking at Redis directly.
 */
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { Cache, Store } from '../../src/index.js';
import { ioredisStore } from '../../src/stores/ioredis.js';
import { redisStore } from '../../src/stores/redis.js';
import { ioredis, nodeRedis, type NodeRedis } from './redis.js';

export interface DriverFixture {
  /** A node-redis connection of the test's own; set before the first test runs. */
  readonly inspector: NodeRedis;
  /** Caches to close after the test. */
  readonly caches: Cache[];
  /** Things to close after the test (errors ignored). */
  readonly closers: (() => Promise<unknown>)[];
  /** A store on a new connection, closed after the test. */
  store(): Promise<Store>;
}

/** Registers the hooks of a {@link DriverFixture} in the calling `describe`. */
export function driverFixture(driver: 'redis' | 'ioredis'): DriverFixture {
  let inspector: NodeRedis | undefined;
  const caches: Cache[] = [];
  const closers: (() => Promise<unknown>)[] = [];
  beforeAll(async () => {
    inspector = await nodeRedis();
  });
  afterEach(async () => {
    await Promise.all(caches.splice(0).map((c) => c.close()));
    await Promise.all(closers.splice(0).map((close) => close().catch(() => undefined)));
  });
  afterAll(async () => {
    await inspector?.close();
  });
  return {
    get inspector() {
      if (inspector === undefined) throw new Error('the inspector connects in beforeAll');
      return inspector;
    },
    caches,
    closers,
    async store() {
      if (driver === 'redis') {
        const client = await nodeRedis();
        closers.push(() => client.close());
        return redisStore({ client });
      }
      const client = await ioredis();
      closers.push(() => client.quit());
      return ioredisStore({ client });
    },
  };
}
