/**
 * `GET /metrics` and `/dashboard`: the demo's cache as Prometheus sees it (prom-client, through
 * `larder/prometheus`) and on Larder's live dashboard (`larder/dashboard`, mounted on Hono with
 * its `fetch`). The `products` and `users` namespaces get their own series (`namespace` label)
 * and their own rows on the dashboard.
 *
 * Both show counters and latencies, never keys or values; on a public deployment, keep them
 * behind your admin authentication or off the public interface, as you would any metrics
 * endpoint.
 *
 * @see docs/demo.md
 */
import { Registry } from 'prom-client';
import { larderDashboard } from '../src/observability/dashboard.js';
import { registerLarderMetrics } from '../src/observability/prometheus.js';
import type { Extension } from './app.js';
import { checkQuery } from './validate.js';

/** Adds `GET /metrics` (Prometheus text) and `/dashboard` (the page, and its `/dashboard/stats.json`). */
export const observability: Extension = (app, services) => {
  const { cache, products, users } = services;
  // The very child caches the routes use: a namespace's counters live on its Cache object.
  const namespaces = { products, users };

  // A registry per service rather than prom-client's global one: the tests and `npm run load`
  // run several services in one process, and each must report its own cache.
  const registry = new Registry();
  registerLarderMetrics(cache, { registry, namespaces });
  app.get('/metrics', async (c) => {
    checkQuery(c.req.url, []);
    return c.body(await registry.metrics(), 200, { 'Content-Type': registry.contentType, 'Cache-Control': 'no-store' });
  });

  const dashboard = larderDashboard({ caches: [{ cache, namespaces }], title: 'Larder demo' });
  app.mount('/dashboard', dashboard.fetch);
};
