/**
 * Lease renewal: while a loader runs, its lease is renewed so other processes keep waiting for
 * it; if the process dies, renewal stops and the lease expires within its TTL.
 *
 * One interval timer renews every lease due (a third of its TTL since the last renewal) in one
 * batch, instead of a timer per load: a miss only adds and removes a set entry.
 */
import type { ConditionalExpire, Store } from '../stores/store.js';
import type { Clock } from './clock.js';

/** A lease (ours) on a key: the placeholder we wrote and the prefix that identifies it. */
export interface Lease {
  readonly key: string;
  readonly wire: string;
  readonly prefix: string;
}

interface Held {
  readonly lease: Lease;
  readonly ttl: number;
  renewedAt: number;
}

export class Renewals {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #onError: (key: string, error: unknown) => void;
  readonly #held = new Set<Held>();
  #timer: NodeJS.Timeout | undefined;
  #tickMs = Infinity;

  constructor(store: Store, clock: Clock, onError: (key: string, error: unknown) => void) {
    this.#store = store;
    this.#clock = clock;
    this.#onError = onError;
  }

  /** Keeps `lease` alive (TTL `ttl` ms) until the returned function is called. */
  hold(lease: Lease, ttl: number): () => void {
    const held: Held = { lease, ttl, renewedAt: this.#clock.now() };
    this.#held.add(held);
    const tickMs = Math.max(10, Math.floor(ttl / 3));
    if (this.#timer === undefined || tickMs < this.#tickMs) {
      clearInterval(this.#timer);
      this.#tickMs = tickMs;
      this.#timer = setInterval(() => this.#renew(), tickMs);
      // Renewal alone must not keep a process alive.
      this.#timer.unref();
    }
    // The timer stops at its first tick with nothing held, not here: most loads end within a
    // tick, and arming and clearing an interval per miss would cost more than the renewal.
    return () => this.#held.delete(held);
  }

  #renew(): void {
    if (this.#held.size === 0) {
      this.stop();
      return;
    }
    const now = this.#clock.now();
    const due: ConditionalExpire[] = [];
    for (const held of this.#held) {
      if (now - held.renewedAt < held.ttl / 3) continue;
      held.renewedAt = now;
      // Extends the TTL only: rewriting the placeholder would drop the waiters' mark.
      due.push({ key: held.lease.key, expect: held.lease.prefix, ttl: held.ttl });
    }
    if (due.length === 0) return;
    this.#store.expireIf(due).catch((error: unknown) => {
      for (const write of due) this.#onError(write.key, error);
    });
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#tickMs = Infinity;
  }
}
