/**
 * Core paths against the raw clients they run on:
 * - L2 hit through `getOrSet` vs raw GET + JSON.parse, per client configuration;
 * - `getMany(100)` vs raw MGET + JSON.parse;
 * - the miss path (`getOrSet` on a cold key) vs raw GET-then-SET.
 */
import { createClient } from 'redis';
import { Redis } from 'ioredis';
import { createCache, type Cache } from 'larder';
import { ioredisStore } from 'larder/ioredis';
import { redisStore } from 'larder/redis';
import { compare, fmt, ratio, sampleValue, table } from './harness.js';

interface Client {
  name: string;
  get(key: string): Promise<string | null>;
  mget(keys: string[]): Promise<(string | null)[]>;
  setPx(key: string, value: string, ms: number): Promise<unknown>;
  cache(namespace: string, lock: boolean): Cache;
  close(): Promise<unknown>;
}

async function clients(url: string): Promise<Client[]> {
  const nrDefault = createClient({ url });
  const nrFast = createClient({ url, commandOptions: { timeout: 0 } });
  await Promise.all([nrDefault.connect(), nrFast.connect()]);
  const io = new Redis(url);
  const nodeRedis = (name: string, c: typeof nrDefault): Client => ({
    name,
    get: (k) => c.get(k),
    mget: (keys) => c.mGet(keys),
    setPx: (k, v, ms) => c.set(k, v, { PX: ms }),
    cache: (namespace, lock) =>
      createCache({ namespace, store: redisStore({ client: c }), earlyRefresh: false, ...(lock ? {} : { lock: false }) }),
    close: () => c.close(),
  });
  return [
    nodeRedis('node-redis (defaults)', nrDefault),
    nodeRedis('node-redis (timeout: 0)', nrFast),
    {
      name: 'ioredis',
      get: (k) => io.get(k),
      mget: (keys) => io.mget(keys),
      setPx: (k, v, ms) => io.set(k, v, 'PX', ms),
      cache: (namespace, lock) =>
        createCache({ namespace, store: ioredisStore({ client: io }), earlyRefresh: false, ...(lock ? {} : { lock: false }) }),
      close: () => io.quit(),
    },
  ];
}

export async function benchCore(url: string, { quick }: { quick: boolean }): Promise<string> {
  const rounds = quick ? 1 : 3;
  const durationMs = quick ? 700 : 1_500;
  const value = sampleValue(900);
  const json = JSON.stringify(value);
  const all = await clients(url);
  const out: string[] = [];
  const KEYS = 1_000;
  const loader = () => value;

  // --- hit path ---------------------------------------------------------------------------
  const hitRows: string[][] = [];
  const hitResults: { client: string; concurrency: number; raw: number; larder: number }[] = [];
  for (const concurrency of [1, 64]) {
    for (const client of all) {
      const ns = `bench-hit-${Math.random().toString(36).slice(2)}`;
      const cache = client.cache(ns, true);
      await Promise.all(Array.from({ length: KEYS }, (_, i) => cache.set(`k${i}`, value, { ttl: 600_000 })));
      await Promise.all(Array.from({ length: KEYS }, (_, i) => client.setPx(`${ns}:raw:${i}`, json, 600_000)));
      // Worker w reads its own keys: no two in-flight reads share a key (no coalescing helps).
      const key = (w: number, i: number) => (w + concurrency * i) % KEYS;
      const results = await compare(
        [
          { name: 'raw', op: async (w, i) => JSON.parse((await client.get(`${ns}:raw:${key(w, i)}`))!) as unknown },
          { name: 'larder', op: (w, i) => cache.getOrSet(`k${key(w, i)}`, loader) },
        ],
        { concurrency, durationMs, rounds },
      );
      hitResults.push({ client: client.name, concurrency, raw: results.get('raw')!, larder: results.get('larder')! });
      await cache.clear();
    }
  }
  for (const concurrency of [1, 64]) {
    const rows = hitResults.filter((r) => r.concurrency === concurrency);
    const fastestRaw = Math.max(...rows.map((r) => r.raw));
    for (const r of rows) {
      hitRows.push([
        r.client,
        String(concurrency),
        fmt(r.raw),
        fmt(r.larder),
        ratio(r.larder, r.raw),
        ratio(r.larder, fastestRaw),
      ]);
    }
  }
  out.push('### L2 hit: `getOrSet` vs raw `GET` + `JSON.parse` (900 B JSON)\n');
  out.push(table(['client', 'concurrency', 'raw ops/s', 'Larder ops/s', 'vs same client', 'vs fastest raw'], hitRows));

  // --- getMany(100) -------------------------------------------------------------------------
  const manyRows: string[][] = [];
  for (const client of all) {
    const ns = `bench-many-${Math.random().toString(36).slice(2)}`;
    const cache = client.cache(ns, true);
    const keys = Array.from({ length: 100 }, (_, i) => `k${i}`);
    const rawKeys = keys.map((k) => `${ns}:raw:${k}`);
    await cache.setMany(keys.map((key) => ({ key, value, ttl: 600_000 })));
    await Promise.all(rawKeys.map((k) => client.setPx(k, json, 600_000)));
    for (const concurrency of [1, 16]) {
      const results = await compare(
        [
          { name: 'raw', op: async () => (await client.mget(rawKeys)).map((v) => JSON.parse(v!) as unknown) },
          { name: 'larder', op: () => cache.getMany(keys) },
        ],
        { concurrency, durationMs, rounds },
      );
      manyRows.push([
        client.name,
        String(concurrency),
        fmt(results.get('raw')!),
        fmt(results.get('larder')!),
        ratio(results.get('larder')!, results.get('raw')!),
      ]);
    }
    await cache.clear();
  }
  out.push('\n### `getMany(100)` vs raw `MGET` of 100 keys + `JSON.parse` each\n');
  out.push(table(['client', 'concurrency', 'raw batches/s', 'Larder batches/s', 'ratio'], manyRows));

  // --- miss path ----------------------------------------------------------------------------
  const missRows: string[][] = [];
  for (const client of all) {
    for (const concurrency of [1, 64]) {
      const ns = `bench-miss-${Math.random().toString(36).slice(2)}`;
      const cache = client.cache(ns, true);
      const noLock = client.cache(`${ns}-nolock`, false);
      let n = 0;
      const results = await compare(
        [
          {
            name: 'raw',
            op: async () => {
              const key = `${ns}:raw:${n++}`;
              const hit = await client.get(key);
              if (hit === null) await client.setPx(key, JSON.stringify(loader()), 60_000);
            },
          },
          { name: 'larder', op: () => cache.getOrSet(`m${n++}`, loader, { ttl: 60_000 }) },
          { name: 'larder-nolock', op: () => noLock.getOrSet(`m${n++}`, loader, { ttl: 60_000 }) },
        ],
        { concurrency, durationMs, rounds },
      );
      const raw = results.get('raw')!;
      missRows.push([
        client.name,
        String(concurrency),
        fmt(raw),
        fmt(results.get('larder')!),
        ratio(results.get('larder')!, raw),
        fmt(results.get('larder-nolock')!),
        ratio(results.get('larder-nolock')!, raw),
      ]);
      await cache.clear();
      await noLock.clear();
    }
  }
  out.push('\n### Miss path: `getOrSet` on a cold key vs raw `GET` then `SET PX`\n');
  out.push(table(['client', 'concurrency', 'raw ops/s', 'Larder ops/s', 'ratio', 'Larder `lock: false`', 'ratio'], missRows));

  await Promise.all(all.map((c) => c.close()));
  return out.join('\n');
}
