/**
 * Coalescing: the single-key commands of one kind a busy process issues in one turn of the event
 * loop go out as one multi-key command. The Redis store coalesces three kinds, the steps of a
 * cache-aside call: reads (`GET`s into one `MGET`), leases (`SET NX GET`s into one script call)
 * and compare-and-set writes (into one script call).
 *
 * Under concurrency most of a command's client CPU is per command, not per key: encoding it,
 * queueing it, decoding its reply, settling its promise and its deadline. Redis's own cost is
 * per command too (a read from the socket, a reply written). Sixty-four reads of different keys
 * cost about as much as one `MGET` of sixty-four keys plus the values themselves.
 *
 * A command issued while nothing else is in flight (a quiet process, a request at a time) goes
 * out at once, alone, so coalescing never adds latency where there is nothing to share; one
 * issued while other commands are in flight waits for the end of the current tick
 * (`process.nextTick`, no I/O in between) and leaves with the others of its kind.
 *
 * A batch keeps its commands' order relative to commands issued before it; a command of another
 * kind issued later in the same tick may reach Redis first, which only concurrent (un-awaited)
 * calls can observe.
 *
 * @module
 */

/** Most requests in one command by default: past it a new batch starts (bounds one command's work in Redis). */
export const MAX_BATCH = 64;

/**
 * Most leases or writes in one script call. Smaller than a read batch, for two reasons measured
 * on the miss path at concurrency 64 (`bench/core.ts`). A script costs Redis several times what
 * a native command does per key, so a big batch keeps the client idle while Redis runs it; and
 * the misses of one tick then move in lockstep, lease batch, then write batch, with nothing in
 * flight between. Batches of 16 let Redis answer the first while the client prepares the next:
 * 15–25% more misses per second than batches of 64, on both clients.
 */
export const MAX_SCRIPT_BATCH = 16;

/** A request's promise settlers (the executor's own functions: no `this` to lose). */
interface Waiter<Reply> {
  readonly resolve: (reply: Reply) => void;
  readonly reject: (reason: unknown) => void;
}

class Batch<Request, Reply> {
  readonly requests: Request[] = [];
  readonly waiters: Waiter<Reply>[] = [];
  constructor(readonly binary: boolean) {}
}

export interface TickBatchOptions<Request, Reply> {
  /** The request alone, as its own command. */
  readonly one: (request: Request, binary: boolean) => Promise<Reply>;
  /**
   * The requests as one command, replies in their order. A reply that is an `Error` (Redis
   * answered that request with an error) rejects that request only.
   */
  readonly many: (requests: readonly Request[], binary: boolean) => Promise<readonly (Reply | Error)[]>;
  /** Most requests in one command. @default MAX_BATCH */
  readonly maxBatch?: number;
  /** Whether commands are in flight now (a request then waits for the tick's others). */
  readonly busy: () => boolean;
  /**
   * Whether an error is Redis refusing the multi-key command itself, for good (an ACL that allows
   * `GET` only, a proxy without `MGET` or scripts): the batch is then sent request by request,
   * and nothing is coalesced again. Any other failure (a timeout, `BUSY`, `LOADING`) rejects the
   * batch's requests, as it would have rejected their own commands.
   */
  readonly refused: (error: unknown) => boolean;
}

/** Coalesces one kind of request; `binary` requests (bytes replies) never share a batch with text ones. */
export class TickBatcher<Request, Reply> {
  readonly #options: TickBatchOptions<Request, Reply>;
  readonly #maxBatch: number;
  /** The batch being filled, per reply type (text and bytes cannot share a command). */
  #text: Batch<Request, Reply> | undefined;
  #binary: Batch<Request, Reply> | undefined;
  /** Batches not sent yet, full ones included. */
  readonly #queued = new Set<Batch<Request, Reply>>();
  /** The multi-key command was refused: every request goes alone. */
  #off = false;

  constructor(options: TickBatchOptions<Request, Reply>) {
    this.#options = options;
    this.#maxBatch = options.maxBatch ?? MAX_BATCH;
  }

  send(request: Request, binary: boolean): Promise<Reply> {
    let batch = binary ? this.#binary : this.#text;
    if (batch === undefined) {
      if (this.#off || !this.#options.busy()) return this.#options.one(request, binary);
      const created = new Batch<Request, Reply>(binary);
      if (binary) this.#binary = created;
      else this.#text = created;
      this.#queued.add(created);
      process.nextTick(() => this.#flushBatch(created));
      batch = created;
    }
    batch.requests.push(request);
    // A full batch stops taking requests; it still leaves at the end of the tick.
    if (batch.requests.length >= this.#maxBatch) this.#detach(batch);
    return new Promise<Reply>((resolve, reject) => batch.waiters.push({ resolve, reject }));
  }

  #detach(batch: Batch<Request, Reply>): void {
    if (batch.binary) {
      if (this.#binary === batch) this.#binary = undefined;
    } else if (this.#text === batch) this.#text = undefined;
  }

  /** Sends every batch not sent yet, now (before the connection closes). */
  flush(): void {
    for (const batch of this.#queued) this.#flushBatch(batch);
  }

  /** Sends `batch` unless it was already sent; each request gets its reply, or the command's error. */
  #flushBatch(batch: Batch<Request, Reply>): void {
    if (!this.#queued.delete(batch)) return;
    this.#detach(batch);
    const { requests, waiters, binary } = batch;
    if (requests.length === 1) {
      this.#options.one(requests[0]!, binary).then(waiters[0]!.resolve, waiters[0]!.reject);
      return;
    }
    this.#options.many(requests, binary).then(
      (replies) => {
        for (let i = 0; i < waiters.length; i++) {
          const reply = replies[i];
          if (reply instanceof Error) waiters[i]!.reject(reply);
          else waiters[i]!.resolve(reply as Reply);
        }
      },
      (error: unknown) => {
        if (!this.#options.refused(error)) {
          for (const waiter of waiters) waiter.reject(error);
          return;
        }
        this.#off = true;
        for (let i = 0; i < waiters.length; i++)
          this.#options.one(requests[i]!, binary).then(waiters[i]!.resolve, waiters[i]!.reject);
      },
    );
  }
}
