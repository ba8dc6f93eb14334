/** Where Larder reads the time. Inject one in tests to move time without sleeping. */
export interface Clock {
  /** Milliseconds since the epoch. Entries are shared across processes, so this is wall time. */
  now(): number;
}

export const systemClock: Clock = Object.freeze({ now: () => Date.now() });
