/**
 * Command deadlines without a timer per command.
 *
 * node-redis arms an `AbortSignal.timeout()` per command by default, which halves its
 * throughput; a `setTimeout` per command is not much cheaper. Larder instead drops every command
 * into the current "bucket" (an array), and one coarse interval timer, running only while
 * commands are in flight, rejects whatever is still pending in buckets older than the timeout.
 * A command therefore times out between `timeout` and `timeout + tick` after it was sent, and
 * a command that answers costs one array push and one flag write.
 */
import { CommandTimeoutError } from '../errors.js';

class Pending<T = unknown> {
  done = false;
  constructor(
    readonly resolve: (value: T) => void,
    readonly reject: (reason: unknown) => void,
  ) {}
}

interface Bucket {
  readonly at: number;
  readonly items: Pending[];
}

export interface DeadlineHooks {
  /** Called once per settled command, with the error when it failed (timeouts included). */
  settled(error: unknown): void;
}

export class Deadlines {
  readonly timeout: number;
  readonly #tick: number;
  readonly #hooks: DeadlineHooks;
  #buckets: Bucket[] = [];
  #current: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  #pending = 0;

  /** `timeout` in ms; `Infinity` turns deadlines off (commands are still counted). */
  constructor(timeout: number, hooks: DeadlineHooks) {
    this.timeout = timeout;
    // A quarter of the timeout keeps the overshoot small; 5 ms floor keeps the timer cheap.
    this.#tick = Math.max(5, Math.floor(timeout / 4));
    this.#hooks = hooks;
  }

  /** Commands sent and not answered (nor timed out) yet. */
  get pending(): number {
    return this.#pending;
  }

  /** A promise that settles like `command`, or rejects with a {@link CommandTimeoutError} first. */
  track<T>(command: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const pending = new Pending<T>(resolve, reject);
      this.#pending++;
      if (this.timeout !== Infinity) {
        this.#current.push(pending as Pending);
        if (this.#timer === undefined) this.#start();
      }
      command.then(
        (value) => {
          if (pending.done) return;
          pending.done = true;
          this.#pending--;
          this.#hooks.settled(undefined);
          resolve(value);
        },
        (error: unknown) => {
          if (pending.done) return;
          pending.done = true;
          this.#pending--;
          this.#hooks.settled(error);
          reject(error);
        },
      );
    });
  }

  #start(): void {
    this.#buckets.push({ at: Date.now(), items: this.#current });
    this.#timer = setInterval(() => this.#expire(), this.#tick);
    // Deadlines must never keep a process alive on their own.
    this.#timer.unref();
  }

  #expire(): void {
    const now = Date.now();
    // A bucket collects the commands sent during one tick, so its oldest command is at most one
    // tick older than `at`: expiring at `timeout + tick` never cuts a command short.
    while (this.#buckets.length > 0 && now - this.#buckets[0]!.at >= this.timeout + this.#tick) {
      for (const pending of this.#buckets.shift()!.items) {
        if (pending.done) continue;
        pending.done = true;
        this.#pending--;
        const error = new CommandTimeoutError(this.timeout);
        this.#hooks.settled(error);
        pending.reject(error);
      }
    }
    if (this.#pending === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      this.#buckets = [];
      this.#current = [];
      return;
    }
    this.#current = [];
    this.#buckets.push({ at: now, items: this.#current });
  }

  /** Stops the timer; pending commands are left to their own fate. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
