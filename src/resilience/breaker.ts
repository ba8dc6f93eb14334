/**
 * A circuit breaker for the store connection.
 *
 * After `failureThreshold` consecutive availability failures (timeouts, lost connections) it
 * opens: Larder sends nothing to the store and callers fall back (to the loader, to the memory
 * tier) at once instead of each waiting for a timeout. After `cooldown` the next command is let
 * through as a probe (half-open): success closes the breaker, failure reopens it with the
 * cooldown doubled up to `maxCooldown`. So while the store is down, at most one command per
 * cooldown reaches it, and recovery needs no restart.
 */
import { systemClock, type Clock } from '../core/clock.js';
import { checkCount, checkDuration } from '../core/durations.js';

export interface BreakerOptions {
  /**
   * Consecutive failures that open the breaker.
   * @default 5
   */
  failureThreshold?: number;
  /**
   * How long the breaker stays open before letting a probe through, in ms.
   * @default 1_000
   */
  cooldown?: number;
  /**
   * Upper bound for the cooldown, which doubles after each failed probe, in ms.
   * @default 30_000
   */
  maxCooldown?: number;
}

export type BreakerState = 'closed' | 'open' | 'half-open';

export class CircuitBreaker {
  readonly #threshold: number;
  readonly #baseCooldown: number;
  readonly #maxCooldown: number;
  readonly #clock: Clock;
  readonly #onChange: (state: BreakerState) => void;
  #state: BreakerState = 'closed';
  #failures = 0;
  #cooldown: number;
  #openUntil = 0;
  #opens = 0;

  constructor(options: BreakerOptions, onChange: (state: BreakerState) => void, clock: Clock = systemClock) {
    this.#threshold =
      options.failureThreshold === undefined ? 5 : checkCount('breaker.failureThreshold', options.failureThreshold);
    this.#baseCooldown =
      options.cooldown === undefined ? 1_000 : checkDuration('breaker.cooldown', options.cooldown, { zero: false });
    this.#maxCooldown =
      options.maxCooldown === undefined
        ? Math.max(30_000, this.#baseCooldown)
        : checkDuration('breaker.maxCooldown', options.maxCooldown, { zero: false });
    this.#cooldown = this.#baseCooldown;
    this.#clock = clock;
    this.#onChange = onChange;
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** How many times the breaker opened. */
  get opens(): number {
    return this.#opens;
  }

  /**
   * May a command be sent now? In half-open state only the single probe may — or a new one, if
   * the last probe has not answered within a cooldown (a probe that never settles must not keep
   * the breaker half-open forever).
   */
  allow(): boolean {
    if (this.#state === 'closed') return true;
    const now = this.#clock.now();
    if (now < this.#openUntil) return false;
    this.#openUntil = now + this.#cooldown;
    this.#set('half-open');
    return true;
  }

  success(): void {
    // A late answer to a command sent before the breaker opened proves little: only the probe
    // (half-open) may close it.
    if (this.#state === 'open') return;
    this.#failures = 0;
    if (this.#state !== 'closed') {
      this.#cooldown = this.#baseCooldown;
      this.#set('closed');
    }
  }

  failure(): void {
    if (this.#state === 'half-open') {
      this.#cooldown = Math.min(this.#cooldown * 2, this.#maxCooldown);
      this.#open();
    } else if (this.#state === 'closed' && ++this.#failures >= this.#threshold) {
      this.#open();
    }
  }

  #open(): void {
    this.#failures = 0;
    this.#openUntil = this.#clock.now() + this.#cooldown;
    this.#opens++;
    this.#set('open');
  }

  #set(state: BreakerState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#onChange(state);
  }
}
