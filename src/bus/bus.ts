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
 *
 * Heartbeats go on a channel of each instance's own, beside the shared one (same hash slot, so
 * the same shard on a cluster, same subscriber connection): every instance hears one heartbeat
 * per interval, its own, not one per instance of the fleet.
 *
 * Pub/sub is fire-and-forget, so a message whose `PUBLISH` fails (a blip on the command
 * connection, while the subscriber connection stays up) would be lost, and the other instances
 * would keep their copies until they expire. Unsent messages are kept and sent again at each
 * heartbeat; past {@link MAX_UNSENT} they collapse into one "reset" message that makes every other
 * instance drop its L1 and tag copies. Late delivery is harmless: evictions are idempotent and
 * tag versions only move forward.
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
  /** Another instance lost track of what it changed: every local copy may be stale. */
  reset(): void;
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
/** Most messages kept for a retry; past this they collapse into one reset message. */
export const MAX_UNSENT = 100;
/**
 * Sharded pub/sub on a Redis Cluster (the channel costs one shard, not every node), classic
 * elsewhere. Every instance resolves `auto` the same way, so publishers and subscribers meet.
 */
const PUB_SUB: PubSubOptions = { mode: 'auto' };

/** Invalidation, reset (drop every copy), heartbeat. */
type Wire = ['i', string, string[], string[], [string, string][]] | ['r', string] | ['h', string];

export class InvalidationBus {
  readonly channel: string;
  readonly instanceId = randomBytes(8).toString('hex');
  /** This instance's heartbeat channel: hashes like `channel` (its hash tag is all of `channel`). */
  readonly heartbeatChannel: string;
  readonly #store: Store;
  readonly #heartbeat: number;
  #handlers: BusHandlers | undefined;
  #subscriptions: Subscription[] = [];
  /** Messages whose PUBLISH failed, sent again at each heartbeat. */
  #unsent: Wire[] = [];
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
    this.heartbeatChannel = `{${channel}}:hb:${this.instanceId}`;
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
    const subscriptions: Subscription[] = [];
    try {
      subscriptions.push(
        await this.#store.subscribe(
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
        ),
      );
      subscriptions.push(await this.#store.subscribe(this.heartbeatChannel, { message: () => this.#heard() }, PUB_SUB));
      this.#subscriptions = subscriptions;
      this.#beat();
    } catch {
      // Not subscribed: the bus stays down; the next heartbeat tries again.
      await Promise.all(subscriptions.map((s) => s.unsubscribe().catch(() => undefined)));
      this.#starting = undefined;
    }
  }

  #heard(): void {
    this.#lastHeard = Date.now();
    this.#setConnected(true);
  }

  #beat(): void {
    if (this.#closed) return;
    if (this.#starting === undefined) this.#starting = this.#subscribe();
    if (this.#connected && Date.now() - this.#lastHeard > 3 * this.#heartbeat) this.#setConnected(false);
    this.#store.publish(this.heartbeatChannel, 'h', PUB_SUB).catch(() => undefined);
    if (this.#unsent.length > 0) {
      const retry = this.#unsent;
      this.#unsent = [];
      void this.#publishAll(retry);
    }
  }

  #receive(text: string): void {
    let message: Wire;
    try {
      message = JSON.parse(text) as Wire;
    } catch {
      return;
    }
    // Our own messages, and heartbeats (an earlier Larder sent them here), are not news.
    if (!Array.isArray(message) || message[1] === this.instanceId) return;
    if (message[0] === 'r') {
      this.#handlers?.reset();
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
    await this.#publishAll(messages);
  }

  /** Publishes `messages`; the ones that fail are kept for the next heartbeat. */
  async #publishAll(messages: readonly Wire[]): Promise<void> {
    const failed: Wire[] = [];
    await Promise.all(
      messages.map((m) => this.#store.publish(this.channel, JSON.stringify(m), PUB_SUB).catch(() => void failed.push(m))),
    );
    if (failed.length === 0) return;
    const unsent = [...this.#unsent, ...failed];
    // Too much to keep track of: the others drop everything instead (one message, however much was lost).
    this.#unsent = unsent.length > MAX_UNSENT || unsent.some((m) => m[0] === 'r') ? [['r', this.instanceId]] : unsent;
  }

  /** Messages waiting to be sent again (for stats and tests). */
  get unsent(): number {
    return this.#unsent.length;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeatTimer);
    this.#heartbeatTimer = undefined;
    this.#connected = false;
    await this.#flush;
    // A last try for what could not be sent; whatever still fails is lost with the process.
    if (this.#unsent.length > 0) {
      const retry = this.#unsent;
      this.#unsent = [];
      await this.#publishAll(retry);
    }
    await Promise.all(this.#subscriptions.map((s) => s.unsubscribe().catch(() => undefined)));
    this.#subscriptions = [];
  }
}
