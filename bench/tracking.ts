/**
 * The invalidation bus (Redis pub/sub, what Larder ships) measured against Redis server-assisted
 * client-side caching (RESP3 `CLIENT TRACKING ... BCAST PREFIX`, node-redis `emitInvalidate`) on
 * the same workload: 1,000 misses (loader writes) and 100 explicit `set`s on one instance.
 *
 * For each mechanism: messages another instance must process, and the delay from a `set`
 * resolving to the invalidation reaching the other connection.
 */
import { randomBytes } from 'node:crypto';
import { createClient } from 'redis';
import { createCache } from 'larder';
import { redisStore } from 'larder/redis';
import { table } from './harness.js';

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * q) - 1)] ?? NaN;
}

export async function benchTracking(url: string): Promise<string> {
  const namespace = `bench-track-${randomBytes(4).toString('hex')}`;
  const writer = createClient({ url });
  await writer.connect();
  const cache = createCache({ namespace, store: redisStore({ client: writer }), l1: {}, earlyRefresh: false });
  await cache.getOrSet('warm', () => 1);

  // Another instance's view through pub/sub: the bus channel (heartbeats left out).
  const subscriber = createClient({ url });
  await subscriber.connect();
  let busMessages = 0;
  const busSeen = new Map<string, number>();
  await subscriber.subscribe(`larder:bus:${namespace}`, (message) => {
    const parsed = JSON.parse(message) as [string, string, string[]];
    if (parsed[0] !== 'i') return;
    busMessages++;
    for (const key of parsed[2]) busSeen.set(key, performance.now());
  });

  // The same view through RESP3 client tracking: every write under the prefix, by anyone.
  const tracker = createClient({ url, RESP: 3, emitInvalidate: true });
  let trackingMessages = 0;
  const trackingSeen = new Map<string, number>();
  tracker.on('invalidate', (key: unknown) => {
    trackingMessages++;
    if (typeof key === 'string' || Buffer.isBuffer(key)) trackingSeen.set(key.toString(), performance.now());
  });
  await tracker.connect();
  await tracker.sendCommand(['CLIENT', 'TRACKING', 'OFF']);
  await tracker.sendCommand(['CLIENT', 'TRACKING', 'ON', 'BCAST', 'PREFIX', `${namespace}:`]);
  await new Promise((resolve) => setTimeout(resolve, 200));
  busMessages = 0;
  trackingMessages = 0;

  // 1,000 misses: each takes a lease and writes the loaded value.
  await Promise.all(Array.from({ length: 1_000 }, (_, i) => cache.getOrSet(`miss:${i}`, () => i)));
  await new Promise((resolve) => setTimeout(resolve, 200));
  const afterMisses = { bus: busMessages, tracking: trackingMessages };

  // 100 explicit sets, one at a time, timing delivery to the other connection.
  const busDelays: number[] = [];
  const trackingDelays: number[] = [];
  for (let i = 0; i < 100; i++) {
    const key = `${cache.prefix}set:${i}`;
    await cache.set(`set:${i}`, i);
    const done = performance.now();
    const deadline = Date.now() + 1_000;
    while ((!busSeen.has(key) || !trackingSeen.has(key)) && Date.now() < deadline)
      await new Promise((resolve) => setImmediate(resolve));
    busDelays.push(Math.max(0, (busSeen.get(key) ?? NaN) - done));
    trackingDelays.push(Math.max(0, (trackingSeen.get(key) ?? NaN) - done));
  }
  const total = { bus: busMessages, tracking: trackingMessages };

  await cache.close();
  await subscriber.close();
  await tracker.close();
  await writer.close();
  return [
    '### Invalidation: pub/sub bus (shipped) vs RESP3 client tracking (BCAST)\n',
    table(
      ['mechanism', 'messages for 1,000 misses', 'messages for 100 sets', 'set → other instance, median ms', 'p99 ms'],
      [
        [
          'pub/sub bus',
          String(afterMisses.bus),
          String(total.bus - afterMisses.bus),
          quantile(busDelays, 0.5).toFixed(2),
          quantile(busDelays, 0.99).toFixed(2),
        ],
        [
          'client tracking',
          String(afterMisses.tracking),
          String(total.tracking - afterMisses.tracking),
          quantile(trackingDelays, 0.5).toFixed(2),
          quantile(trackingDelays, 0.99).toFixed(2),
        ],
      ],
    ),
    '\nMessages are what one other instance receives and must process. Tracking reports every write under the prefix (lease placeholders and loaded values included), each key separately; the bus only what was explicitly invalidated, batched. A set through the bus resolves after its message was published, so its delay can be 0.',
  ].join('\n');
}
