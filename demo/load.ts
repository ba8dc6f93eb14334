/**
 * `npm run load`: what Larder buys, measured.
 *
 * 1. Throughput: the same traffic (80% single product reads skewed to a hot set, 10% bulk reads
 *    of 10 ids, 10% profiles behind a session) against the same service and data, three ways:
 *    cache bypassed (`x-cache-mode: off`), hand-written cache-aside (`naive`) and Larder.
 * 2. Stampede: one hot product with a 1 s TTL read by 100 connections spread over 4 instances
 *    sharing Redis, on a database that takes 50 ms per query: database queries with hand-written
 *    cache-aside, with Larder's protection off (`lock: false`, `earlyRefresh: false`) and with its
 *    defaults (without and with L1).
 *
 * It starts the service in this process (the load generator runs in a child process), or drives
 * the one at `LOAD_URL` (throughput only). It ends on its own: every run has a fixed duration,
 * and a watchdog stops the whole thing if anything hangs. Settings: docs/demo.md.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { CACHE_MODES, ConfigError, loadConfig, type CacheMode, type DemoConfig } from './config.js';
import type { LoadJob, LoadReply, LoadResult, Traffic } from './load-worker.js';
import { startService, type DemoService } from './service.js';

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

function parseModes(raw: string | undefined): CacheMode[] {
  if (raw === undefined || raw.trim() === '') return ['off', 'naive', 'larder'];
  const modes = raw.split(',').map((mode) => mode.trim()) as CacheMode[];
  for (const mode of modes) {
    if (!CACHE_MODES.includes(mode))
      throw new ConfigError(`LOAD_MODES takes ${CACHE_MODES.join(', ')}, got ${JSON.stringify(mode)}`);
  }
  return modes;
}

const env: Env = process.env;
let settings;
try {
  settings = {
    url: env.LOAD_URL?.trim() || undefined,
    seconds: integer(env, 'LOAD_DURATION', 8, 1, 600),
    warmup: integer(env, 'LOAD_WARMUP', 2, 0, 600),
    connections: integer(env, 'LOAD_CONNECTIONS', 50, 1, 10_000),
    users: integer(env, 'LOAD_USERS', 20, 1, 1_000),
    stampedeSeconds: integer(env, 'STAMPEDE_DURATION', 5, 0, 600),
    stampedeConnections: integer(env, 'STAMPEDE_CONNECTIONS', 100, 1, 10_000),
    stampedeInstances: integer(env, 'STAMPEDE_INSTANCES', 4, 1, 32),
    stampedeTtlMs: integer(env, 'STAMPEDE_TTL_MS', 1_000, 50, 60_000),
    stampedeDelayMs: integer(env, 'STAMPEDE_DB_DELAY_MS', 50, 0, 10_000),
    modes: parseModes(env.LOAD_MODES),
  };
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(`[load] ${error.message}`);
  process.exit(2);
}
const {
  url: loadUrl,
  seconds,
  warmup,
  connections,
  users,
  stampedeSeconds,
  stampedeConnections,
  stampedeTtlMs,
  stampedeDelayMs,
} = settings;

const log = (message: string) => console.log(`[load] ${message}`);

// The watchdog: generous, but finite.
const budgetMs = (settings.modes.length * (warmup + seconds) + 4 * (stampedeSeconds + 5) + 120) * 1_000;
setTimeout(() => {
  console.error(`[load] still running after ${budgetMs / 1_000} s: giving up`);
  process.exit(1);
}, budgetMs).unref();

// --- the load generator (a child process) ------------------------------------------------------

const worker = fork(fileURLToPath(new URL('./load-worker.ts', import.meta.url)), [], {
  execArgv: ['--import', 'tsx'],
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
let jobs = 0;
const pending = new Map<number, { resolve: (results: LoadResult[]) => void; reject: (error: Error) => void }>();
worker.on('message', (reply: LoadReply) => {
  const job = pending.get(reply.id);
  pending.delete(reply.id);
  if (reply.results !== undefined) job?.resolve(reply.results);
  else job?.reject(new Error(`load generator: ${reply.error}`));
});
worker.on('exit', (code) => {
  for (const job of pending.values()) job.reject(new Error(`the load generator exited (${code})`));
  pending.clear();
});

function drive(job: Omit<LoadJob, 'id'>): Promise<LoadResult[]> {
  const id = ++jobs;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.send({ ...job, id } satisfies LoadJob);
  });
}

// --- helpers -------------------------------------------------------------------------------------

interface Stats {
  dbQueries: number;
  reads: Record<CacheMode, { keys: number; loaded: number }>;
}

async function stats(url: string): Promise<Stats> {
  const response = await fetch(`${url}/stats`);
  if (!response.ok) throw new Error(`GET ${url}/stats answered ${response.status}`);
  return (await response.json()) as Stats;
}

async function login(url: string, email: string, password: string): Promise<string> {
  const response = await fetch(`${url}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  const cookie = response.headers.getSetCookie().find((line) => /^(__Host-)?sid=/.test(line));
  if (!response.ok || cookie === undefined)
    throw new Error(`login as ${email} failed: ${response.status} ${await response.text()}`);
  return cookie.split(';')[0]!;
}

const fixed = (value: number, digits = 0) =>
  value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
/** `0`, or the failures by kind: `12 (503: 10, connection errors: 2)`. */
function failures(results: readonly LoadResult[]): string {
  const counts = new Map<string, number>();
  for (const result of results) {
    for (const [code, count] of Object.entries(result.statuses)) counts.set(code, (counts.get(code) ?? 0) + count);
    if (result.errors > 0) counts.set('connection errors', (counts.get('connection errors') ?? 0) + result.errors);
  }
  const total = [...counts.values()].reduce((sum, count) => sum + count, 0);
  if (total === 0) return '0';
  return `${fixed(total)} (${[...counts].map(([kind, count]) => `${kind}: ${fixed(count)}`).join(', ')})`;
}

