/**
 * Benchmark plumbing: closed-loop throughput at a given concurrency, and side-by-side
 * comparisons that interleave the contenders over several rounds and keep medians, so drift on
 * a shared machine hits every contender alike. Results are ratios measured in the same run.
 */
import { createClient } from 'redis';
import { startRedis, type RedisServer } from '../test/helpers/redis-server.js';

export interface RunOptions {
  concurrency: number;
  durationMs: number;
}

/** Operations per second of `op` run by `concurrency` loops for `durationMs`. */
export async function throughput(
  op: (worker: number, i: number) => Promise<unknown>,
  { concurrency, durationMs }: RunOptions,
): Promise<number> {
  let count = 0;
  const deadline = performance.now() + durationMs;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      for (let i = 0; performance.now() < deadline; i++) {
        await op(worker, i);
        count++;
      }
    }),
  );
  return (count / (performance.now() - started)) * 1000;
}

export interface Contender {
  name: string;
  op: (worker: number, i: number) => Promise<unknown>;
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** Median ops/s of each contender over `rounds` interleaved rounds (after one warm-up round). */
export async function compare(contenders: Contender[], options: RunOptions & { rounds: number }): Promise<Map<string, number>> {
  const results = new Map<string, number[]>(contenders.map((c) => [c.name, []]));
  for (const c of contenders) await throughput(c.op, { ...options, durationMs: Math.min(500, options.durationMs) });
  for (let round = 0; round < options.rounds; round++) {
    // Alternate the order each round so no contender always runs first.
    const order = round % 2 === 0 ? contenders : [...contenders].reverse();
    for (const c of order) results.get(c.name)!.push(await throughput(c.op, options));
  }
  return new Map([...results].map(([name, values]) => [name, median(values)]));
}

export function fmt(opsPerSec: number): string {
  return opsPerSec >= 10_000
    ? `${Math.round(opsPerSec / 1000)}k`
    : opsPerSec >= 100
      ? String(Math.round(opsPerSec))
      : opsPerSec.toFixed(1);
}

export function ratio(a: number, b: number): string {
  return `${(a / b).toFixed(2)}x`;
}

export function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** The Redis to bench against: REDIS_URL, else 127.0.0.1:6379, else a private redis-server. */
export async function benchRedis(): Promise<{ url: string; server?: RedisServer }> {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const probe = createClient({ url, socket: { connectTimeout: 1_000, reconnectStrategy: false } });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    await probe.close();
    return { url };
  } catch {
    const server = await startRedis();
    return { url: server.url, server };
  }
}

/** A JSON value of about `bytes` bytes, shaped like an API row. */
export function sampleValue(bytes = 900): Record<string, unknown> {
  const value: Record<string, unknown> = { id: 123456, name: 'Ada Lovelace', email: 'ada@example.com', active: true, tags: [] };
  const items: { sku: string; qty: number; price: number }[] = [];
  while (JSON.stringify({ ...value, items }).length < bytes)
    items.push({ sku: `SKU-${items.length}`, qty: items.length % 7, price: 9.99 });
  value.items = items;
  return value;
}
