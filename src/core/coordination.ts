/**
 * Waiting for another process's load.
 *
 * The process holding a key's lease publishes the key on the cache's channel when it writes the
 * value or gives the lease up (both from inside the write script, so nothing is announced that
 * did not happen). Waiters wake on that message, or on a polling timer that backs off, so a lost
 * message or a missing subscription only slows a waiter down, never strands it.
 */
import type { Store, Subscription } from '../stores/store.js';

/** Poll delays while waiting: start quick, back off to a ceiling. */
export const POLL_START_MS = 20;
export const POLL_MAX_MS = 400;

export class Coordination {
  readonly channel: string;
  readonly #store: Store;
  readonly #onError: (error: unknown) => void;
  readonly #waiters = new Map<string, Set<() => void>>();
  #subscription: Promise<Subscription | undefined> | undefined;
  #closed = false;

  constructor(store: Store, channel: string, onError: (error: unknown) => void) {
    this.#store = store;
    this.channel = channel;
    this.#onError = onError;
  }

  /** Resolves when `key` is announced (written or released), or after `ms`. */
  wait(key: string, ms: number): Promise<void> {
    this.#subscribe();
    return new Promise((resolve) => {
      let waiters = this.#waiters.get(key);
      if (waiters === undefined) this.#waiters.set(key, (waiters = new Set()));
      const set = waiters;
      const wake = () => {
        clearTimeout(timer);
        set.delete(wake);
        if (set.size === 0 && this.#waiters.get(key) === set) this.#waiters.delete(key);
        resolve();
      };
      // Not unref'd: a caller is waiting on it, and the wait is bounded by the lock's `wait`.
      const timer = setTimeout(wake, ms);
      set.add(wake);
    });
  }

  #subscribe(): void {
    if (this.#subscription !== undefined || this.#closed) return;
    this.#subscription = this.#store
      .subscribe(this.channel, {
        message: (key) => {
          const waiters = this.#waiters.get(key);
          if (waiters !== undefined) for (const wake of [...waiters]) wake();
        },
      })
      .catch((error: unknown) => {
        // Polling still works; try subscribing again on the next wait.
        this.#subscription = undefined;
        this.#onError(error);
        return undefined;
      });
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const waiters of this.#waiters.values()) for (const wake of [...waiters]) wake();
    const subscription = await this.#subscription;
    this.#subscription = undefined;
    await subscription?.unsubscribe().catch(() => undefined);
  }
}
