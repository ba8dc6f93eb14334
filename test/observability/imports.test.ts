/**
 * Optional peers stay optional: importing Larder loads neither prom-client nor the OpenTelemetry
 * API, and each integration loads only its own. Checked in fresh processes (through tsx, on the
 * sources), by looking at which packages ended up in the module cache.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));

/** The optional packages loaded by importing `entry` (a path under src/). */
async function loadedBy(entry: string): Promise<string[]> {
  const script = `
    import { createRequire } from 'node:module';
    await import(${JSON.stringify(`./src/${entry}`)});
    const cache = createRequire(import.meta.url).cache;
    const watched = ['prom-client', '@opentelemetry/api', 'redis', '@redis/client', 'ioredis', 'playwright-core'];
    const loaded = watched.filter((name) => Object.keys(cache).some((file) => file.includes('/node_modules/' + name + '/')));
    console.log(JSON.stringify(loaded));
  `;
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as string[];
}

describe('optional peers', () => {
  it('importing larder loads no integration', async () => {
    expect(await loadedBy('index.ts')).toEqual([]);
  });

  it('each integration loads its own peer only', async () => {
    const [prometheus, otel, dashboard] = await Promise.all([
      loadedBy('observability/prometheus.ts'),
      loadedBy('observability/otel.ts'),
      loadedBy('observability/dashboard.ts'),
    ]);
    // prom-client itself depends on @opentelemetry/api (for exemplars): it comes along with it.
    expect(prometheus.filter((name) => name !== '@opentelemetry/api')).toEqual(['prom-client']);
    expect(otel).toEqual(['@opentelemetry/api']);
    expect(dashboard).toEqual([]);
  });
});
