/**
 * The Redis store through ioredis (v5 or v6): a `Redis`, a `Cluster`, or a URL.
 *
 * @module
 */
import { Cluster, Redis, type ChainableCommander } from 'ioredis';
import { InvalidOptionError } from '../errors.js';
import type { DriverSubscriber, RedisArg, RedisCommand, RedisDriver } from './redis-driver.js';
import { reconnectDelay, RedisStore, type RedisConnectionOptions } from './redis-store.js';
import { groupBySlot } from './slot.js';
import type { Store } from './store.js';

export type IoredisStoreOptions = RedisConnectionOptions &
  (
    | {
        /**
         * An ioredis `Redis` or `Cluster` you created. Larder never closes it, and adds an
         * `error` listener only to connections it opens itself.
         */
        client: Redis | Cluster;
        url?: never;
      }
    | {
        /** A Redis URL: Larder creates, connects and (on `close()`) closes the client. */
        url: string;
        client?: never;
      }
  );

function toArgs(command: RedisCommand): [string, ...RedisArg[]] {
  return [String(command[0]), ...command.slice(1)];
}

class IoredisDriver implements RedisDriver {
  readonly name = 'ioredis';
  readonly cluster: boolean;
  readonly #client: Redis | Cluster;
  readonly #owned: boolean;
  readonly #errorListeners: ((error: unknown) => void)[] = [];

  constructor(client: Redis | Cluster, owned: boolean) {
    this.#client = client;
    this.#owned = owned;
    this.cluster = client instanceof Cluster;
    if (owned) client.on('error', (error: unknown) => this.#emitError(error));
  }

  #emitError(error: unknown): void {
    for (const listener of this.#errorListeners) listener(error);
  }

  get(key: string, binary: boolean): Promise<unknown> {
    return binary ? this.#client.getBuffer(key) : this.#client.get(key);
  }

  async mget(keys: readonly string[], binary: boolean): Promise<unknown[]> {
    const client = this.#client;
    const mget = (group: string[]) => (binary ? client.mgetBuffer(group) : client.mget(group));
    if (!this.cluster) return mget([...keys]);
    const replies = new Array<unknown>(keys.length);
    await Promise.all(
      [...groupBySlot(keys).values()].map(async (positions) => {
        const values = await mget(positions.map((i) => keys[i]!));
        positions.forEach((position, i) => (replies[position] = values[i]));
      }),
    );
    return replies;
  }

  send(command: RedisCommand, _key: string | undefined, binary: boolean): Promise<unknown> {
    const [name, ...args] = toArgs(command);
    return binary ? this.#client.callBuffer(name, ...args) : this.#client.call(name, ...args);
  }

  async batch(commands: readonly RedisCommand[], keys: readonly string[], binary: boolean): Promise<unknown[]> {
    const run = async (positions: readonly number[]): Promise<unknown[]> => {
      const pipeline: ChainableCommander = this.#client.pipeline();
      for (const i of positions) {
        const [name, ...args] = toArgs(commands[i]!);
        if (binary) pipeline.callBuffer(name, ...args);
        else pipeline.call(name, ...args);
      }
      const results = (await pipeline.exec()) ?? [];
      return results.map(([error, reply]) => error ?? reply);
    };
    if (!this.cluster) return run(commands.map((_, i) => i));
    // A cluster pipeline must stay on one node: one pipeline per slot, sent together.
    const replies = new Array<unknown>(commands.length);
    await Promise.all(
      [...groupBySlot(keys).values()].map(async (positions) => {
        const values = await run(positions);
        positions.forEach((position, i) => (replies[position] = values[i]));
      }),
    );
    return replies;
  }

  async unlink(keys: readonly string[]): Promise<number> {
    if (!this.cluster) return this.#client.unlink(...keys);
    const counts = await Promise.all(
      [...groupBySlot(keys).values()].map((positions) => this.#client.unlink(...positions.map((i) => keys[i]!))),
    );
    return counts.reduce((sum, count) => sum + count, 0);
  }

  async *scan(pattern: string, count: number): AsyncIterable<string[]> {
    const client = this.#client;
    const nodes = client instanceof Cluster ? client.nodes('master') : [client];
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', count);
        cursor = next;
        if (keys.length > 0) yield keys;
      } while (cursor !== '0');
    }
  }

  async subscriber(): Promise<DriverSubscriber> {
    const client = this.#client;
    const connection = client instanceof Cluster ? client.duplicate() : client.duplicate();
    const handlers = new Map<string, (message: string) => void>();
    const connectionListeners: ((connected: boolean) => void)[] = [];
    let connected = connection.status === 'ready';
    const report = (now: boolean) => {
      if (now === connected) return;
      connected = now;
      for (const listener of connectionListeners) listener(now);
    };
    connection.on('error', (error: unknown) => this.#emitError(error));
    connection.on('close', () => report(false));
    connection.on('ready', () => report(true));
    connection.on('message', (channel: string, message: string) => handlers.get(channel)?.(message));
    return {
      subscribe: async (channel, onMessage) => {
        handlers.set(channel, onMessage);
        await connection.subscribe(channel);
      },
      unsubscribe: async (channel) => {
        handlers.delete(channel);
        await connection.unsubscribe(channel);
      },
      onConnection: (listener) => connectionListeners.push(listener),
      close: async () => {
        connectionListeners.length = 0;
        connection.disconnect();
      },
    };
  }

  isReplyError(error: unknown): boolean {
    return error instanceof Error && error.name === 'ReplyError';
  }

  ready(): boolean {
    return this.#client.status === 'ready';
  }

  details(): Record<string, number | string | boolean> {
    return { status: this.#client.status, cluster: this.cluster };
  }

  onError(listener: (error: unknown) => void): void {
    this.#errorListeners.push(listener);
  }

  async close(): Promise<void> {
    if (!this.#owned || this.#client.status === 'end') return;
    await this.#client.quit().catch(() => this.#client.disconnect());
  }
}

/**
 * A Redis store over ioredis.
 *
 * @example
 * const cache = createCache({ store: ioredisStore({ client: new Redis(url) }), namespace: 'app' });
 */
export function ioredisStore(options: IoredisStoreOptions): Store & RedisStore {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', 'expected an object');
  if (options.client !== undefined && options.url !== undefined) {
    throw new InvalidOptionError('client', 'pass either `client` or `url`, not both');
  }
  if (options.client !== undefined) return new RedisStore(new IoredisDriver(options.client, false), options);
  if (typeof options.url !== 'string') throw new InvalidOptionError('url', 'expected a Redis URL or a `client`');
  const client = new Redis(options.url, { retryStrategy: (times) => reconnectDelay(times) });
  return new RedisStore(new IoredisDriver(client, true), options);
}
