/**
 * Hand-written cache-aside, as the seed article writes it (`GET`; on a miss, query the database
 * and `SET ... PX ttl`), for comparison only: `x-cache-mode: naive` and `npm run load` use it to
 * show what Larder adds. It has no stampede protection (every request that misses queries the
 * database), no negative caching, no early refresh, no in-process tier, and a write that races an
 * invalidation can put the old value back.
 */
/** Where the naive cache keeps strings: Redis, or a Map when there is no Redis. */
export interface KeyValue {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string, ttlMs: number): Promise<void>;
  del(keys: readonly string[]): Promise<void>;
}

/** The one method of a node-redis client (`createClient()` result) the naive cache uses. */
export interface CommandSender {
  sendCommand(args: string[]): Promise<unknown>;
}

export function redisKeyValue(client: CommandSender): KeyValue {
  return {
    get: async (key) => {
      const value = await client.sendCommand(['GET', key]);
      return typeof value === 'string' ? value : undefined;
    },
    set: async (key, value, ttlMs) => {
      await client.sendCommand(['SET', key, value, 'PX', String(ttlMs)]);
    },
    del: async (keys) => {
      if (keys.length > 0) await client.sendCommand(['DEL', ...keys]);
    },
  };
}

/** An in-process map with lazy expiry, bounded by entry count (oldest first out). */
export function memoryKeyValue(maxEntries = 100_000): KeyValue {
  const entries = new Map<string, { value: string; expires: number }>();
  return {
    get: async (key) => {
      const entry = entries.get(key);
      if (entry === undefined) return undefined;
      if (entry.expires <= Date.now()) {
        entries.delete(key);
        return undefined;
      }
      return entry.value;
    },
    set: async (key, value, ttlMs) => {
      entries.delete(key);
      entries.set(key, { value, expires: Date.now() + ttlMs });
      if (entries.size > maxEntries) entries.delete(entries.keys().next().value!);
    },
    del: async (keys) => {
      for (const key of keys) entries.delete(key);
    },
  };
}

export class NaiveCache {
  hits = 0;
  misses = 0;
  readonly #store: KeyValue;
  readonly #prefix: string;

  constructor(store: KeyValue, prefix: string) {
    this.#store = store;
    this.#prefix = prefix;
  }

  /** `GET`; on a miss (or a Redis error) load, then `SET` unless the row is missing. */
  async getOrSet<T>(key: string, ttlMs: number, load: () => Promise<T | undefined>): Promise<T | undefined> {
    const full = this.#prefix + key;
    try {
      const raw = await this.#store.get(full);
      if (raw !== undefined) {
        this.hits++;
        return JSON.parse(raw) as T;
      }
    } catch {
      // Like the article: a Redis error falls back to the database.
    }
    this.misses++;
    const value = await load();
    if (value !== undefined) await this.#store.set(full, JSON.stringify(value), ttlMs).catch(() => undefined);
    return value;
  }

  async delete(keys: readonly string[]): Promise<void> {
    await this.#store.del(keys.map((key) => this.#prefix + key)).catch(() => undefined);
  }
}
