/**
 * Command deadlines without a timer per command.
 *
 * node-redis arms an `AbortSignal.timeout()` per command by default, which halves its
 * throughput; a `setTimeout` per command is not much cheaper. Larder instead keeps the commands
 * in flight in a linked list in send order, stamped with a coarse clock, and one interval timer
 * (running only while commands are in flight) rejects those at the head that are older than the
 * timeout. A command that answers unlinks itself at once, so nothing outlives its command and
 * the garbage collector sees only short-lived objects. A command times out after `timeout`, and
 * less than two ticks later (stamps and checks fall on the same ticks: one tick at most when the
 * tick divides the timeout, as for the default 500 ms).
 */
import type { Histogram } from '../core/metrics.js';
import { CommandTimeoutError } from '../errors.js';

/** Called once per settled command, with the error when it failed (timeouts included). */
export type SettledHook = (error: unknown) => void;

class Pending {
  prev: Pending | undefined = undefined;
  next: Pending | undefined = undefined;
  done = false;
  /** Precise send time, for the latency histogram (0 without one). */
  startedAt = 0;
  constructor(
    readonly sentAt: number,
    readonly resolve: (value: unknown) => void,
    readonly reject: (reason: unknown) => void,
  ) {}
}

export class Deadlines {
  readonly timeout: number;
  readonly #tick: number;
  readonly #settled: SettledHook;
  readonly #wrap: (error: unknown) => unknown;
  /** Command latencies, when recorded. */
  readonly histogram: Histogram | undefined;
  #head: Pending | undefined;
  #tail: Pending | undefined;
  #pending = 0;
  #now = 0;
  #timer: NodeJS.Timeout | undefined;

  /**
   * `timeout` in ms (`Infinity` turns deadlines off; commands are still counted); `settled` sees
   * every outcome; `wrap` turns any failure (timeouts included) into the error callers get.
   */
  constructor(timeout: number, settled: SettledHook, wrap: (error: unknown) => unknown, histogram?: Histogram) {
    this.timeout = timeout;
    this.histogram = histogram;
    // A quarter of the timeout keeps the overshoot small; 5 ms floor keeps the timer cheap.
    this.#tick = Math.max(5, Math.floor(timeout / 4));
    this.#settled = settled;
    this.#wrap = wrap;
  }

  /** Commands sent and not answered (nor timed out) yet. */
  get pending(): number {
    return this.#pending;
  }

  /**
   * A promise that settles like `command` (its value passed through `map`, its error through
   * `wrap`), or rejects with a wrapped {@link CommandTimeoutError} first.
   */
  track<T, R = T>(command: Promise<T>, map?: (value: T) => R): Promise<R> {
    const wrap = this.#wrap;
    return new Promise<R>((resolve, reject) => {
      if (this.#timer === undefined && this.timeout !== Infinity) this.#start();
      const pending = new Pending(this.#now, resolve as (value: unknown) => void, reject);
      if (this.histogram !== undefined) pending.startedAt = performance.now();
      this.#pending++;
      this.#append(pending);
      command.then(
        (value) => {
          if (pending.done) return;
          this.#finish(pending);
          this.#settled(undefined);
          resolve(map === undefined ? (value as unknown as R) : map(value));
        },
        (error: unknown) => {
          if (pending.done) return;
          this.#finish(pending);
          this.#settled(error);
          reject(wrap(error));
        },
      );
    });
  }

  #append(pending: Pending): void {
    pending.prev = this.#tail;
    if (this.#tail === undefined) this.#head = pending;
    else this.#tail.next = pending;
    this.#tail = pending;
  }

  #finish(pending: Pending): void {
    pending.done = true;
    this.#pending--;
    if (pending.startedAt !== 0) this.histogram!.record(performance.now() - pending.startedAt);
    const { prev, next } = pending;
    if (prev === undefined) this.#head = next;
    else prev.next = next;
    if (next === undefined) this.#tail = prev;
    else next.prev = prev;
    pending.prev = pending.next = undefined;
  }

  #start(): void {
    this.#now = Date.now();
    this.#timer = setInterval(() => this.#expire(), this.#tick);
    // Deadlines must never keep a process alive on their own.
    this.#timer.unref();
  }

  #expire(): void {
    const now = (this.#now = Date.now());
    // Send times are stamped with the coarse clock, up to one tick early: expiring at
    // `timeout + tick` never cuts a command short.
    const limit = this.timeout + this.#tick;
    while (this.#head !== undefined && now - this.#head.sentAt >= limit) {
      const pending = this.#head;
      this.#finish(pending);
      const error = new CommandTimeoutError(this.timeout);
      this.#settled(error);
      pending.reject(this.#wrap(error));
    }
    if (this.#pending === 0) this.stop();
  }

  /** Stops the timer; it restarts with the next command. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
