/**
 * The Redis store through node-redis (`redis` on npm, v5 or v6): a client, a cluster, or a URL.
 *
 * Larder sends its commands with node-redis's per-command timeout turned off (`timeout: 0` per
 * command, whatever the client's defaults): that timeout arms an `AbortSignal` per command and
 * halves throughput, and Larder enforces its own deadline with one coarse timer instead.
 *
 * @module
 */
import { createClient, RESP_TYPES } from 'redis';
import { InvalidOptionError } from '../errors.js';
import type { DriverSubscriber, RedisArg, RedisCommand, RedisDriver } from './redis-driver.js';
import { reconnectDelay, RedisStore, type RedisConnectionOptions } from './redis-store.js';
import { groupBySlot } from './slot.js';
import type { Store } from './store.js';

type Listener = (...args: unknown[]) => void;

/** The parts of a node-redis client Larder uses (any `createClient()` result fits). */
export interface NodeRedisClient {
  sendCommand(args: readonly RedisArg[], options?: object): Promise<unknown>;
  duplicate(): NodeRedisClient;
  connect(): Promise<unknown>;
  close(): Promise<unknown>;
  destroy(): void;
  subscribe(channel: string, listener: (message: string) => unknown): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
  scanIterator(options: { MATCH: string; COUNT: number }): AsyncIterable<string[]>;
  on(event: string, listener: Listener): unknown;
  readonly isReady: boolean;
  readonly isOpen: boolean;
}

/** The parts of a node-redis cluster Larder uses (any `createCluster()` result fits). */
export interface NodeRedisCluster {
  sendCommand(
    firstKey: RedisArg | undefined,
    isReadonly: boolean | undefined,
    args: readonly RedisArg[],
    options?: object,
  ): Promise<unknown>;
  duplicate(): NodeRedisCluster;
  connect(): Promise<unknown>;
  close(): Promise<unknown>;
  destroy(): void;
  subscribe(channel: string, listener: (message: string) => unknown): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
  readonly masters: readonly unknown[];
  nodeClient(node: never): Promise<NodeRedisClient>;
  on(event: string, listener: Listener): unknown;
  readonly isOpen: boolean;
}

export type RedisStoreOptions = RedisConnectionOptions &
  (
    | {
        /**
         * A node-redis client or cluster you created (connected or connecting). Larder never
         * closes it, and adds an `error` listener only to connections it opens itself.
         */
        client: NodeRedisClient | NodeRedisCluster;
        url?: never;
      }
    | {
        /** A Redis URL: Larder creates, connects and (on `close()`) closes the client. */
        url: string;
        client?: never;
      }
  );

// Per-command options: node-redis's own timeout off (see the module comment), bytes on demand.
const TEXT = Object.freeze({ timeout: 0 });
const BINARY = Object.freeze({ timeout: 0, typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } });

function isCluster(client: NodeRedisClient | NodeRedisCluster): client is NodeRedisCluster {
  return 'masters' in client && 'nodeClient' in client;
}

class NodeRedisDriver implements RedisDriver {
  readonly name = 'redis';
  readonly cluster: boolean;
  readonly #client: NodeRedisClient | NodeRedisCluster;
  readonly #owned: boolean;
  readonly #errorListeners: ((error: unknown) => void)[] = [];

  constructor(client: NodeRedisClient | NodeRedisCluster, owned: boolean) {
    this.#client = client;
    this.#owned = owned;
    this.cluster = isCluster(client);
    if (owned) client.on('error', (error: unknown) => this.#emitError(error));
  }

  #emitError(error: unknown): void {
    for (const listener of this.#errorListeners) listener(error);
  }

  #send(args: readonly RedisArg[], key: string | undefined, binary: boolean): Promise<unknown> {
    const options = binary ? BINARY : TEXT;
    const client = this.#client;
    return isCluster(client) ? client.sendCommand(key, undefined, args, options) : client.sendCommand(args, options);
  }

  get(key: string, binary: boolean): Promise<unknown> {
    return this.#send(['GET', key], key, binary);
  }

