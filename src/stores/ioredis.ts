/**
 * The Redis store through ioredis (v6): a `Redis` (Sentinel-managed ones included:
 * `new Redis({ sentinels, name })`), a `Cluster`, or a URL.
 *
 * @see docs/scaling.md for clusters and Sentinel
 * @module
 */
import { Cluster, Redis, type ChainableCommander } from 'ioredis';
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
import { groupBySlot, slotOf } from './slot.js';
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
    if (!this.cluster) return binary ? client.mgetBuffer([...keys]) : client.mget([...keys]);
    // One command per slot (GET for a lone key), one pipeline per node.
    const groups = [...groupBySlot(keys)].map(([slot, positions]) => ({ slot, keys: positions.map((i) => keys[i]!), positions }));
    const commands = groups.map((g): RedisCommand => (g.keys.length === 1 ? ['GET', g.keys[0]!] : ['MGET', ...g.keys]));
    // Key by key when the slot is on the move: an MGET sent after its keys (ASK) can meet the
    // slot half-imported on the target (TRYAGAIN), which ioredis would retry for seconds.
    const oneByOne = (group: { keys: string[] }) => Promise.all(group.keys.map((key) => this.get(key, binary)));
    const answers = await this.#perNode(
      commands,
      groups.map((g) => g.slot),
      binary,
      async (i) => {
        const group = groups[i]!;
        return group.keys.length === 1 ? this.get(group.keys[0]!, binary) : oneByOne(group);
      },
    );
    const replies = new Array<unknown>(keys.length);
    await Promise.all(
      groups.map(async (group, i) => {
        let values = answers[i];
        if (values instanceof Error) {
          // The slot is half-migrated: read its keys one by one, each following its own ASK.
          if (!isSplitSlot(values)) throw values;
          values = await oneByOne(group);
        }
        if (group.keys.length === 1) replies[group.positions[0]!] = values;
        else group.positions.forEach((position, j) => (replies[position] = (values as unknown[])[j]));
      }),
    );
    return replies;
  }

  send(command: RedisCommand, _key: string | undefined, binary: boolean): Promise<unknown> {
    const [name, ...args] = toArgs(command);
    return binary ? this.#client.callBuffer(name, ...args) : this.#client.call(name, ...args);
  }

  /** Commands in one pipeline; replies in order, a failed command's reply being its error. */
  async #pipeline(commands: readonly RedisCommand[], binary: boolean, guard: boolean): Promise<unknown[]> {
    const pipeline: ChainableCommander = this.#client.pipeline();
    // ECHO is not read-only: with it in the pipeline, ioredis hands redirections back instead of
    // re-running the whole pipeline on the node of the first one (which, for reads, answers nil
    // for the keys of a half-migrated slot that had not moved yet).
    if (guard) pipeline.echo('larder');
    for (const command of commands) {
      const [name, ...args] = toArgs(command);
      if (binary) pipeline.callBuffer(name, ...args);
      else pipeline.call(name, ...args);
    }
    const results = (await pipeline.exec()) ?? [];
    const replies = results.map(([error, reply]) => error ?? reply);
    return guard ? replies.slice(1) : replies;
  }

  /**
   * Cluster commands, each routed by its slot: one pipeline per node (a cluster pipeline must
   * stay on one node), all sent together. A command redirected by `MOVED`/`ASK` (a resharding or
   * a failover under way) was not run: `redirected(i)` runs it again (by default the same command
   * on its own, which ioredis routes by the redirection).
   */
  async #perNode(
    commands: readonly RedisCommand[],
    slots: readonly number[],
    binary: boolean,
    redirected: (i: number) => Promise<unknown> = (i) => this.send(commands[i]!, undefined, binary),
  ): Promise<unknown[]> {
    const cluster = this.#client as Cluster;
    const byNode = new Map<string, number[]>();
    slots.forEach((slot, i) => {
      // ioredis accepts a pipeline whose slots share one node list (master and replicas).
      const node = cluster.slots[slot]?.join(';') ?? '';
      const positions = byNode.get(node);
      if (positions === undefined) byNode.set(node, [i]);
      else positions.push(i);
    });
    const one = (i: number) => this.send(commands[i]!, undefined, binary).catch((error: unknown) => error);
    const replies = new Array<unknown>(commands.length);
    await Promise.all(
      [...byNode.values()].map(async (positions) => {
        let values: unknown[];
        try {
          values = await this.#pipeline(
            positions.map((i) => commands[i]!),
            binary,
            true,
          );
        } catch {
          // Refused as a whole (the slot map changed under it): one command at a time.
          values = await Promise.all(positions.map(one));
        }
        positions.forEach((position, j) => (replies[position] = values[j]));
      }),
    );
    await Promise.all(
      replies.map(async (reply, i) => {
        if (isRedirect(reply)) replies[i] = await redirected(i).catch((error: unknown) => error);
      }),
    );
    return replies;
  }

  async batch(commands: readonly RedisCommand[], keys: readonly string[], binary: boolean): Promise<unknown[]> {
    if (!this.cluster) {
      // With auto-pipelining, commands issued in one tick already share a socket write, and a
      // pipeline object per batch would cost more than it saves (it bypasses that queue).
      if (this.#client.options.enableAutoPipelining === true) {
        return Promise.all(commands.map((command) => this.send(command, undefined, binary).catch((error: unknown) => error)));
      }
      return this.#pipeline(commands, binary, false);
    }
    return this.#perNode(commands, keys.map(slotOf), binary);
  }

  async unlink(keys: readonly string[]): Promise<number> {
    const client = this.#client;
    if (!this.cluster) return client.unlink(...keys);
    const groups = [...groupBySlot(keys)].map(([slot, positions]) => ({ slot, keys: positions.map((i) => keys[i]!) }));
    const oneByOne = async (group: { keys: string[] }) =>
      (await Promise.all(group.keys.map((key) => client.unlink(key)))).reduce((sum, count) => sum + count, 0);
    const answers = await this.#perNode(
      groups.map((g): RedisCommand => ['UNLINK', ...g.keys]),
      groups.map((g) => g.slot),
      false,
      (i) => oneByOne(groups[i]!),
    );
    const counts = await Promise.all(
      groups.map(async (group, i) => {
        const answer = answers[i];
        if (!(answer instanceof Error)) return Number(answer);
        if (!isSplitSlot(answer)) throw answer;
        return oneByOne(group);
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
    // ioredis defaults `sentinels` to null on plain clients.
    const sentinels = this.cluster ? undefined : (this.#client as Redis).options.sentinels;
    const sentinel = Array.isArray(sentinels) && sentinels.length > 0;
    return {
      status: this.#client.status,
      // Sent and awaiting replies (a standalone or Sentinel connection; a cluster has one per node).
      ...(this.cluster ? {} : { commandQueue: (this.#client as Redis).commandQueue.length }),
      cluster: this.cluster,
      topology: this.cluster ? 'cluster' : sentinel ? 'sentinel' : 'standalone',
    };
  }

  onError(listener: (error: unknown) => void): void {
    this.#errorListeners.push(listener);
  }

  async close(): Promise<void> {
    if (!this.#owned || this.#client.status === 'end') return;
    const client = this.#client;
    await closeConnection(
      client.status === 'ready',
      () => client.quit(),
      () => client.disconnect(),
    );
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
  // Connected once the options are checked: a refused option must not leave a connection behind.
  const client = new Redis(options.url, { retryStrategy: (times) => reconnectDelay(times), lazyConnect: true });
  const store = new RedisStore(new IoredisDriver(client, true), options);
  // Connection failures surface as command failures (fail-open) and through the error listener.
  client.connect().catch(() => undefined);
  return store;
}
