/**
 * The in-process tier:
 * - L1 hit throughput of `getOrSet` vs an awaited `lru-cache.get` in an async function, and vs
 *   BentoCache's L1 hit (`getOrSet` on a tiered store);
 * - hit ratio of W-TinyLFU (shipped) vs LRU on a Zipf(0.9) trace of 1M requests over 100k keys
 *   with a 10k-entry cache, and on a scan-heavy trace;
 * - coherence delay between two processes (a `set` on A until B serves the new value).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { LRUCache } from 'lru-cache';
import { MemoryTier, type EvictionPolicy } from '../dist/tiers/memory-tier.js';
import { contender } from './contenders.js';
import { compare, fmt, ratio, sampleValue, table } from './harness.js';
import { scanTrace, zipfTrace } from './traces.js';

async function hitThroughput(url: string, quick: boolean): Promise<string> {
  const value = sampleValue(900);
  const keys = Array.from({ length: 1_000 }, (_, i) => `k${i}`);
  const lru = new LRUCache<string, object>({ max: 10_000 });
  for (const key of keys) lru.set(key, value);
  const ns = `bench-l1-${randomBytes(4).toString('hex')}`;
  const larder = await contender('larder', url, ns, { l1: true });
  const bento = await contender('bentocache', url, `${ns}-b`, { l1: true });
  const loader = async () => value;
  for (const key of keys) {
    await larder.getOrSet(key, loader, 600_000);
    await bento.getOrSet(key, loader, 600_000);
  }
  // Let the L1 fills settle (Larder trusts its L1 once its bus heard itself).
  await new Promise((resolve) => setTimeout(resolve, 300));
  for (const key of keys) await larder.getOrSet(key, loader, 600_000);
  const getLru = async (key: string) => lru.get(key);
  const rows: string[][] = [];
  for (const concurrency of [1, 64]) {
    const results = await compare(
      [
        { name: 'lru', op: async (w, i) => getLru(keys[(w + i) % 1_000]!) },
        { name: 'larder', op: (w, i) => larder.getOrSet(keys[(w + i) % 1_000]!, loader, 600_000) },
        { name: 'bento', op: (w, i) => bento.getOrSet(keys[(w + i) % 1_000]!, loader, 600_000) },
      ],
      { concurrency, durationMs: quick ? 400 : 1_000, rounds: quick ? 1 : 3 },
    );
    const base = results.get('lru')!;
    rows.push([
      String(concurrency),
      fmt(base),
      fmt(results.get('larder')!),
      ratio(results.get('larder')!, base),
      fmt(results.get('bento')!),
      ratio(results.get('bento')!, base),
    ]);
  }
  await larder.close();
  await bento.close();
  return [
    '### L1 hit: `getOrSet` vs an awaited `lru-cache.get` and BentoCache L1 (900 B values)\n',
    table(
      ['concurrency', 'lru-cache ops/s', 'Larder ops/s', 'Larder / lru-cache', 'BentoCache ops/s', 'BentoCache / lru-cache'],
      rows,
    ),
  ].join('\n');
}

function hitRatios(): string {
  const ratioOf = (trace: Uint32Array, policy: EvictionPolicy) => {
    const tier = new MemoryTier<number>({ maxEntries: 10_000, maxBytes: Number.MAX_SAFE_INTEGER, policy });
    let hits = 0;
    for (const k of trace) {
      const key = `k${k}`;
      if (tier.get(key, 0) !== undefined) hits++;
      else tier.set(key, 1, 1, Infinity);
    }
    return hits / trace.length;
  };
  const rows = (
    [
      ['Zipf(0.9), 1M requests, 100k keys', zipfTrace(1_000_000, 100_000, 0.9)],
      ['Zipf(0.9) + scans of 20k cold keys every 100k requests', scanTrace(1_000_000, 100_000, 0.9, 20_000, 100_000)],
    ] as const
  ).map(([name, trace]) => {
    const lfu = ratioOf(trace, 'tinylfu');
    const lru = ratioOf(trace, 'lru');
    return [name, `${(lfu * 100).toFixed(1)}%`, `${(lru * 100).toFixed(1)}%`, `${((lfu - lru) * 100).toFixed(1)} points`];
  });
  return [
    '### L1 eviction policy: hit ratio with a 10k-entry tier\n',
    table(['trace', 'W-TinyLFU (shipped)', 'LRU', 'difference'], rows),
  ].join('\n');
}

async function coherence(url: string, writes: number): Promise<string> {
  const ns = `bench-coherence-${randomBytes(4).toString('hex')}`;
  const start = () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/tier-worker.ts'], {
      env: { ...process.env, REDIS_URL: url, NAMESPACE: ns, HEARTBEAT: '200' },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const waiting = new Map<number, (value: unknown) => void>();
    let ready!: () => void;
    const isReady = new Promise<void>((r) => (ready = r));
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line === 'ready') return ready();
      const { id, result } = JSON.parse(line) as { id: number; result: unknown };
      waiting.get(id)?.(result);
    });
    let next = 0;
    const call = <R>(op: string, args: Record<string, unknown> = {}) =>
      new Promise<R>((resolve) => {
        const id = next++;
        waiting.set(id, resolve as (value: unknown) => void);
        child.stdin.write(`${JSON.stringify({ id, op, ...args })}\n`);
      });
    return { child, isReady, call };
  };
  const a = start();
  const b = start();
  await Promise.all([a.isReady, b.isReady]);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const delays: number[] = [];
  for (let i = 1; i <= writes; i++) {
    await a.call('set', { key: 'k', value: `v${i - 1}` });
    let tier = '';
    for (let reads = 0; tier !== 'l1' && reads < 50; reads++)
      tier = (await b.call<{ tier: string }>('getOrSet', { key: 'k', value: 'x' })).tier;
    const watching = b.call<{ at: number }>('watch', { key: 'k', expect: `v${i}` });
    const written = await a.call<{ at: number }>('set', { key: 'k', value: `v${i}` });
    delays.push(Math.max(0, (await watching).at - written.at));
  }
  for (const w of [a, b]) w.child.kill();
  delays.sort((x, y) => x - y);
  const at = (q: number) => delays[Math.min(delays.length - 1, Math.ceil(delays.length * q) - 1)]!.toFixed(2);
  return [
    `### Coherence delay: a \`set\` on process A until process B serves the new value (${writes} writes, L1 on both)\n`,
    table(['median ms', 'p99 ms', 'max ms'], [[at(0.5), at(0.99), delays.at(-1)!.toFixed(2)]]),
  ].join('\n');
}

export async function benchL1(url: string, { quick }: { quick: boolean }): Promise<string> {
  return [await hitThroughput(url, quick), hitRatios(), await coherence(url, quick ? 30 : 200)].join('\n\n');
}
