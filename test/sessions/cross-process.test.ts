/**
 * Two server processes share one Redis: a session made by one is valid on the other, and
 * revoke-all (or logout) on one takes effect at once on the other. No pub/sub, no cache: the
 * next request on any process reads the store.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDIS_URL, uniqueNamespace } from '../helpers/redis.js';
import { http, SECRET, tokenFrom } from './helpers.js';

const SAME_ORIGIN = { 'sec-fetch-site': 'same-origin' };
const children: ChildProcess[] = [];

function startServer(namespace: string): Promise<{ url: string; pid: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/sessions/fixtures/server.ts'], {
    env: { ...process.env, REDIS_URL, NAMESPACE: namespace, SECRET },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('server did not start')), 20_000);
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /READY (\d+)/.exec(out);
      if (match !== null) {
        clearTimeout(timer);
        resolve({ url: `http://127.0.0.1:${match[1]}`, pid: child.pid! });
      }
    });
  });
}

describe('sessions across two server processes', () => {
  let a: { url: string; pid: number };
  let b: { url: string; pid: number };

  beforeAll(async () => {
    const namespace = uniqueNamespace('xproc');
    [a, b] = await Promise.all([startServer(namespace), startServer(namespace)]);
  }, 30_000);

  afterAll(() => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  });

  async function login(url: string, user: string): Promise<string> {
    const res = await http(url, `/login?user=${user}`, { method: 'POST', headers: SAME_ORIGIN });
    expect(res.status).toBe(200);
    return `__Host-sid=${tokenFrom(res.setCookies)!}`;
  }

  it('revoke-all on one process logs the user out on the other at once', async () => {
    expect(a.pid).not.toBe(b.pid);
    const alice = [await login(a.url, 'alice'), await login(a.url, 'alice'), await login(b.url, 'alice')];
    const bob = await login(a.url, 'bob');
    for (const cookie of alice) {
      expect((await http(a.url, '/me', { cookie })).body).toMatchObject({ user: 'alice', pid: a.pid });
      expect((await http(b.url, '/me', { cookie })).body).toMatchObject({ user: 'alice', pid: b.pid });
    }
    expect((await http(b.url, '/list?user=alice')).body).toMatchObject({ count: 3 });
    const revoked = await http(b.url, '/revoke-all?user=alice', { method: 'POST' });
    expect(revoked.body).toEqual({ count: 3, pid: b.pid });
    for (const cookie of alice) {
      expect((await http(a.url, '/me', { cookie })).status).toBe(401);
      expect((await http(b.url, '/me', { cookie })).status).toBe(401);
    }
    expect((await http(a.url, '/me', { cookie: bob })).status).toBe(200);
    expect((await http(b.url, '/me', { cookie: bob })).status).toBe(200);
  });

  it('logout on one process is a logout everywhere; a racing login on the other survives only if it came after', async () => {
    const cookie = await login(a.url, 'carol');
    expect((await http(b.url, '/logout', { method: 'POST', cookie, headers: SAME_ORIGIN })).status).toBe(200);
    expect((await http(a.url, '/me', { cookie })).status).toBe(401);
    // Logins on A racing revoke-all on B: whatever survives is exactly what the index lists.
    const logins = Array.from({ length: 20 }, () => login(a.url, 'carol'));
    const all = await http(b.url, '/revoke-all?user=carol', { method: 'POST' });
    const cookies = await Promise.all(logins);
    let alive = 0;
    for (const c of cookies) if ((await http(b.url, '/me', { cookie: c })).status === 200) alive++;
    expect((all.body as { count: number }).count + alive).toBe(20);
    expect((await http(a.url, '/list?user=carol')).body).toMatchObject({ count: alive });
  });
});
