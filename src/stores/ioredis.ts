/**
 * The Redis store through ioredis (v5 or v6): a `Redis` (Sentinel-managed ones included:
 * `new Redis({ sentinels, name })`), a `Cluster`, or a URL.
 *
 * @see docs/scaling.md for clusters and Sentinel
 * @module
 */
import { Cluster, Redis, type ChainableCommander } from 'ioredis';
import { InvalidOptionError } from '../errors.js';
import type { DriverSubscriber, PubSubKind, RedisArg, RedisCommand, RedisDriver } from './redis-driver.js';
import { reconnectDelay, RedisStore, type RedisConnectionOptions } from './redis-store.js';
import { groupBySlot } from './slot.js';
import type { Store } from './store.js';

export type IoredisStoreOptions = RedisConnectionOptions &
  (
    | {
        /**
         * An ioredis `Redis` (standalone or Sentinel-managed) or `Cluster` you created. Larder
         * never closes it, and adds an `error` listener only to connections it opens itself.
         * @see docs/scaling.md
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

/**
 * A multi-key command on a slot being migrated, whose keys are split between two nodes: Redis
 * answers `TRYAGAIN`, which ioredis retries (`retryDelayOnTryAgain`) until it gives up with
 * "Too many Cluster redirections" (its retries can bounce between the two nodes with `MOVED`).
 */
function isSplitSlot(error: unknown): boolean {
  return error instanceof Error && /\bTRYAGAIN\b|^Too many Cluster redirections/.test(error.message);
}

/** A command answered with a redirection instead of being run (`MOVED`/`ASK`). */
function isRedirect(reply: unknown): boolean {
  return reply instanceof Error && /^(MOVED|ASK) /.test(reply.message);
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
        const group = positions.map((i) => keys[i]!);
        let values: unknown[];
        try {
          values = await mget(group);
        } catch (error) {
          // ioredis retried and the slot is still split: read its keys one by one, each
          // following its own ASK.
          if (!isSplitSlot(error)) throw error;
          values = await Promise.all(group.map((key) => this.get(key, binary)));
        }
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
    // ioredis follows a pipeline's redirection only when every command got the same one; during
    // a resharding some commands of a slot run where they are and others are sent elsewhere
    // (ASK), and those were not run: send each on its own, which follows it.
    await Promise.all(
      replies.map(async (reply, i) => {
        if (!isRedirect(reply)) return;
        replies[i] = await this.send(commands[i]!, keys[i], binary).catch((error: unknown) => error);
      }),
    );
    return replies;
  }

  async unlink(keys: readonly string[]): Promise<number> {
    const client = this.#client;
    if (!this.cluster) return client.unlink(...keys);
    const counts = await Promise.all(
      [...groupBySlot(keys).values()].map(async (positions) => {
        const group = positions.map((i) => keys[i]!);
        try {
          return await client.unlink(...group);
        } catch (error) {
          if (!isSplitSlot(error)) throw error;
          const each = await Promise.all(group.map((key) => client.unlink(key)));
          return each.reduce((sum, count) => sum + count, 0);
        }
      }),
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

  async subscriber(kind: PubSubKind): Promise<DriverSubscriber> {
    const client = this.#client;
    const sharded = kind === 'sharded';
    // A connection of its own: a client in subscriber mode takes no other command. A cluster
    // needs sharded subscribers (one connection per master) only for sharded channels.
    const connection = client instanceof Cluster ? client.duplicate([], { shardedSubscribers: sharded }) : client.duplicate();
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
    // Cluster subscriber connections move with the topology (a failed node, a moved slot).
    connection.on('-subscriber', () => report(false));
    connection.on('+subscriber', () => report(true));
    connection.on(sharded ? 'smessage' : 'message', (channel: string, message: string) => handlers.get(channel)?.(message));
    if (connection.status === 'wait') await connection.connect();
    return {
      subscribe: async (channel, onMessage) => {
        handlers.set(channel, onMessage);
        try {
          await (sharded ? connection.ssubscribe(channel) : connection.subscribe(channel));
        } catch (error) {
          handlers.delete(channel);
          throw error;
        }
      },
      unsubscribe: async (channel) => {
        handlers.delete(channel);
        await (sharded ? connection.sunsubscribe(channel) : connection.unsubscribe(channel));
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
    const sentinel = !this.cluster && (this.#client as Redis).options.sentinels !== undefined;
    return {
      status: this.#client.status,
      cluster: this.cluster,
      topology: this.cluster ? 'cluster' : sentinel ? 'sentinel' : 'standalone',
    };
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
 *
 * @example Redis Cluster (multi-key operations are split by slot; see docs/scaling.md)
 * const cluster = new Cluster([{ host: '10.0.0.1', port: 7000 }]);
 * const cache = createCache({ store: ioredisStore({ client: cluster }), namespace: 'app' });
 *
 * @example Sentinel (failovers are followed by ioredis and survived like outages)
 * const redis = new Redis({ sentinels: [{ host, port: 26379 }], name: 'mymaster' });
 * const cache = createCache({ store: ioredisStore({ client: redis }), namespace: 'app' });
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
