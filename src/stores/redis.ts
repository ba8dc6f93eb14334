/**
 * The Redis store through node-redis (`redis` on npm, v5 or v6): a client, a cluster
 * (`createCluster`), a Sentinel-managed client (`createSentinel`), a client pool
 * (`createClientPool`), or a URL.
 *
 * Larder sends its commands with node-redis's per-command timeout turned off (`timeout: 0` per
 * command, whatever the client's defaults): that timeout arms an `AbortSignal` per command and
 * halves throughput, and Larder enforces its own deadline with one coarse timer instead.
 *
 * @see docs/scaling.md for clusters and Sentinel
 * @module
 */
import { createClient, RESP_TYPES } from 'redis';
import { InvalidOptionError } from '../errors.js';
import {
  closeConnection,
  type DriverSubscriber,
  type PubSubKind,
  type RedisArg,
  type RedisCommand,
  type RedisDriver,
} from './redis-driver.js';
import { reconnectDelay, RedisStore, type RedisConnectionOptions } from './redis-store.js';
import { groupBySlot } from './slot.js';
import type { PoolStatus, Store } from './store.js';

type Listener = (...args: unknown[]) => void;
type MessageListener = (message: string) => unknown;

/** Pub/sub, the same on a client, a cluster and a Sentinel-managed client. */
interface NodeRedisPubSub {
  subscribe(channel: string, listener: MessageListener): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
  sSubscribe(channel: string, listener: MessageListener): Promise<unknown>;
  sUnsubscribe(channel: string): Promise<unknown>;
  on(event: string, listener: Listener): unknown;
  readonly isReady: boolean;
  readonly isOpen: boolean;
}

/** The parts of a node-redis client Larder uses (any `createClient()` result fits). */
export interface NodeRedisClient extends NodeRedisPubSub {
  sendCommand(args: readonly RedisArg[], options?: object): Promise<unknown>;
  duplicate(): NodeRedisClient;
  connect(): Promise<unknown>;
  close(): Promise<unknown>;
  destroy(): unknown;
  scanIterator(options: { MATCH: string; COUNT: number }): AsyncIterable<string[]>;
}

/** The parts of a node-redis cluster Larder uses (any `createCluster()` result fits). */
export interface NodeRedisCluster extends NodeRedisPubSub {
  sendCommand(
    firstKey: RedisArg | undefined,
    isReadonly: boolean | undefined,
    args: readonly RedisArg[],
    options?: object,
  ): Promise<unknown>;
  duplicate(overrides?: { minimizeConnections?: boolean }): NodeRedisCluster;
  connect(): Promise<unknown>;
  close(): Promise<unknown>;
  destroy(): unknown;
  readonly masters: readonly unknown[];
  nodeClient(node: never): Promise<NodeRedisClient>;
}

/**
 * The parts of a node-redis Sentinel-managed client Larder uses (any `createSentinel()` result
 * fits): commands go to the current master, found through the sentinels and followed across
 * failovers by node-redis.
 */
export interface NodeRedisSentinel extends NodeRedisPubSub {
  sendCommand(isReadonly: boolean | undefined, args: readonly RedisArg[], options?: object): Promise<unknown>;
  duplicate(): NodeRedisSentinel;
  connect(): Promise<unknown>;
  close(): Promise<unknown>;
  destroy(): unknown;
  scanIterator(options: { MATCH: string; COUNT: number }): AsyncIterable<string[]>;
  getMasterNode(): unknown;
}

/**
 * The parts of a node-redis client pool Larder uses (any `createClientPool()` result fits): each
 * command borrows a connection of the pool for its round trip. A pool takes no `SUBSCRIBE` (a
 * connection in subscriber mode would be lost to the pool), so the store's pub/sub (the
 * invalidation bus, lease waits) runs on a connection of its own, duplicated from a pooled
 * connection (same URL, credentials, TLS), opened at the first subscription and closed by the
 * store's `close()`.
 */
