/**
 * Read coalescing: the `GET`s a busy process issues in one turn of the event loop go out as one
 * `MGET`.
 *
 * Under concurrency most of a cache hit's client CPU is per command: encoding it, queueing it,
 * decoding its reply, settling its promise and its deadline. Sixty-four reads of different keys
 * cost about as much as one `MGET` of sixty-four keys plus the values themselves. A read issued
 * while nothing else is in flight (a quiet process, a request at a time) goes out at once as a
 * `GET`, so coalescing never adds latency where there is nothing to share; a read issued while
 * other commands are in flight waits for the end of the current tick (`process.nextTick`, no I/O
 * in between) and leaves with the others.
 *
 * A batch keeps its reads' order relative to commands issued before it; a write issued later in
 * the same tick may reach Redis first, which only concurrent (un-awaited) calls can observe.
 * `MGET` answers nil for a key holding another type where `GET` answers `WRONGTYPE`: such a key
 * (never one Larder wrote) reads as a miss in a batch, and its lease then meets the error.
 *
 * @module
 */
import type { Wire } from '../core/entry.js';

/** Most keys in one `MGET`: past it a new batch starts (bounds one command's work in Redis). */
export const MAX_BATCH = 64;

/** A read's promise settlers (the executor's own functions: no `this` to lose). */
interface Waiter {
  readonly resolve: (value: Wire | undefined) => void;
  readonly reject: (reason: unknown) => void;
}

class Batch {
  readonly keys: string[] = [];
  readonly waiters: Waiter[] = [];
  constructor(readonly binary: boolean) {}
}

export interface ReadBatchOptions {
  /** One `GET`. */
  readonly one: (key: string, binary: boolean) => Promise<Wire | undefined>;
  /** One `MGET`, values in the order of `keys`. */
  readonly many: (keys: readonly string[], binary: boolean) => Promise<(Wire | undefined)[]>;
  /** Whether commands are in flight now (a read then waits for the tick's other reads). */
  readonly busy: () => boolean;
  /**
   * Whether an error is Redis refusing `MGET` itself, for good (an ACL that allows `GET` only, a
   * proxy without it): the batch is then read key by key, and reads are never coalesced again.
   * Any other failure (a timeout, `BUSY`, `LOADING`) rejects the batch's reads, as it would
   * have rejected their `GET`s.
   */
  readonly refused: (error: unknown) => boolean;
}

export class ReadBatcher {
  readonly #options: ReadBatchOptions;
  /** The batch being filled, per reply type (text and bytes cannot share an `MGET`). */
  #text: Batch | undefined;
  #binary: Batch | undefined;
  /** Batches not sent yet, full ones included. */
  readonly #queued = new Set<Batch>();
  /** `MGET` was refused: every read is a `GET`. */
  #off = false;

  constructor(options: ReadBatchOptions) {
    this.#options = options;
  }

  get(key: string, binary: boolean): Promise<Wire | undefined> {
    let batch = binary ? this.#binary : this.#text;
    if (batch === undefined) {
      if (this.#off || !this.#options.busy()) return this.#options.one(key, binary);
      const created = new Batch(binary);
      if (binary) this.#binary = created;
      else this.#text = created;
      this.#queued.add(created);
      process.nextTick(() => this.#send(created));
      batch = created;
    }
    batch.keys.push(key);
    // A full batch stops taking reads; it still leaves at the end of the tick.
    if (batch.keys.length >= MAX_BATCH) this.#detach(batch);
    return new Promise<Wire | undefined>((resolve, reject) => batch.waiters.push({ resolve, reject }));
  }

  #detach(batch: Batch): void {
    if (batch.binary) {
      if (this.#binary === batch) this.#binary = undefined;
    } else if (this.#text === batch) this.#text = undefined;
  }

  /** Sends every batch not sent yet, now (before the connection closes). */
  flush(): void {
    for (const batch of this.#queued) this.#send(batch);
  }

  /** Sends `batch` unless it was already sent; each read gets its value, or the command's error. */
  #send(batch: Batch): void {
    if (!this.#queued.delete(batch)) return;
    this.#detach(batch);
    const { keys, waiters } = batch;
    if (keys.length === 1) {
      this.#options.one(keys[0]!, batch.binary).then(waiters[0]!.resolve, waiters[0]!.reject);
      return;
    }
    this.#options.many(keys, batch.binary).then(
      (values) => {
        for (let i = 0; i < waiters.length; i++) waiters[i]!.resolve(values[i]);
      },
      (error: unknown) => {
        if (!this.#options.refused(error)) {
          for (const waiter of waiters) waiter.reject(error);
          return;
        }
        this.#off = true;
        for (let i = 0; i < waiters.length; i++)
          this.#options.one(keys[i]!, batch.binary).then(waiters[i]!.resolve, waiters[i]!.reject);
      },
    );
  }
}
