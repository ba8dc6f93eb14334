/**
 * Redis Cluster: a private one-node cluster (cluster mode enforces CROSSSLOT on every multi-key
 * command and script even with one node) runs every session operation through node-redis's
 * `createCluster` and ioredis's `Cluster`: each script's keys share the user's slot.
 */
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster } from 'ioredis';
import { createCluster } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionManager } from '../../src/sessions/index.js';
import { ioredisStore } from '../../src/stores/ioredis.js';
import { redisStore } from '../../src/stores/redis.js';
import type { Store } from '../../src/stores/store.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { eventually, nodeRedis, uniqueNamespace, type NodeRedis } from '../helpers/redis.js';
import { closeAll, sessionsOn } from './helpers.js';

let server: RedisServer;
let admin: NodeRedis;
const configFile = join(tmpdir(), `larder-cluster-${process.pid}-${Date.now()}.conf`);
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  server = await startRedis({
    args: ['--cluster-enabled', 'yes', '--cluster-config-file', configFile, '--cluster-announce-ip', '127.0.0.1'],
  });
  admin = await nodeRedis(server.url);
  await admin.sendCommand(['CLUSTER', 'ADDSLOTSRANGE', '0', '16383']);
  await eventually(
    async () => (await admin.sendCommand<string>(['CLUSTER', 'INFO'])).includes('cluster_state:ok'),
    10_000,
    'cluster',
  );
});

afterAll(async () => {
  for (const close of closers.splice(0)) await close().catch(() => undefined);
  await closeAll();
  await admin?.close();
  await server?.stop();
  await rm(configFile, { force: true });
});

async function clusterStore(driver: 'redis' | 'ioredis'): Promise<Store> {
  if (driver === 'redis') {
    const cluster = createCluster({ rootNodes: [{ url: server.url }] });
    cluster.on('error', () => undefined);
    await cluster.connect();
    closers.push(() => cluster.close());
    return redisStore({ client: cluster });
  }
  const cluster = new Cluster([{ host: '127.0.0.1', port: server.port }], { lazyConnect: true });
  cluster.on('error', () => undefined);
  await cluster.connect();
  closers.push(() => cluster.quit());
  return ioredisStore({ client: cluster });
}

describe.each(['redis', 'ioredis'] as const)('sessions on Redis Cluster over %s', (driver) => {
  it('every operation runs single-slot (no CROSSSLOT)', async () => {
    const store = await clusterStore(driver);
    const sessions: SessionManager<{ a?: number; b?: number }> = await sessionsOn(store, {
      namespace: uniqueNamespace('cluster'),
      maxSessionsPerUser: 3,
      rotationGrace: 1_000,
      touchInterval: 0,
    });
    const users = ['alice', 'bob', 'carol', 'dave'];
    for (const user of users) {
      const epoch = await sessions.userEpoch(user);
      const { token } = await sessions.create(user, { data: { a: 1 }, epoch });
      const validated = await sessions.validate(token);
      expect(validated).toMatchObject({ valid: true, renewed: true });
      if (!validated.valid) throw new Error('unreachable');
      await sessions.update(validated.session, { b: 2 });
      const rotated = await sessions.rotate(token);
      expect(await sessions.validate(token)).toMatchObject({ valid: true, grace: true });
      await Promise.all([sessions.create(user), sessions.create(user), sessions.create(user)]);
      expect(await sessions.listForUser(user)).toHaveLength(3);
      await sessions.revoke(rotated.token);
      expect(await sessions.revokeAllForUser(user)).toBeGreaterThanOrEqual(2);
      expect(await sessions.listForUser(user)).toEqual([]);
    }
  });
});
