/**
 * What observability costs on the L2 hit path (`getOrSet` answered by Redis, 900 B JSON,
 * concurrency 64, node-redis): stats off (`metrics: false` on the cache and the store) against
 * stats on (the default), in a namespace (`cache.namespace()`: its own histograms and counters
 * as well as the cache's), then with a Prometheus registry attached (scraped every second), and
 * with the OpenTelemetry instrumentation subscribed, without an SDK (the API's no-op tracer) and
 * with one (spans recorded and batched to an exporter that drops them).
 *
 * The OpenTelemetry instrumentation subscribes to process-wide diagnostics channels, so each
 * contender sets itself up before its turn and tears down after it; turns are interleaved over
 * several rounds and medians kept, as in `bench/core.ts`.
 */
import { BasicTracerProvider, BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createClient } from 'redis';
import { Histogram } from '../dist/core/metrics.js';
import { createCache, type Cache } from 'larder';
import { instrumentLarder } from 'larder/otel';
import { registerLarderMetrics } from 'larder/prometheus';
import { redisStore } from 'larder/redis';
import { fmt, sampleValue, table, type RunOptions } from './harness.js';

interface Contender {
  readonly name: string;
  readonly cache: Cache;
  /** Called before each turn; returns the teardown. */
  readonly setup?: () => () => void | Promise<void>;
}

/** Drops every span: the cost measured is recording and batching, not a network. */
class DropExporter implements SpanExporter {
  exported = 0;
  export(spans: ReadableSpan[], done: (result: { code: number }) => void): void {
    this.exported += spans.length;
    done({ code: 0 });
  }
  async shutdown(): Promise<void> {}
}

class PullReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

interface Measure {
  /** Operations per second (wall clock). */
  readonly opsPerSec: number;
  /** CPU time of this process per operation, in µs (user + system). */
  readonly cpuPerOp: number;
}

/** Throughput and CPU cost per operation of `op` run by `concurrency` loops for `durationMs`. */
async function measure(
  op: (worker: number, i: number) => Promise<unknown>,
  { concurrency, durationMs }: RunOptions,
): Promise<Measure> {
  let count = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      for (let i = 0; performance.now() < deadline; i++) {
        await op(worker, i);
        count++;
      }
    }),
  );
  const elapsed = performance.now() - started;
  const used = process.cpuUsage(cpu);
  return { opsPerSec: (count / elapsed) * 1_000, cpuPerOp: (used.user + used.system) / count };
}

/** A full garbage collection, so that one contender's garbage is not collected during the next one's turn. */
const collectGarbage: () => void = (() => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

/**
 * The recording work stats add to one L2 hit, alone in a tight loop: two timestamps and one
 * histogram record for the read (cache), the same for the Redis command (store). Median ns of
 * several runs.
 */
function recordingCostNs(): number {
  const read = new Histogram();
  const command = new Histogram();
  const runs: number[] = [];
  const n = 1_000_000;
  for (let run = 0; run < 7; run++) {
    const started = process.cpuUsage();
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const t1 = performance.now();
      command.record(performance.now() - t1);
      read.record(performance.now() - t0);
    }
    const used = process.cpuUsage(started);
    runs.push(((used.user + used.system) * 1_000) / n);
  }
  return median(runs);
}

interface Result extends Measure {
  /** Median over the rounds of the ratio to the first contender's turn in the same round. */
  readonly opsRatio: number;
  readonly cpuRatio: number;
}

/**
 * Each contender over interleaved rounds, each turn wrapped in its setup. Ratios are taken per
 * round against the first contender's turn of that round, then their median: drift of the
 * machine over the run cancels out better than in a ratio of medians.
 */
async function compareWithSetup(
  contenders: readonly Contender[],
  op: (cache: Cache, worker: number, i: number) => Promise<unknown>,
  options: RunOptions & { rounds: number },
): Promise<Map<string, Result>> {
  const results = new Map<string, Measure[]>(contenders.map((c) => [c.name, []]));
  const turn = async (c: Contender, durationMs: number) => {
    collectGarbage();
    const teardown = c.setup?.() ?? (() => undefined);
    try {
      return await measure((w, i) => op(c.cache, w, i), { ...options, durationMs });
    } finally {
      await teardown();
    }
  };
  for (const c of contenders) await turn(c, Math.min(500, options.durationMs));
  for (let round = 0; round < options.rounds; round++) {
    // Rotate the order each round so no contender always runs first or last.
    const order = contenders.map((_, i) => contenders[(i + round) % contenders.length]!);
    for (const c of order) results.get(c.name)!.push(await turn(c, options.durationMs));
  }
  const base = results.get(contenders[0]!.name)!;
  return new Map(
    [...results].map(([name, values]) => [
      name,
      {
        opsPerSec: median(values.map((v) => v.opsPerSec)),
        cpuPerOp: median(values.map((v) => v.cpuPerOp)),
        opsRatio: median(values.map((v, i) => v.opsPerSec / base[i]!.opsPerSec)),
        cpuRatio: median(values.map((v, i) => v.cpuPerOp / base[i]!.cpuPerOp)),
      },
    ]),
  );
}

