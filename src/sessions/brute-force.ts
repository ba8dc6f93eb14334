/**
 * Counts invalid-token attempts per client IP and wrong secrets per session id, in fixed
 * windows, and says when a subject reaches the threshold (once per window). Bounded: at most
 * `MAX_SUBJECTS` subjects are tracked, the least recently seen dropped first.
 *
 * Counts are per process; feed the `invalid` events to a shared rate limiter for fleet-wide
 * limits.
 *
 * @module
 */
import { LRUCache } from 'lru-cache';
import type { Clock } from '../core/clock.js';

const MAX_SUBJECTS = 10_000;

interface Counter {
  start: number;
  count: number;
}

export class AttemptCounter {
  readonly #threshold: number;
  readonly #windowMs: number;
  readonly #clock: Clock;
  readonly #counters = new LRUCache<string, Counter>({ max: MAX_SUBJECTS });

  constructor(threshold: number, windowMs: number, clock: Clock) {
    this.#threshold = threshold;
    this.#windowMs = windowMs;
    this.#clock = clock;
  }

  /** Counts one attempt; returns the count when it just reached the threshold, else `undefined`. */
  hit(subject: string): number | undefined {
    const now = this.#clock.now();
    let counter = this.#counters.get(subject);
    if (counter === undefined || now - counter.start >= this.#windowMs) {
      counter = { start: now, count: 0 };
      this.#counters.set(subject, counter);
    }
    counter.count++;
    return counter.count === this.#threshold ? counter.count : undefined;
  }
}
