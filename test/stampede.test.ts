/**
 * No stampede across processes: K processes missing one key at once run its loader once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { nodeRedis, REDIS_URL, uniqueNamespace } from './helpers/redis.js';
import { killWorkers, startWorker, type Worker } from './helpers/workers.js';

afterEach(killWorkers);

function stampedeWorker(env: Record<string, string>): Worker {
  return startWorker('test/fixtures/stampede-worker.ts', { REDIS_URL, ...env });
}

interface Report {
  results: { value: string; loadedBy: number }[];
  ms: number;
}

describe('stampede across processes', () => {
  it('4 processes x 250 concurrent misses on one cold key: exactly 1 loader call', async () => {
    const namespace = uniqueNamespace('stampede');
    const fleet = Array.from({ length: 4 }, () => stampedeWorker({ NAMESPACE: namespace, CALLS: '250' }));
    for (const w of fleet) expect(await w.next()).toBe('ready');
    for (const w of fleet) w.child.stdin.write('go\n');
    const reports = (await Promise.all(fleet.map((w) => w.next()))).map((line) => JSON.parse(line) as Report);
    const redis = await nodeRedis();
    const calls = Number(await redis.get(`${namespace}:loader-calls`));
    await redis.close();
    expect(calls).toBe(1);
    const all = reports.flatMap((r) => r.results);
    expect(all).toHaveLength(1000);
    expect(new Set(all.map((r) => `${r.value}/${r.loadedBy}`)).size).toBe(1);
  });

  it('a lease holder killed mid-load blocks nobody past the lock TTL; at most 2 loader calls (default lock options)', async () => {
    const namespace = uniqueNamespace('stampede-kill');
    const lockTtl = 2_000; // the default
    const fleet = Array.from({ length: 4 }, () => stampedeWorker({ NAMESPACE: namespace, CALLS: '250', HANG_FIRST: '1' }));
    for (const w of fleet) expect(await w.next()).toBe('ready');
    for (const w of fleet) w.child.stdin.write('go\n');
    // The holder prints "holding" when its loader starts; it has renewed its lease a few times
    // when it is killed, mid-load.
    const firstLines = fleet.map((w) => w.next().then((line) => ({ w, line })));
    const { w: holder, line } = await Promise.race(firstLines);
    expect(line).toBe('holding');
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    const killedAt = Date.now();
    holder.child.kill('SIGKILL');
    const survivors = fleet.filter((w) => w !== holder);
    const reports = (
      await Promise.all(firstLines.filter((_, i) => fleet[i] !== holder).map((p) => p.then(({ line: l }) => l)))
    ).map((l) => JSON.parse(l) as Report);
    const recoveredIn = Date.now() - killedAt;
    const redis = await nodeRedis();
    const calls = Number(await redis.get(`${namespace}:loader-calls`));
    await redis.close();
    expect(survivors).toHaveLength(3);
    expect(calls).toBeLessThanOrEqual(2);
    expect(reports.flatMap((r) => r.results)).toHaveLength(750);
    // The lease expires within its TTL; waiters poll at most every 400 ms, the load takes 200 ms.
    expect(recoveredIn).toBeLessThan(lockTtl + 400 + 200 + 800);
  });
});
