/**
 * `larder/dashboard` over HTTP, without a browser: the JSON snapshot against `cache.stats()`, the
 * page and its headers, mounting under a path (node:http and fetch), and option checks.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import express from 'express';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCache, type Cache } from '../../src/index.js';
import { larderDashboard, type DashboardHandler, type DashboardSnapshot } from '../../src/observability/dashboard.js';
import { redisStore } from '../../src/stores/redis.js';
import { nodeRedis, uniqueNamespace, type NodeRedis } from '../helpers/redis.js';

let client: NodeRedis;
let cache: Cache;
let users: Cache;
let memory: Cache;
let dashboard: DashboardHandler;
let server: Server;
let url: string;

beforeAll(async () => {
  client = await nodeRedis();
  cache = createCache({ namespace: uniqueNamespace('dash'), store: redisStore({ client }) });
  users = cache.namespace('users');
  memory = createCache({ namespace: uniqueNamespace('dash'), l1: {} });
  dashboard = larderDashboard({ caches: [{ cache, name: 'app', namespaces: { users } }, memory], intervalMs: 500 });
  server = createServer((req, res) => {
    if (req.url?.startsWith('/admin/larder')) return dashboard(req, res);
    res.statusCode = 404;
    res.end('not here');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await cache.clear();
  await Promise.all([cache.close(), memory.close()]);
  await client.close();
});

describe('larder/dashboard', () => {
  it('answers a JSON snapshot of each cache at <mount>/stats.json', async () => {
    await users.getOrSet('1', () => 'Ada');
    await users.getOrSet('1', () => 'Ada');
    await cache.getOrSet('x', () => 'X');
    await cache.getOrSet('boom', () => Promise.reject(new Error('db'))).catch(() => undefined);
    const response = await fetch(`${url}/admin/larder/stats.json`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(response.headers.get('cache-control')).toBe('no-store');
    const snapshot = (await response.json()) as DashboardSnapshot;
    expect(Math.abs(snapshot.time - Date.now())).toBeLessThan(10_000);
    expect(snapshot.caches.map((c) => c.name)).toEqual(['app', memory.prefix.split(':')[0]]);
    const app = snapshot.caches[0]!;
    const stats = cache.stats();
    expect(app.counters).toMatchObject({ hits: stats.hits, misses: stats.misses, loads: stats.loads, loadErrors: 1, l2Hits: 1 });
    expect(app.namespaces).toEqual([
      {
        namespace: 'users',
        counters: expect.objectContaining({ hits: 1, misses: 1, loads: 1 }) as unknown,
        latency: expect.objectContaining({ l2: expect.objectContaining({ count: 2 }) as unknown }) as unknown,
      },
      {
        namespace: null,
        counters: expect.objectContaining({ hits: 0, misses: 2, loads: 2, loadErrors: 1 }) as unknown,
        latency: expect.objectContaining({ load: expect.objectContaining({ count: 2 }) as unknown }) as unknown,
      },
    ]);
    // Each row's own latency: the users namespace's loads, and the rest's.
    const usersRow = app.namespaces[0]!;
    expect(usersRow.latency.load.count).toBe(1);
    expect(usersRow.latency.l2.p99).toBeGreaterThan(0);
    expect(app.namespaces[1]!.latency.l2.count).toBe(stats.latency.l2.count - 2);
    expect(app.store.pool).toBeNull();
    expect(app.latency.l2.count).toBe(stats.latency.l2.count);
    expect(app.latency.l2.counts).toEqual(stats.latency.l2.counts);
    expect(app.latency.l2.p50).toBeGreaterThan(0);
    expect(app.latency.l2.p99).toBeGreaterThanOrEqual(app.latency.l2.p50!);
    expect(app.latency.l1.p50).toBeNull();
    expect(app.latency.store?.count).toBeGreaterThan(0);
    expect(app.store).toMatchObject({ name: 'redis', ready: true, breaker: 'closed', breakerOpens: 0 });
    expect(app.store.details).toMatchObject({ open: true });
    const local = snapshot.caches[1]!;
    expect(local.store).toMatchObject({ name: 'memory', ready: true });
    expect(local.latency.store).toBeNull();
    // No keys, no values.
    expect(JSON.stringify(snapshot)).not.toMatch(/Ada|"1"|boom/);
  });

  it('serves the self-contained page at the mount path, with a strict CSP', async () => {
    for (const path of ['/admin/larder', '/admin/larder/']) {
      const response = await fetch(url + path);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
      const csp = response.headers.get('content-security-policy')!;
      const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
      expect(nonce).toBeDefined();
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("connect-src 'self'");
      const html = await response.text();
      expect(html).toContain(`<script nonce="${nonce}">`);
      expect(html).toContain('id="chart-hit-rate"');
      expect(html).toContain('"intervalMs":500');
      // Nothing loaded from elsewhere.
      expect(html).not.toMatch(/\bsrc="|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    }
    const again = await fetch(`${url}/admin/larder`);
    expect(again.headers.get('content-security-policy')).not.toBe(
      (await fetch(`${url}/admin/larder`)).headers.get('content-security-policy'),
    );
  });

  it('answers HEAD without a body and refuses other methods', async () => {
    const head = await fetch(`${url}/admin/larder/stats.json`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    const post = await fetch(`${url}/admin/larder/stats.json`, { method: 'POST', body: '{}' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('works with Request/Response frameworks through fetch()', async () => {
    const page = dashboard.fetch(new Request('http://host/dashboard'));
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<svg id="chart-latency"');
    const json = dashboard.fetch(new Request('http://host/dashboard/stats.json'));
    expect(((await json.json()) as DashboardSnapshot).caches).toHaveLength(2);
    expect(dashboard.fetch(new Request('http://host/dashboard', { method: 'DELETE' })).status).toBe(405);
    expect(dashboard.snapshot().caches[0]!.name).toBe('app');
  });

  it('mounts in one line on Hono (app.mount) and Express (app.use)', async () => {
    const hono = new Hono();
    hono.mount('/dashboard', dashboard.fetch);
    const page = await hono.request('/dashboard');
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('id="chart-reads"');
    const json = await hono.request('/dashboard/stats.json');
    expect(((await json.json()) as DashboardSnapshot).caches[0]!.name).toBe('app');

    const app = express();
    app.use('/ops/cache', dashboard);
    const listening = app.listen(0, '127.0.0.1');
    await once(listening, 'listening');
    try {
      const base = `http://127.0.0.1:${(listening.address() as { port: number }).port}/ops/cache`;
      expect((await fetch(base)).headers.get('content-type')).toBe('text/html; charset=utf-8');
      const snapshot = (await (await fetch(`${base}/stats.json`)).json()) as DashboardSnapshot;
      expect(snapshot.caches).toHaveLength(2);
    } finally {
      listening.close();
    }
  });

  it('escapes the title and checks its options', () => {
    const html = larderDashboard({ caches: [memory], title: '<script>x</script>' }).fetch(new Request('http://h/'));
    return html.text().then((text) => {
      expect(text).toContain('<title>&lt;script&gt;x&lt;/script&gt;</title>');
      expect(() => larderDashboard({ caches: [] })).toThrow(/empty/);
      expect(() => larderDashboard({ caches: [memory, memory] })).toThrow(/same name/);
      expect(() => larderDashboard({ caches: [memory], intervalMs: 10 })).toThrow(/intervalMs/);
      expect(() => larderDashboard({ caches: [{ cache, namespaces: { x: memory } }] })).toThrow(/not a child/);
      expect(() => larderDashboard({} as never)).toThrow(TypeError);
    });
  });
});
