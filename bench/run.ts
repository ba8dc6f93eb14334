/**
 * `npm run bench`: runs every benchmark against a real Redis and prints markdown tables.
 * Options: `--quick` (shorter runs, for a smoke check), `--only core,…` (a subset).
 * Uses REDIS_URL, else 127.0.0.1:6379, else starts a private redis-server. Ends on its own.
 */
import { cpus } from 'node:os';
import { benchCluster } from './cluster.js';
import { benchCore } from './core.js';
import { benchRedis } from './harness.js';
import { benchL1 } from './l1.js';
import { benchStampede } from './stampede.js';
import { benchStats } from './stats.js';
import { benchTracking } from './tracking.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const onlyArg = args.find((a) => a.startsWith('--only'));
const only =
  onlyArg === undefined
    ? undefined
    : (onlyArg.includes('=') ? onlyArg.split('=')[1]! : args[args.indexOf(onlyArg) + 1]!).split(',');
const suites: Record<string, (url: string) => Promise<string>> = {
  core: (url) => benchCore(url, { quick }),
  stampede: (url) => benchStampede(url),
  l1: (url) => benchL1(url, { quick }),
  tracking: (url) => benchTracking(url),
  stats: (url) => benchStats(url, { quick }),
  // Starts its own Redis Cluster (scripts/redis-cluster.sh) and a private single Redis.
  cluster: () => benchCluster({ quick }),
};

const { url, server } = await benchRedis();
console.log(`# Larder benchmarks\n`);
console.log(
  `Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Redis at ${url}${quick ? ' (quick run: fewer rounds, noisier)' : ''}.`,
);
console.log('Figures are medians of interleaved rounds; ratios compare contenders measured in this same run.\n');
for (const [name, run] of Object.entries(suites)) {
  if (only !== undefined && !only.includes(name)) continue;
  const started = Date.now();
  console.log(`## ${name}\n`);
  console.log(await run(url));
  console.log(`\n_${name}: ${((Date.now() - started) / 1000).toFixed(0)} s_\n`);
}
await server?.stop();
