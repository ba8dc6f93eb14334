/**
 * Graceful shutdown of the real entry point (`demo/main.ts` in a child process): SIGTERM while a
 * slow request is in flight lets that request finish, then the process closes Redis and Postgres
 * and exits 0 on its own (a leaked handle would keep it alive until its watchdog exits 1).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { eventually } from '../helpers/redis.js';
import { dropSchema, testEnv, uniqueSchema } from './helpers.js';

const schema = uniqueSchema('shutdown');
const root = fileURLToPath(new URL('../..', import.meta.url));

afterAll(async () => {
  await dropSchema(schema);
});

it('SIGTERM drains the in-flight request, closes Redis and Postgres, and exits 0', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'demo/main.ts'], {
    cwd: root,
    env: { ...process.env, ...testEnv(schema, { DB_DELAY_MS: '1500', LOG: '1', SHUTDOWN_TIMEOUT_MS: '8000' }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  try {
    await eventually(() => /listening on (http:\S+)/.test(output), 30_000, 'the service to listen');
    const url = /listening on (http:\S+)/.exec(output)![1]!;
    const stats = async () => ((await (await fetch(`${url}/stats`)).json()) as { dbQueries: number }).dbQueries;
    expect(await stats()).toBe(0);

    const started = Date.now();
    const slow = fetch(`${url}/products/3`);
    // The request is in flight once its query (1.5 s of pg_sleep) has started.
    await eventually(async () => (await stats()) === 1, 5_000, 'the slow query to start');
    child.kill('SIGTERM');

    const reply = await slow;
    expect(reply.status).toBe(200);
    expect(await reply.json()).toMatchObject({ id: 3 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_400);

    const [code, signal] = await exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(output).toContain('SIGTERM: draining in-flight requests');
    expect(output).toContain('[demo] stopped');
    await expect(fetch(`${url}/healthz`)).rejects.toThrow('fetch failed');
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}, 60_000);