export async function benchStats(url: string, { quick }: { quick: boolean }): Promise<string> {
  const rounds = quick ? 2 : 15;
  const durationMs = quick ? 500 : 1_000;
  const concurrency = 64;
  const KEYS = 1_000;
  const value = sampleValue(900);
  const client = createClient({ url, commandOptions: { timeout: 0 } });
  await client.connect();
  const make = (metrics: boolean): Cache =>
    createCache({
      namespace: `bench-stats-${Math.random().toString(36).slice(2)}`,
      store: redisStore({ client, metrics }),
      earlyRefresh: false,
      metrics,
    });

  const tracerProvider = new BasicTracerProvider({
    spanProcessors: [new BatchSpanProcessor(new DropExporter(), { maxQueueSize: 8_192, scheduledDelayMillis: 200 })],
  });
  const reader = new PullReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const registry = new Registry();

  const off = make(false);
  const on = make(true);
  const parent = make(true);
  const child = parent.namespace('users');
  const prom = make(true);
  registerLarderMetrics(prom, { registry, name: 'bench' });
  const otelNoop = make(true);
  const otelSdk = make(true);
  const contenders: Contender[] = [
    { name: 'stats off (`metrics: false`)', cache: off },
    { name: 'stats on (default)', cache: on },
    { name: "stats on, in a namespace (its own histograms, and the cache's)", cache: child },
    {
      name: 'stats on + Prometheus registry (scraped every 1 s)',
      cache: prom,
      setup: () => {
        const timer = setInterval(() => void registry.metrics(), 1_000);
        return () => clearInterval(timer);
      },
    },
    {
      name: 'stats on + OpenTelemetry, no SDK',
      cache: otelNoop,
      setup: () => {
        const otel = instrumentLarder({ caches: [otelNoop] });
        return () => otel.disable();
      },
    },
    {
      name: 'stats on + OpenTelemetry with an SDK (spans + metrics)',
      cache: otelSdk,
      setup: () => {
        const otel = instrumentLarder({ tracerProvider, meterProvider, caches: [otelSdk] });
        const timer = setInterval(() => void reader.collect(), 1_000);
        return async () => {
          clearInterval(timer);
          otel.disable();
          // Export what is queued now, not during the next contender's turn.
          await tracerProvider.forceFlush();
        };
      },
    },
  ];
  for (const { cache } of contenders) {
    await Promise.all(Array.from({ length: KEYS }, (_, i) => cache.set(`k${i}`, value, { ttl: 600_000 })));
  }
  const loader = () => value;
  // Worker w reads its own keys: no two in-flight reads share a key (no coalescing helps).
  const key = (w: number, i: number) => `k${(w + concurrency * i) % KEYS}`;
  const results = await compareWithSetup(contenders, (cache, w, i) => cache.getOrSet(key(w, i), loader), {
    concurrency,
    durationMs,
    rounds,
  });

  const percent = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(1)} %`;
  const rows = contenders.map((c) => {
    const m = results.get(c.name)!;
    return [c.name, fmt(m.opsPerSec), `${m.opsRatio.toFixed(3)}x`, m.cpuPerOp.toFixed(1), percent((m.cpuRatio - 1) * 100)];
  });
  const recordingNs = recordingCostNs();
  const baseCpuNs = results.get(contenders[0]!.name)!.cpuPerOp * 1_000;
  const out = [
    `### Observability on the L2 hit path: \`getOrSet\` hits on Redis, concurrency ${concurrency}, 900 B JSON, node-redis\n`,
    table(['configuration', 'ops/s', 'throughput vs stats off', 'CPU µs/op (Node)', 'CPU cost vs stats off'], rows),
    `\nMedians of ${rounds} interleaved rounds of ${durationMs} ms; the ratios are medians of per-round ratios to stats off. ` +
      "CPU per operation is this process's user + system time divided by the operations done: less sensitive than " +
      'throughput to other processes on a shared machine. A full GC runs before each turn. ' +
      'Target: stats on costs under 5 % more than stats off.',
    `\nThe recording work stats add to one L2 hit (4 \`performance.now()\` and 2 histogram records), timed alone: ` +
      `${recordingNs.toFixed(0)} ns, ${((recordingNs / baseCpuNs) * 100).toFixed(1)} % of the CPU time of an L2 hit with stats off.`,
  ];

  for (const { cache } of contenders) await cache.clear();
  await Promise.all(contenders.map((c) => c.cache.close()));
  await parent.close();
  await tracerProvider.shutdown();
  await meterProvider.shutdown();
  await client.close();
  return out.join('\n');
}
