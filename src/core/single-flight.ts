/**
 * In-process single flight: concurrent callers of one key share one promise.
 *
 * Every caller gets the same value or the same error, and errors are never kept: the flight
 * leaves the map when its work ends. A caller whose own `AbortSignal` fires is rejected alone
 * with an `AbortError`; the shared work goes on for the others, and its signal is aborted only
 * when every caller has gone (HybridCache's "combined cancellation"). Callers without a signal
 * never leave, so their work is never aborted on their behalf.
 */
import { AbortError } from '../errors.js';
import { Abortable } from './loader.js';
import { startsWithAny } from '../stores/store.js';

export class Flight<T> extends Abortable {
  readonly key: string;
  /** Settles with the work's result; waiters without a signal receive it as is. */
  promise!: Promise<T>;
  /** Set when the key is written or deleted while the work runs: its result must not be stored. */
  invalidated = false;
  #active = 0;
  readonly #flights: Flights;

  constructor(key: string, flights: Flights) {
    super();
    this.key = key;
    this.#flights = flights;
  }

  /** Unregisters this flight (if still registered): the next caller starts a new one. */
  release(): void {
    this.#flights.release(this);
  }

  start(work: (flight: Flight<T>) => Promise<T>): this {
    // Every flight is joined as soon as it starts, so its rejection is always handled.
    this.promise = work(this);
    return this;
  }

  /** A promise for this caller: the shared result, or an `AbortError` when `signal` fires first. */
  join(signal: AbortSignal | undefined): Promise<T> {
    this.#active++;
    if (signal === undefined) {
      // Never leaves: pin the count so waiters with signals cannot abort the work under it.
      this.#active = Infinity;
      return this.promise;
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        reject(new AbortError({ cause: signal.reason, key: this.key }));
        this.#leave();
      };
      const cleanup = () => signal.removeEventListener('abort', onAbort);
      signal.addEventListener('abort', onAbort, { once: true });
      this.promise.then(
        (value) => {
          cleanup();
          resolve(value);
        },
        (error: unknown) => {
          cleanup();
          reject(error);
        },
      );
    });
  }

  #leave(): void {
    if (--this.#active > 0) return;
    // Nobody waits any more: stop the work and let the next caller start afresh. (Background
    // refreshes have their own signal: this never cancels one.)
    this.#flights.release(this);
    this.abort(new AbortError({ key: this.key }));
  }
}

/** The flights in progress, by full key. */
export class Flights {
  readonly #map = new Map<string, Flight<unknown>>();

  get<T>(key: string): Flight<T> | undefined {
    return this.#map.get(key) as Flight<T> | undefined;
  }

  /** Registers and starts a flight for `key` (which must have none). */
  start<T>(key: string, work: (flight: Flight<T>) => Promise<T>): Flight<T> {
    const flight = new Flight<T>(key, this);
    this.#map.set(key, flight);
    try {
      return flight.start(work);
    } catch (error) {
      this.release(flight);
      throw error;
    }
  }

  /** Unregisters `flight` if it is still the one registered for its key. */
  release(flight: Flight<unknown>): void {
    if (this.#map.get(flight.key) === flight) this.#map.delete(flight.key);
  }

  /**
   * The key changed: its flight (if any) must not store its result, and is unregistered so the
   * next caller reads the new state instead of joining a flight that started before the change.
   */
  invalidate(key: string): void {
    const flight = this.#map.get(key);
    if (flight === undefined) return;
    flight.invalidated = true;
    this.#map.delete(key);
  }

  /** {@link invalidate} for every flight whose key starts with one of `prefixes`. */
  invalidatePrefixes(prefixes: readonly string[]): void {
    for (const [key, flight] of this.#map) {
      if (!startsWithAny(key, prefixes)) continue;
      flight.invalidated = true;
      this.#map.delete(key);
    }
  }

  get size(): number {
    return this.#map.size;
  }
}
