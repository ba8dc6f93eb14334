/**
 * The built package, imported by its own name through the `exports` map (as users import it).
 * `npm test` builds `dist/` before running the suite.
 */
import { describe, expect, it } from 'vitest';

describe('built package', () => {
  it('exposes the root and the driver subpaths through package exports', async () => {
    const larder = await import('larder');
    const cache = larder.createCache({ namespace: 'dist-test' });
    expect(await cache.getOrSet('k', () => 42)).toBe(42);
    expect(larder.isLarderError(new larder.InvalidKeyError('x'))).toBe(true);
    await cache.close();
    const { redisStore } = await import('larder/redis');
    const { ioredisStore } = await import('larder/ioredis');
    expect(typeof redisStore).toBe('function');
    expect(typeof ioredisStore).toBe('function');
  });

  it('ships declarations next to every entry', async () => {
    const { readFile } = await import('node:fs/promises');
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
      exports: Record<string, { types?: string } | string>;
    };
    for (const [entry, target] of Object.entries(pkg.exports)) {
      if (typeof target === 'string') continue;
      const declarations = await readFile(new URL(`../${target.types!}`, import.meta.url), 'utf8').catch(
        () => `missing for ${entry}`,
      );
      expect(declarations).toContain('export');
    }
  });
});