export interface NodeRedisClientPool {
  sendCommand(args: readonly RedisArg[], options?: object): Promise<unknown>;
  /** Runs `fn` with a connection of the pool (Larder only duplicates it). */
  execute(fn: (client: NodeRedisClient) => unknown): Promise<unknown>;
  on(event: string, listener: Listener): unknown;
  close(): Promise<unknown>;
  destroy(): unknown;
  readonly isOpen: boolean;
  readonly isClosing: boolean;
  readonly totalClients: number;
  readonly idleClients: number;
  readonly clientsInUse: number;
  readonly tasksQueueLength: number;
}

/** Any client `redisStore()` accepts. */
export type NodeRedisAnyClient = NodeRedisClient | NodeRedisCluster | NodeRedisSentinel | NodeRedisClientPool;

export type RedisStoreOptions = RedisConnectionOptions &
  (
    | {
        /**
         * A node-redis client, cluster, Sentinel-managed client or client pool you created
         * (connected or connecting). Larder never closes it, and adds an `error` listener only to connections
         * it opens itself: keep your own listener on it (node-redis throws unhandled `error`s).
         * @see docs/scaling.md
         */
        client: NodeRedisAnyClient;
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

type Topology = 'standalone' | 'cluster' | 'sentinel' | 'pool';

function topologyOf(client: NodeRedisAnyClient): Topology {
  if ('execute' in client && 'tasksQueueLength' in client) return 'pool';
  if ('masters' in client && 'nodeClient' in client) return 'cluster';
  if ('getMasterNode' in client) return 'sentinel';
  return 'standalone';
}

/** `TRYAGAIN`: a multi-key command on a slot being migrated, whose keys are split between two nodes. */
function isTryAgain(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('TRYAGAIN');
}

/** `host:port` of a cluster node event's client info. */
function address(info: unknown): string {
  const { host, port } = (info ?? {}) as { host?: unknown; port?: unknown };
  return `${String(host)}:${String(port)}`;
}

class NodeRedisDriver implements RedisDriver {
  readonly name = 'redis';
  readonly cluster: boolean;
  readonly topology: Topology;
  readonly #client: NodeRedisAnyClient;
  readonly #owned: boolean;
  readonly #errorListeners: ((error: unknown) => void)[] = [];
  /** Sends one command the way this kind of client takes it (chosen once, off the hot path). */
  readonly #sendCommand: (args: readonly RedisArg[], key: string | undefined, options: object) => Promise<unknown>;

  constructor(client: NodeRedisAnyClient, owned: boolean) {
    this.#client = client;
    this.#owned = owned;
    this.topology = topologyOf(client);
    this.cluster = this.topology === 'cluster';
    if (this.topology === 'cluster') {
      const cluster = client as NodeRedisCluster;
      this.#sendCommand = (args, key, options) => cluster.sendCommand(key, undefined, args, options);
    } else if (this.topology === 'pool') {
      const pool = client as NodeRedisClientPool;
      this.#sendCommand = (args, _key, options) => pool.sendCommand(args, options);
    } else if (this.topology === 'sentinel') {
      const sentinel = client as NodeRedisSentinel;
      this.#sendCommand = (args, _key, options) => sentinel.sendCommand(undefined, args, options);
    } else {
      const single = client as NodeRedisClient;
      this.#sendCommand = (args, _key, options) => single.sendCommand(args, options);
    }
    if (owned) client.on('error', (error: unknown) => this.#emitError(error));
  }

  #emitError(error: unknown): void {
    for (const listener of this.#errorListeners) listener(error);
  }

  #send(args: readonly RedisArg[], key: string | undefined, binary: boolean): Promise<unknown> {
    return this.#sendCommand(args, key, binary ? BINARY : TEXT);
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
        const values = await this.#mgetSlot(group, binary);
        positions.forEach((position, i) => (replies[position] = values[i]));
      }),
    );
    return replies;
  }

  /**
   * `MGET` of keys sharing a slot (`GET` for a lone key: node-redis routes it on its fast path);
   * key by key while the slot is migrating (each follows its own `ASK`).
   */
  async #mgetSlot(group: readonly string[], binary: boolean): Promise<unknown[]> {
    if (group.length === 1) return [await this.#send(['GET', group[0]!], group[0], binary)];
    try {
      return (await this.#send(['MGET', ...group], group[0], binary)) as unknown[];
    } catch (error) {
      if (!isTryAgain(error)) throw error;
      return Promise.all(group.map((key) => this.#send(['GET', key], key, binary)));
    }
  }

  send(command: RedisCommand, key: string | undefined, binary: boolean): Promise<unknown> {
    return this.#send(command, key, binary);
  }

  batch(commands: readonly RedisCommand[], keys: readonly string[], binary: boolean): Promise<unknown[]> {
    // node-redis writes every command issued in the same tick in one socket write (per node on
    // a cluster, where each command also follows its own MOVED/ASK): issuing them together is a
    // pipeline.
    return Promise.all(commands.map((command, i) => this.#send(command, keys[i], binary).catch((error: unknown) => error)));
  }

  async unlink(keys: readonly string[]): Promise<number> {
    if (!this.cluster) return Number(await this.#send(['UNLINK', ...keys], keys[0], false));
    const counts = await Promise.all(
      [...groupBySlot(keys).values()].map(async (positions) => {
        const group = positions.map((i) => keys[i]!);
        try {
          return Number(await this.#send(['UNLINK', ...group], group[0], false));
        } catch (error) {
          if (!isTryAgain(error)) throw error;
          const each = await Promise.all(group.map((key) => this.#send(['UNLINK', key], key, false)));
          return each.reduce<number>((sum, count) => sum + Number(count), 0);
        }
      }),
    );
    return counts.reduce((sum, count) => sum + count, 0);
  }

  async *scan(pattern: string, count: number): AsyncIterable<string[]> {
    const client = this.#client;
    if (this.topology === 'pool') {
      // The cursor lives in Redis: each SCAN may borrow another connection of the pool.
      let cursor = '0';
      do {
        const reply = (await this.#send(['SCAN', cursor, 'MATCH', pattern, 'COUNT', String(count)], undefined, false)) as [
          string,
          string[],
        ];
        cursor = reply[0];
        if (reply[1].length > 0) yield reply[1];
      } while (cursor !== '0');
      return;
    }
    if (this.topology !== 'cluster') {
      yield* (client as NodeRedisClient | NodeRedisSentinel).scanIterator({ MATCH: pattern, COUNT: count });
      return;
    }
    const cluster = client as NodeRedisCluster;
    // Every master holds part of the keyspace; replicas hold copies.
    for (const master of [...cluster.masters]) {
      const node = await cluster.nodeClient(master as never);
      yield* node.scanIterator({ MATCH: pattern, COUNT: count });
    }
  }

  async subscriber(kind: PubSubKind): Promise<DriverSubscriber> {
    // A connection of its own: a client in subscriber mode takes no other command. A cluster
    // duplicate connects only to the nodes its channels need.
    // A pool lends its connections per command: duplicate one (same options) into a connection
    // the pool does not know.
    const connection: NodeRedisClient | NodeRedisCluster | NodeRedisSentinel =
      this.topology === 'cluster'
        ? (this.#client as NodeRedisCluster).duplicate({ minimizeConnections: true })
        : this.topology === 'pool'
          ? ((await (this.#client as NodeRedisClientPool).execute((pooled: NodeRedisClient) =>
              pooled.duplicate(),
            )) as NodeRedisClient)
          : (this.#client as NodeRedisClient | NodeRedisSentinel).duplicate();
    const connectionListeners: ((connected: boolean) => void)[] = [];
    let connected = false;
    const report = (now: boolean) => {
      if (now === connected) return;
      connected = now;
      for (const listener of connectionListeners) listener(now);
    };
    connection.on('error', (error: unknown) => {
      if (this.topology !== 'cluster') report(false);
      this.#emitError(error);
    });
    if (this.topology === 'cluster') {
      // Node clients come and go with the topology: connected while none of them is down.
      const down = new Set<string>();
      const lost = (info: unknown) => {
        down.add(address(info));
        report(false);
      };
      const back = (info: unknown) => {
        down.delete(address(info));
        if (down.size === 0) report(true);
      };
      connection.on('node-reconnecting', lost);
      connection.on('node-error', (_error: unknown, info: unknown) => lost(info));
      connection.on('node-ready', back);
      // A node dropped from the topology: its channels moved to the node that took its slots.
      connection.on('node-disconnect', back);
    } else {
      connection.on('reconnecting', () => report(false));
      connection.on('end', () => report(false));
      connection.on('ready', () => report(true));
    }
    await connection.connect();
    connected = true;
    const sharded = kind === 'sharded';
    return {
      subscribe: async (channel, onMessage) => {
        await (sharded ? connection.sSubscribe(channel, onMessage) : connection.subscribe(channel, onMessage));
      },
      unsubscribe: async (channel) => {
        await (sharded ? connection.sUnsubscribe(channel) : connection.unsubscribe(channel));
      },
      onConnection: (listener) => connectionListeners.push(listener),
      close: async () => {
        connectionListeners.length = 0;
        if (connection.isOpen)
          await closeConnection(
            connection.isReady,
            () => connection.close(),
            () => connection.destroy(),
          );
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
    if (this.topology !== 'pool') return (this.#client as NodeRedisPubSub).isReady;
    // A pool does not say whether its connections are up (each reconnects on its own): ready
    // while it is open and holds connections. The breaker reports an outage.
    const pool = this.#client as NodeRedisClientPool;
    return pool.isOpen && !pool.isClosing && pool.totalClients > 0;
  }

  details(): Record<string, number | string | boolean> {
    // `open` stays true while the client reconnects; `ready` is what says it can take commands.
    return { open: this.#client.isOpen, ready: this.ready(), cluster: this.cluster, topology: this.topology };
  }

  pool(): PoolStatus | undefined {
    if (this.topology !== 'pool') return undefined;
    const pool = this.#client as NodeRedisClientPool;
    return { total: pool.totalClients, idle: pool.idleClients, inUse: pool.clientsInUse, waiting: pool.tasksQueueLength };
  }

  onError(listener: (error: unknown) => void): void {
    this.#errorListeners.push(listener);
  }

  async close(): Promise<void> {
    if (!this.#owned || !this.#client.isOpen) return;
    const client = this.#client as NodeRedisClient;
    await closeConnection(
      client.isReady,
      () => client.close(),
      () => client.destroy(),
    );
  }
}

/**
 * A Redis store over node-redis.
 *
 * @example
 * const client = await createClient({ url }).connect();
 * const cache = createCache({ store: redisStore({ client }), namespace: 'app' });
 *
 * @example Redis Cluster (multi-key operations are split by slot; see docs/scaling.md)
 * const cluster = await createCluster({ rootNodes: [{ url: 'redis://10.0.0.1:7000' }] }).connect();
 * const cache = createCache({ store: redisStore({ client: cluster }), namespace: 'app' });
 *
 * @example A client pool (commands spread over its connections; pub/sub gets one of its own)
 * const pool = await createClientPool({ url }, { minimum: 2, maximum: 20 }).connect();
 * const cache = createCache({ store: redisStore({ client: pool }), namespace: 'app' });
 *
 * @example Sentinel (failovers are followed by node-redis and survived like outages)
 * const sentinel = await createSentinel({ name: 'mymaster', sentinelRootNodes: [{ host, port: 26379 }] }).connect();
 * const cache = createCache({ store: redisStore({ client: sentinel }), namespace: 'app' });
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
