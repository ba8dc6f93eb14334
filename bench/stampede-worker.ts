/**
 * One process of the cross-process stampede benchmark: prints `ready`, waits for `go`, fires
 * CALLS concurrent cache-aside calls on one cold key, prints the time it took.
 */
import { createInterface } from 'node:readline';
import { createClient } from 'redis';
import { contender, type Library } from './contenders.js';

const url = process.env.REDIS_URL!;
const counter = createClient({ url });
await counter.connect();
const cache = await contender(process.env.LIBRARY as Library, url, process.env.NAMESPACE!);
const calls = Number(process.env.CALLS);
const loader = async () => {
  await counter.incr(`${process.env.NAMESPACE}:loader-calls`);
  await new Promise((resolve) => setTimeout(resolve, Number(process.env.LOAD_MS)));
  return { id: 1, name: 'hot row' };
};
const lines = createInterface({ input: process.stdin });
process.stdout.write('ready\n');
for await (const line of lines) {
  if (line !== 'go') continue;
  const started = performance.now();
  await Promise.all(Array.from({ length: calls }, () => cache.getOrSet('hot', loader, 60_000)));
  process.stdout.write(`${JSON.stringify({ ms: performance.now() - started })}\n`);
  break;
}
lines.close();
await cache.close();
await counter.close();
