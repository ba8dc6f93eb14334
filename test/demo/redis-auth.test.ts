/**
 * A Redis that wants a password (a private redis-server with `requirepass`): the demo must stop at
 * start-up with a message saying what to set, whether it found that Redis itself (REDIS_URL
 * unset: the probe's PING is answered -NOAUTH) or was pointed at it without the right password;
 * neither "up" nor a quiet fallback to the in-memory store. With the password, it runs.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisRefusedError } from '../../demo/service.js';
import { nodeRedis } from '../helpers/redis.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { Client, dropSchema, startTestService, testEnv, uniqueSchema } from './helpers.js';

const schema = uniqueSchema('auth');
const root = fileURLToPath(new URL('../..', import.meta.url));
const PASSWORD = 'demo-test-secret';
let redis: RedisServer;

beforeAll(async () => {
  redis = await startRedis();
  // Set after start: the helper's readiness check speaks to Redis without a password.
  const admin = await nodeRedis(redis.url);
  await admin.configSet('requirepass', PASSWORD);
  await admin.close();
});

afterAll(async () => {
  await redis?.stop();
  await dropSchema(schema);
});

const withPassword = (password: string) => `redis://:${password}@127.0.0.1:${redis.port}`;

describe('start-up against a Redis that wants a password', () => {
  it('REDIS_URL unset, the default address answers -NOAUTH: a start-up error, not "up", not memory', async () => {
    const logged: string[] = [];
    const started = startTestService(
      testEnv(schema, { REDIS_URL: undefined }),
      { redisDefaultUrl: redis.url },
      { log: (line) => logged.push(line) },
    );
    await expect(started).rejects.toThrow(RedisRefusedError);
    await expect(started).rejects.toThrow(
      `Redis at ${redis.url} refused the connection (it wants a password, or another one); it answered: NOAUTH Authentication required. ` +
        'Set REDIS_URL=redis://:password@host:port (redis://user:password@host:port with ACL users), ' +
        'or REDIS_URL=memory to use the in-memory store.',
    );
    expect(logged.filter((line) => line.startsWith('Redis:'))).toEqual([]);
  });

  it('REDIS_URL without a password or with a wrong one: a start-up error at once, not retries', async () => {
    for (const [url, reply] of [
      [redis.url, /it answered: NOAUTH .*\. Check the password in REDIS_URL/],
      [withPassword('wrong'), /it answered: WRONGPASS .*\. Check the password in REDIS_URL/],
    ] as const) {
      const started = Date.now();
      const attempt = startTestService(testEnv(schema, { REDIS_URL: url, REDIS_CONNECT_TIMEOUT_MS: '5000' }));
      await expect(attempt).rejects.toThrow(reply);
      // Refused on the first answer, not after the connect timeout.
      expect(Date.now() - started).toBeLessThan(4_000);
    }
    // The password never appears in the message.
    await expect(startTestService(testEnv(schema, { REDIS_URL: withPassword('wrong') }))).rejects.toThrow(
      `Redis at redis://:***@127.0.0.1:${redis.port} refused`,
    );
  });

  it('with the password, the service runs on that Redis', async () => {
    const service = await startTestService(testEnv(schema, { REDIS_URL: withPassword(PASSWORD) }));
    try {
      const user = new Client(service.url);
      expect((await user.get('/healthz')).body).toMatchObject({ status: 'ok', redis: { mode: 'redis', ready: true } });
      expect((await user.login('user3@example.com')).status).toBe(200);
      expect((await user.get('/profile')).status).toBe(200);
    } finally {
      await service.close();
    }
  });

  it('npm start (demo/main.ts) says so and exits 1', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'demo/main.ts'], {
      cwd: root,
      env: { ...process.env, ...testEnv(schema, { REDIS_URL: redis.url, LOG: '1' }) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(1);
    expect(stderr).toContain(`[demo] could not start: Redis at ${redis.url} refused the connection`);
  }, 30_000);
});
