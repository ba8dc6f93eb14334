/**
 * The invalidation bus: keeps the memory tiers (L1) of every instance coherent.
 *
 * `set`, `delete`, `clear` and `invalidateTags` on one instance publish what changed — keys,
 * cleared prefixes, new tag versions — after the store accepted the change; every other instance
 * evicts its L1 copies and updates its tag versions. Messages are small (JSON of keys), batched
 * per tick, and an instance ignores its own.
 *
 * The bus also knows when it cannot be trusted. Each instance publishes a heartbeat and listens
 * for its own: while it hears itself, every message published before has reached it. When the
 * connection drops — or stays up but silently stops delivering, as in a network partition — the
 * instance stops hearing itself within `3 × heartbeat`, reports the bus down, and the cache
 * stops using (and clears) its L1 until the heartbeat returns. That bounds how stale an L1 can
 * be, where a bus without heartbeats would wait for TCP to notice, or forever.
 */
import { randomBytes } from 'node:crypto';
import type { PubSubOptions, Store, Subscription } from '../stores/store.js';

/** What changed: full keys, cleared key prefixes, and tags with their new versions. */
export interface Invalidation {
  readonly keys: readonly string[];
  readonly prefixes: readonly string[];
  readonly tags: readonly (readonly [tag: string, version: string])[];
}

export interface BusHandlers {
  /** Another instance changed something. */
  invalidate(invalidation: Invalidation): void;
  /** The bus became trustworthy (`true`) or stopped being so (`false`). */
  connection(connected: boolean): void;
}

export interface BusOptions {
  /**
   * How often each instance publishes its heartbeat, in ms. An instance that has not heard its
   * own heartbeat for 3 intervals stops trusting its L1: this is the staleness bound when the bus
   * fails silently.
   * @default 1_000
   */
  heartbeat?: number;
}

/** Keys per message: a large `deleteMany` goes out as several messages, none of them huge. */
const KEYS_PER_MESSAGE = 500;
/**
 * Sharded pub/sub on a Redis Cluster (the channel costs one shard, not every node), classic
 * elsewhere. Every instance resolves `auto` the same way, so publishers and subscribers meet.
 */
const PUB_SUB: PubSubOptions = { mode: 'auto' };

type Wire = ['i', string, string[], string[], [string, string][]] | ['h', string];

export class InvalidationBus {
  readonly channel: string;
  readonly instanceId = randomBytes(8).toString('hex');
  readonly #store: Store;
  readonly #heartbeat: number;
  #handlers: BusHandlers | undefined;
  #subscription: Subscription | undefined;
  #starting: Promise<void> | undefined;
  #connected = false;
  #lastHeard = 0;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #pending: { keys: string[]; prefixes: string[]; tags: [string, string][] } | undefined;
  #flush: Promise<void> | undefined;
  #closed = false;

  constructor(store: Store, channel: string, options: BusOptions = {}) {
    this.#store = store;
    this.channel = channel;
    this.#heartbeat = options.heartbeat ?? 1_000;
  }

  /** Whether this instance currently hears the bus (and so may trust its L1). */
  get connected(): boolean {
    return this.#connected;
  }

  /** Subscribes (once); resolves when the subscription is in place. Failures are retried on heartbeats. */
  listen(handlers: BusHandlers): Promise<void> {
    this.#handlers = handlers;
    this.#starting ??= this.#subscribe();
    if (this.#heartbeatTimer === undefined) {
      this.#heartbeatTimer = setInterval(() => this.#beat(), this.#heartbeat);
      // The bus must never keep a process alive on its own.
      this.#heartbeatTimer.unref();
    }
    return this.#starting;
  }

  async #subscribe(): Promise<void> {
    try {
      this.#subscription = await this.#store.subscribe(
        this.channel,
        {
          message: (text) => this.#receive(text),
          connection: (up) => {
            // A drop is reported at once; a return only once we hear ourselves again.
            if (!up) this.#setConnected(false);
            else this.#beat();
          },
        },
        PUB_SUB,
      );
      this.#beat();
    } catch {
      // Not subscribed: the bus stays down; the next heartbeat tries again.
      this.#starting = undefined;
    }
  }

  #beat(): void {
    if (this.#closed) return;
    if (this.#starting === undefined) this.#starting = this.#subscribe();
    if (this.#connected && Date.now() - this.#lastHeard > 3 * this.#heartbeat) this.#setConnected(false);
    const beat: Wire = ['h', this.instanceId];
    this.#store.publish(this.channel, JSON.stringify(beat), PUB_SUB).catch(() => undefined);
  }

  #receive(text: string): void {
    let message: Wire;
    try {
      message = JSON.parse(text) as Wire;
    } catch {
      return;
    }
    if (!Array.isArray(message)) return;
    if (message[1] === this.instanceId) {
      if (message[0] === 'h') {
        this.#lastHeard = Date.now();
        this.#setConnected(true);
      }
      return;
    }
    if (message[0] !== 'i') return;
    const [, , keys, prefixes, tags] = message;
    if (!Array.isArray(keys) || !Array.isArray(prefixes) || !Array.isArray(tags)) return;
    this.#handlers?.invalidate({ keys, prefixes, tags });
  }

  #setConnected(connected: boolean): void {
    if (this.#connected === connected) return;
    this.#connected = connected;
    this.#handlers?.connection(connected);
  }

  /**
   * Announces an invalidation. Changes made in the same tick go out together; the promise
   * resolves when they were published (or publishing failed: the bus is best effort, and a
   * failing store is also what makes the other instances distrust their L1).
   */
  publish(invalidation: Partial<Invalidation>): Promise<void> {
    const pending = (this.#pending ??= { keys: [], prefixes: [], tags: [] });
    if (invalidation.keys !== undefined) pending.keys.push(...invalidation.keys);
    if (invalidation.prefixes !== undefined) pending.prefixes.push(...invalidation.prefixes);
    if (invalidation.tags !== undefined) pending.tags.push(...invalidation.tags.map(([t, v]): [string, string] => [t, v]));
    this.#flush ??= new Promise<void>((resolve) => {
      setImmediate(() => {
        const batch = this.#pending!;
        this.#pending = undefined;
        this.#flush = undefined;
        void this.#send(batch).then(resolve);
      });
    });
    return this.#flush;
  }

  async #send(batch: { keys: string[]; prefixes: string[]; tags: [string, string][] }): Promise<void> {
    const messages: Wire[] = [];
    for (let i = 0; i < Math.max(1, batch.keys.length); i += KEYS_PER_MESSAGE) {
      const first = i === 0;
      messages.push([
        'i',
        this.instanceId,
        batch.keys.slice(i, i + KEYS_PER_MESSAGE),
        first ? batch.prefixes : [],
        first ? batch.tags : [],
      ]);
    }
    await Promise.all(messages.map((m) => this.#store.publish(this.channel, JSON.stringify(m), PUB_SUB).catch(() => undefined)));
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeatTimer);
    this.#heartbeatTimer = undefined;
    this.#connected = false;
    await this.#flush;
    await this.#subscription?.unsubscribe().catch(() => undefined);
    this.#subscription = undefined;
  }
}
