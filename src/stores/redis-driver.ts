/**
 * What the Redis store needs from a client library. `redis.ts` (node-redis) and `ioredis.ts`
 * implement it; everything else (deadlines, circuit breaker, scripts, pub/sub multiplexing)
 * lives once in `redis-store.ts`.
 *
 * @module
 */

import type { PoolStatus } from './store.js';

export type RedisArg = string | Buffer;
export type RedisCommand = readonly RedisArg[];

/**
 * Which pub/sub a subscriber speaks: `classic` (`SUBSCRIBE`, messages sent with `PUBLISH`) or
 * `sharded` (`SSUBSCRIBE`, messages sent with `SPUBLISH`; Redis 7). The two are separate channel
 * namespaces: a message only reaches subscribers of its own kind.
 *
 * @see docs/scaling.md
 */
export type PubSubKind = 'classic' | 'sharded';

/**
 * A dedicated pub/sub connection (on a cluster: the connections it needs, one per shard for
 * sharded channels), owned and closed by the store. It resubscribes by itself after a reconnect
 * or, for sharded channels, after the channel's slot moved to another node.
 */
export interface DriverSubscriber {
  subscribe(channel: string, onMessage: (message: string) => void): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
  /** Reports losing (`false`) and regaining (`true`) the connection. */
  onConnection(listener: (connected: boolean) => void): void;
  close(): Promise<void>;
}

/**
 * How long closing waits for Redis to answer (pending replies, `QUIT`, `UNSUBSCRIBE`) before it
 * drops the connection: a stopped or hung Redis must not hang the app's shutdown.
 */
export const CLOSE_GRACE_MS = 1_000;

/** Whether `work` settled successfully within `ms`; never rejects. */
export async function settlesWithin(work: Promise<unknown>, ms = CLOSE_GRACE_MS): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(resolve, ms, false);
  });
  try {
    return await Promise.race([
      work.then(
        () => true,
        () => false,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Closes a connection: gracefully (its pending commands answered first) when it is connected and
 * Redis answers within {@link CLOSE_GRACE_MS}, otherwise by dropping it and what it had queued.
 */
export async function closeConnection(ready: boolean, graceful: () => Promise<unknown>, drop: () => unknown): Promise<void> {
  if (ready && (await settlesWithin(graceful()))) return;
  try {
    drop();
  } catch {
    // Already closed.
  }
}

export interface RedisDriver {
  /** `redis` or `ioredis`. */
  readonly name: string;
  /**
   * A Redis Cluster client: multi-key commands are split by hash slot and sent as one command per
   * slot, all at once (pipelined per node).
   */
  readonly cluster: boolean;

  /** `GET key`, as text or bytes. */
  get(key: string, binary: boolean): Promise<unknown>;
  /**
   * `MGET` (one per slot on a cluster, sent together); replies in the order of `keys`. A slot
   * caught mid-migration (`TRYAGAIN`: its keys are split between two nodes) is read key by key.
   */
  mget(keys: readonly string[], binary: boolean): Promise<unknown[]>;
  /** One command; `key` routes it on a cluster. */
  send(command: RedisCommand, key: string | undefined, binary: boolean): Promise<unknown>;
  /**
   * Commands written together (one round trip per node). Each command's `keys[i]` routes it.
   * Replies come back in order; a failed command's reply is its `Error`. On a cluster, a command
   * redirected (`MOVED`/`ASK`, during a resharding or after a failover) is followed to its node.
   */
  batch(commands: readonly RedisCommand[], keys: readonly string[], binary: boolean): Promise<unknown[]>;
  /** `UNLINK` (one per slot on a cluster, sent together); returns how many keys existed. */
  unlink(keys: readonly string[]): Promise<number>;
  /** Batches of keys matching `pattern`, from every master, with `SCAN` (never `KEYS`). */
  scan(pattern: string, count: number): AsyncIterable<string[]>;
  /** A new dedicated pub/sub connection for channels of one kind. */
  subscriber(kind: PubSubKind): Promise<DriverSubscriber>;

  /** `true` for an error reply from Redis (as opposed to a connection failure). */
  isReplyError(error: unknown): boolean;
  /** The client is connected and ready for commands. */
  ready(): boolean;
  /** Client-specific health figures (queue lengths, …). */
  details(): Record<string, number | string | boolean>;
  /** The pool's figures, for a client that is a connection pool (else `undefined`). */
  pool?(): PoolStatus | undefined;
  /** Registers a listener for connection errors (which would otherwise be unhandled). */
  onError(listener: (error: unknown) => void): void;
  /** Closes what the driver created; never the client the user passed in. */
  close(): Promise<void>;
}
