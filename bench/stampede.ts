/**
 * Stampede protection: a cold key hit by 1,000 concurrent calls, in one process and across
 * 4 processes × 250, for Larder, BentoCache (`getOrSet`) and cache-manager (`wrap`). The loader
 * takes 100 ms (a slow query) and counts its calls in Redis.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { createClient } from 'redis';
import { contender, LIBRARIES, type Library } from './contenders.js';
import { table } from './harness.js';

const LOAD_MS = 100;

async function oneProcess(library: Library, url: string): Promise<{ calls: number; ms: number }> {
  const ns = `bench-stampede-${randomBytes(4).toString('hex')}`;
  const cache = await contender(library, url, ns);
  let calls = 0;
  const loader = async () => {
    calls++;
    await new Promise((resolve) => setTimeout(resolve, LOAD_MS));
    return { id: 1, name: 'hot row' };
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: 1_000 }, () => cache.getOrSet('hot', loader, 60_000)));
  const ms = performance.now() - started;
  await cache.close();
  return { calls, ms };
}

async function fleet(library: Library, url: string, processes: number, each: number): Promise<{ calls: number; ms: number }> {
  const ns = `bench-stampede-${randomBytes(4).toString('hex')}`;
  const workers = Array.from({ length: processes }, () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/stampede-worker.ts'], {
      env: { ...process.env, REDIS_URL: url, LIBRARY: library, NAMESPACE: ns, CALLS: String(each), LOAD_MS: String(LOAD_MS) },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    // Listen for the exit now: a fast worker may be gone before we would look.
    const exited = new Promise((resolve) => child.once('exit', resolve));
    return { child, exited, lines: createInterface({ input: child.stdout })[Symbol.asyncIterator]() };
  });
  for (const w of workers) await w.lines.next();
  const started = performance.now();
  for (const w of workers) w.child.stdin.write('go\n');
  await Promise.all(workers.map((w) => w.lines.next()));
  const ms = performance.now() - started;
  await Promise.all(workers.map((w) => w.exited));
  const redis = createClient({ url });
  await redis.connect();
  const calls = Number(await redis.get(`${ns}:loader-calls`));
  await redis.close();
  return { calls, ms };
}

export async function benchStampede(url: string): Promise<string> {
  const rows: string[][] = [];
  for (const library of LIBRARIES) {
    const single = await oneProcess(library, url);
    const multi = await fleet(library, url, 4, 250);
    rows.push([library, String(single.calls), single.ms.toFixed(0), String(multi.calls), multi.ms.toFixed(0)]);
  }
  return [
    `### Stampede: 1,000 concurrent calls on one cold key (loader: ${LOAD_MS} ms)\n`,
    table(['library', '1 process × 1,000: loader calls', 'wall ms', '4 processes × 250: loader calls', 'wall ms'], rows),
    '\nWall time for 4 processes runs from the `go` sent to the last process finishing.',
  ].join('\n');
}