  async mget(keys: readonly string[], binary: boolean): Promise<unknown[]> {
    if (!this.cluster) return (await this.#send(['MGET', ...keys], keys[0], binary)) as unknown[];
    const replies = new Array<unknown>(keys.length);
    await Promise.all(
      [...groupBySlot(keys).values()].map(async (positions) => {
        const group = positions.map((i) => keys[i]!);
        const values = (await this.#send(['MGET', ...group], group[0], binary)) as unknown[];
        positions.forEach((position, i) => (replies[position] = values[i]));
      }),
    );
    return replies;
  }

  send(command: RedisCommand, key: string | undefined, binary: boolean): Promise<unknown> {
    return this.#send(command, key, binary);
  }

  batch(commands: readonly RedisCommand[], keys: readonly string[], binary: boolean): Promise<unknown[]> {
    // node-redis writes every command issued in the same tick in one socket write (per node on
    // a cluster): issuing them together is a pipeline.
    return Promise.all(commands.map((command, i) => this.#send(command, keys[i], binary).catch((error: unknown) => error)));
  }

  async unlink(keys: readonly string[]): Promise<number> {
    if (!this.cluster) return Number(await this.#send(['UNLINK', ...keys], keys[0], false));
    const counts = await Promise.all(
      [...groupBySlot(keys).values()].map((positions) => {
        const group = positions.map((i) => keys[i]!);
        return this.#send(['UNLINK', ...group], group[0], false);
      }),
    );
    return counts.reduce<number>((sum, count) => sum + Number(count), 0);
  }

  async *scan(pattern: string, count: number): AsyncIterable<string[]> {
    const client = this.#client;
    if (!isCluster(client)) {
      yield* client.scanIterator({ MATCH: pattern, COUNT: count });
      return;
    }
    for (const master of client.masters) {
      const node = await client.nodeClient(master as never);
      yield* node.scanIterator({ MATCH: pattern, COUNT: count });
    }
  }

  async subscriber(): Promise<DriverSubscriber> {
    const connection = this.#client.duplicate();
    const connectionListeners: ((connected: boolean) => void)[] = [];
    let connected = false;
    const report = (now: boolean) => {
      if (now === connected) return;
      connected = now;
      for (const listener of connectionListeners) listener(now);
    };
    connection.on('error', (error: unknown) => {
      report(false);
      this.#emitError(error);
    });
    connection.on('reconnecting', () => report(false));
    connection.on('end', () => report(false));
    connection.on('ready', () => report(true));
    await connection.connect();
    connected = true;
    return {
      subscribe: async (channel, onMessage) => {
        await connection.subscribe(channel, onMessage);
      },
      unsubscribe: async (channel) => {
        await connection.unsubscribe(channel);
      },
      onConnection: (listener) => connectionListeners.push(listener),
      close: async () => {
        connectionListeners.length = 0;
        if (connection.isOpen) await connection.close().catch(() => connection.destroy());
      },
    };
  }

  isReplyError(error: unknown): boolean {
    // node-redis error replies are `SimpleError`/`BlobError` (subclasses of `ErrorReply`).
    let proto: unknown = error === null || typeof error !== 'object' ? undefined : Object.getPrototypeOf(error);
    while (proto !== null && proto !== undefined) {
      if ((proto as { constructor?: { name?: string } }).constructor?.name === 'ErrorReply') return true;
      proto = Object.getPrototypeOf(proto);
    }
    return false;
  }

  ready(): boolean {
    const client = this.#client;
    return isCluster(client) ? client.isOpen : client.isReady;
  }

  details(): Record<string, number | string | boolean> {
    return { open: this.#client.isOpen, cluster: this.cluster };
  }

  onError(listener: (error: unknown) => void): void {
    this.#errorListeners.push(listener);
  }

  async close(): Promise<void> {
    if (!this.#owned || !this.#client.isOpen) return;
    await this.#client.close().catch(() => this.#client.destroy());
  }
}

/**
 * A Redis store over node-redis.
 *
 * @example
 * const client = await createClient({ url }).connect();
 * const cache = createCache({ store: redisStore({ client }), namespace: 'app' });
 */
export function redisStore(options: RedisStoreOptions): Store & RedisStore {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', 'expected an object');
  if (options.client !== undefined && options.url !== undefined) {
    throw new InvalidOptionError('client', 'pass either `client` or `url`, not both');
  }
  if (options.client !== undefined) return new RedisStore(new NodeRedisDriver(options.client, false), options);
  if (typeof options.url !== 'string') throw new InvalidOptionError('url', 'expected a Redis URL or a `client`');
  const client = createClient({
    url: options.url,
    commandOptions: { timeout: 0 },
    socket: { reconnectStrategy: reconnectDelay },
  }) as unknown as NodeRedisClient;
  const store = new RedisStore(new NodeRedisDriver(client, true), options);
  // Connection failures surface as command failures (fail-open) and through the error listener.
  client.connect().catch(() => undefined);
  return store;
}
