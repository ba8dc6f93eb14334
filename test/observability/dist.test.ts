/**
 * The built integrations, imported by the package's own name through the `exports` map (as
 * users import them). `npm test` builds `dist/` before running the suite.
 */
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';

describe('built observability entries', () => {
  it('larder/prometheus, larder/otel and larder/dashboard work from dist/', async () => {
    const { createCache } = await import('larder');
    const { registerLarderMetrics } = await import('larder/prometheus');
    const { instrumentLarder } = await import('larder/otel');
    const { larderDashboard } = await import('larder/dashboard');
    const cache = createCache({ namespace: 'dist-observability' });
    try {
      await cache.getOrSet('k', () => 1);
      const registry = new Registry();
      const unregister = registerLarderMetrics(cache, { registry, name: 'dist' });
      expect(await registry.metrics()).toContain('larder_cache_misses_total{cache="dist"} 1');
      unregister();
      instrumentLarder({ caches: [cache] }).disable();
      const dashboard = larderDashboard({ caches: [cache] });
      expect(dashboard.snapshot().caches[0]!.counters.misses).toBe(1);
      expect(await dashboard.fetch(new Request('http://h/dashboard')).text()).toContain('<svg id="chart-hit-rate"');
    } finally {
      await cache.close();
    }
  });
});