const percent = (part: number, whole: number) => (whole === 0 ? '—' : `${((100 * part) / whole).toFixed(1)}%`);

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map((_, i) => (i === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

const MODE_LABELS: Record<CacheMode, string> = {
  off: 'cache bypassed (every read queries Postgres)',
  naive: 'hand-written cache-aside (GET/SET on Redis)',
  larder: 'Larder (L1 + Redis, tags, negative caching)',
};

// --- main ----------------------------------------------------------------------------------------

let service: DemoService | undefined;
const stampedeServices: DemoService[] = [];
try {
  let config: DemoConfig | undefined;
  let url: string;
  let products: number;
  let password: string;
  if (loadUrl === undefined) {
    config = loadConfig({
      ...env,
      PORT: '0',
      LOG: env.LOG ?? '1',
      CACHE_MODE_HEADER: '1',
      // A database under load: each query holds one of the pool's 10 connections for 10 ms more,
      // so Postgres answers at most ~1,000 queries/s (DB_DELAY_MS=0: the bare local database).
      DB_DELAY_MS: env.DB_DELAY_MS ?? '10',
      // A fresh namespace: every run starts with a cold cache.
      CACHE_NAMESPACE: env.CACHE_NAMESPACE ?? `load-${randomBytes(3).toString('hex')}`,
    });
    log('starting the service in this process');
    service = await startService(config, { log: (message) => log(message) });
    url = service.url;
    products = config.seedProducts;
    password = config.seedPassword;
  } else {
    url = loadUrl.replace(/\/$/, '');
    const target = loadConfig(env);
    products = target.seedProducts;
    password = target.seedPassword;
    const probe = await fetch(`${url}/products/1`, { headers: { 'x-cache-mode': 'off' } });
    if (probe.headers.get('x-cache') !== 'bypass') {
      throw new Error(`${url} does not honour x-cache-mode (start it with CACHE_MODE_HEADER=1)`);
    }
  }
  const health = (await (await fetch(`${url}/healthz`)).json()) as {
    postgres: { mode: string; target: string; poolSize: number; simulatedDelayMs: number };
    redis: { mode: string; target?: string };
  };

  log(`logging in ${users} users`);
  const cookies = await Promise.all(Array.from({ length: users }, (_, i) => login(url, `user${i + 1}@example.com`, password)));
  const traffic: Traffic = {
    kind: 'mix',
    products,
    hotProducts: Math.max(1, Math.min(2_000, Math.floor(products / 50))),
    cookies,
  };

  const rows: string[][] = [];
  for (const mode of settings.modes) {
    if (warmup > 0) {
      log(`${mode}: warming up for ${warmup} s`);
      await drive({ targets: [{ url, connections }], seconds: warmup, traffic, mode });
    }
    log(`${mode}: ${seconds} s with ${connections} connections`);
    const before = await stats(url);
    const [result] = await drive({ targets: [{ url, connections }], seconds, traffic, mode });
    const after = await stats(url);
    const r = result!;
    const keys = after.reads[mode].keys - before.reads[mode].keys;
    const loaded = after.reads[mode].loaded - before.reads[mode].loaded;
    rows.push([
      MODE_LABELS[mode],
      fixed(r.requestsPerSecond),
      fixed(r.p50, 1),
      fixed(r.p99, 1),
      fixed((after.dbQueries - before.dbQueries) / r.seconds),
      mode === 'off' ? '—' : percent(keys - loaded, keys),
      failures([r]),
    ]);
  }

  const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}, Node ${process.version}`;
  const delay = `${health.postgres.simulatedDelayMs} ms`;
  const output = [
    '',
    `## Throughput (${seconds} s per mode after ${warmup} s of warm-up, ${connections} connections)`,
    '',
    `Machine: ${machine}. Postgres: ${health.postgres.mode} (${health.postgres.target}), simulated query cost ${delay} ` +
      `(pool of ${health.postgres.poolSize}). ` +
      `Redis: ${health.redis.mode}${health.redis.target === undefined ? '' : ` (${health.redis.target})`}. ` +
      `Data: ${fixed(products)} products; traffic: 80% GET /products/:id (80% of them on ${fixed(traffic.hotProducts)} hot ids), ` +
      `10% GET /products?ids= (10 ids), 10% GET /profile (${users} sessions).`,
    '',
    table(['mode', 'requests/s', 'p50 ms', 'p99 ms', 'DB queries/s', 'cache hit rate', 'errors'], rows),
    '',
    'Cache hit rate: the share of product and profile reads answered without asking Postgres.',
  ];

  if (config !== undefined && service !== undefined && stampedeSeconds > 0) {
    const shared = service.redis.client !== undefined;
    const instances = shared ? settings.stampedeInstances : 1;
    const variants: { label: string; overrides: Partial<DemoConfig> }[] = [
      { label: 'hand-written cache-aside (GET, then query + SET on a miss)', overrides: { cacheMode: 'naive' } },
      { label: 'Larder, protection off (`lock: false`, `earlyRefresh: false`)', overrides: { lock: false, earlyRefresh: false } },
      { label: 'Larder defaults (leases + early refresh), no L1', overrides: { l1MaxEntries: 0 } },
      { label: 'Larder defaults, with L1 (as `npm start` runs)', overrides: {} },
    ];
    const stampedeRows: string[][] = [];
    const expiries = (stampedeSeconds * 1_000) / stampedeTtlMs;
    for (const variant of variants) {
      log(`stampede: ${variant.label}, ${stampedeSeconds} s`);
      const namespace = `${config.cacheNamespace}-st-${randomBytes(2).toString('hex')}`;
      const fleet: DemoService[] = [];
      for (let i = 0; i < instances; i++) {
        const instance = await startService(
          {
            ...config,
            cacheNamespace: namespace,
            productTtlMs: stampedeTtlMs,
            graceMs: 0,
            dbDelayMs: stampedeDelayMs,
            ...variant.overrides,
          },
          { database: service.services.database, redis: service.redis, log: () => undefined },
        );
        fleet.push(instance);
        stampedeServices.push(instance);
      }
      const perInstance = Math.max(1, Math.floor(stampedeConnections / instances));
      const results = await drive({
        targets: fleet.map((instance) => ({ url: instance.url, connections: perInstance })),
        seconds: stampedeSeconds,
        traffic: { kind: 'hot', productId: 1 },
        mode: undefined,
      });
      const queries = fleet.reduce((sum, instance) => sum + instance.services.db.queries, 0);
      stampedeRows.push([
        variant.label,
        fixed(results.reduce((sum, r) => sum + r.requestsPerSecond, 0)),
        fixed(Math.max(...results.map((r) => r.p99)), 1),
        fixed(Math.max(...results.map((r) => r.max))),
        fixed(queries),
        fixed(queries / expiries, 1),
        failures(results),
      ]);
      for (const instance of fleet) await instance.close();
    }
    output.push(
      '',
      `## Stampede (one hot key, TTL ${fixed(stampedeTtlMs)} ms, ${stampedeSeconds} s: about ${fixed(expiries)} expiries)`,
      '',
      `${instances} instance${instances === 1 ? '' : 's'} sharing ${shared ? 'Redis' : 'nothing (no Redis: one instance)'}, ` +
        `${perInstanceText(stampedeConnections, instances)}, every query taking ${stampedeDelayMs} ms more, no grace period. ` +
        'Ideal: 1 query per expiry for the whole fleet.',
      '',
      table(['variant', 'requests/s', 'p99 ms', 'max ms', 'DB queries', 'queries per expiry', 'errors'], stampedeRows),
    );
  }
  console.log(output.join('\n'));
} finally {
  for (const instance of stampedeServices) await instance.close().catch(() => undefined);
  await service?.close();
  worker.disconnect();
}

function perInstanceText(total: number, instances: number): string {
  return instances === 1 ? `${total} connections` : `${Math.max(1, Math.floor(total / instances))} connections each`;
}
