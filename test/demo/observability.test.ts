/**
 * `/metrics` and `/dashboard` on the demo (demo/observability.ts, as `npm start` mounts it): real
 * HTTP against a service on the real Postgres (a private schema) and the real Redis (a private
 * namespace). The Prometheus text is parsed strictly and must count exactly the traffic sent,
 * per namespace; the dashboard serves its page and a JSON feed with the same figures.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { observability } from '../../demo/observability.js';
import type { DemoService } from '../../demo/service.js';
import { parseExposition, sampleValue, type Family } from '../observability/exposition.js';
import { Client, dropSchema, startTestService, testEnv, uniqueSchema } from './helpers.js';

const schema = uniqueSchema('observe');
let service: DemoService;
let name: string;

beforeAll(async () => {
  const env = testEnv(schema);
  service = await startTestService(env, {}, { extensions: [observability] });
  // The `cache` label: the cache's namespace.
  name = service.services.config.cacheNamespace;
});

afterAll(async () => {
  await service?.close();
  await dropSchema(schema);
});

async function scrape(client: Client): Promise<Map<string, Family>> {
  const reply = await client.get('/metrics');
  expect(reply.status).toBe(200);
  expect(reply.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(reply.body as string);
}

/** Hits of one namespace, both tiers. */
const hits = (families: Map<string, Family>, namespace: string) =>
  sampleValue(families, 'larder_cache_hits_total', { cache: name, namespace, tier: 'l1' }) +
  sampleValue(families, 'larder_cache_hits_total', { cache: name, namespace, tier: 'l2' });

describe('GET /metrics', () => {
  it('counts the traffic per namespace: misses, loads, then hits', async () => {
    const client = new Client(service.url);
    const before = await scrape(client);
    expect(hits(before, 'products')).toBe(0);
    expect(hits(before, 'users')).toBe(0);
    expect(sampleValue(before, 'larder_store_ready', { cache: name, store: 'redis' })).toBe(1);

    for (let i = 0; i < 4; i++) expect((await client.get('/products/7')).status).toBe(200);
    expect((await client.login('user2@example.com')).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await client.get('/profile')).status).toBe(200);

    const after = await scrape(client);
    expect(hits(after, 'products')).toBe(3);
    expect(sampleValue(after, 'larder_cache_misses_total', { cache: name, namespace: 'products' })).toBe(1);
    expect(sampleValue(after, 'larder_cache_loads_total', { cache: name, namespace: 'products' })).toBe(1);
    expect(hits(after, 'users')).toBe(2);
    expect(sampleValue(after, 'larder_cache_misses_total', { cache: name, namespace: 'users' })).toBe(1);
    // The series without a namespace label counts the rest: nothing is read outside the two.
    expect(sampleValue(after, 'larder_cache_misses_total', { cache: name })).toBe(0);
    // Loader latency, per namespace like the counters: one product and one profile load.
    const loadCount = (labels: Record<string, string>) =>
      sampleValue(after, 'larder_cache_load_duration_seconds', labels, 'larder_cache_load_duration_seconds_count');
    expect(loadCount({ cache: name, namespace: 'products' })).toBe(1);
    expect(loadCount({ cache: name, namespace: 'users' })).toBe(1);
    expect(loadCount({ cache: name })).toBe(0);
    // Reads of Redis are per namespace too; none outside the two.
    const l2Reads = (labels: Record<string, string>) =>
      sampleValue(
        after,
        'larder_cache_get_duration_seconds',
        { ...labels, tier: 'l2' },
        'larder_cache_get_duration_seconds_count',
      );
    expect(l2Reads({ cache: name, namespace: 'products' })).toBeGreaterThanOrEqual(1);
    expect(l2Reads({ cache: name })).toBe(0);
    expect(sampleValue(after, 'larder_cache_l1_entries', { cache: name })).toBeGreaterThanOrEqual(2);
    expect(sampleValue(after, 'larder_store_breaker_state', { cache: name, store: 'redis' })).toBe(0);
  });

  it('answers bad input and wrong methods in JSON', async () => {
    const client = new Client(service.url);
    const query = await client.get('/metrics?name=x');
    expect(query.status).toBe(400);
    expect(query.body).toMatchObject({ error: 'bad_request' });
    const post = await client.request('POST', '/metrics');
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });
});

describe('/dashboard', () => {
  it('serves the page, and at /dashboard/stats.json the same figures as /metrics', async () => {
    const client = new Client(service.url);
    for (const path of ['/dashboard', '/dashboard/']) {
      const page = await client.get(path);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(page.body).toContain('<title>Larder demo</title>');
    }

    for (let i = 0; i < 3; i++) await client.get('/products/11');
    const reply = await client.get('/dashboard/stats.json');
    expect(reply.status).toBe(200);
    const snapshot = reply.body as {
      caches: { name: string; namespaces: { namespace: string | null; counters: { hits: number; misses: number } }[] }[];
    };
    expect(snapshot.caches.map((cache) => cache.name)).toEqual([name]);
    const rows = new Map(snapshot.caches[0]!.namespaces.map((row) => [row.namespace, row.counters]));
    expect([...rows.keys()]).toEqual(['products', 'users', null]);

    const families = await scrape(client);
    expect(rows.get('products')).toMatchObject({
      hits: hits(families, 'products'),
      misses: sampleValue(families, 'larder_cache_misses_total', { cache: name, namespace: 'products' }),
    });
    expect(rows.get('users')).toMatchObject({ hits: hits(families, 'users') });
    expect(rows.get('products')!.hits).toBeGreaterThanOrEqual(2);
  });

  it('is read-only (405 from the dashboard), and listed at /', async () => {
    const client = new Client(service.url);
    const post = await client.request('POST', '/dashboard/stats.json');
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    const root = await client.get('/');
    expect((root.body as { routes: string[] }).routes).toEqual(expect.arrayContaining(['GET /metrics', 'GET /dashboard']));
  });
});
