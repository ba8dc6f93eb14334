/**
 * Every duration in Larder is a number of milliseconds. What `0`, `undefined` and `Infinity`
 * mean is said once per option in its JSDoc; this module only checks the number is one the
 * option accepts, so a typo fails loudly at the call instead of caching forever.
 */
import { InvalidOptionError } from '../errors.js';

export interface DurationRule {
  /** `Infinity` is accepted (meaning "never"). */
  infinity?: boolean;
  /** `0` is accepted. */
  zero?: boolean;
}

/** Returns `value` when it is a duration the option accepts, else throws {@link InvalidOptionError}. */
export function checkDuration(option: string, value: unknown, rule: DurationRule = {}): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new InvalidOptionError(option, `expected a number of milliseconds, got ${describe(value)}`);
  }
  if (value === Infinity) {
    if (rule.infinity === true) return value;
    throw new InvalidOptionError(option, 'Infinity is not allowed here');
  }
  if (!Number.isFinite(value) || value < 0) {
    throw new InvalidOptionError(option, `expected a non-negative number of milliseconds, got ${value}`);
  }
  if (value === 0 && rule.zero === false) {
    throw new InvalidOptionError(option, 'expected more than 0 ms');
  }
  return value;
}

/** `checkDuration` for an optional option: `undefined` gives `fallback`. */
export function optionalDuration(option: string, value: unknown, fallback: number, rule?: DurationRule): number {
  return value === undefined ? fallback : checkDuration(option, value, rule);
}

/** Checks a ratio in [0, 1]. */
export function checkRatio(option: string, value: unknown): number {
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    throw new InvalidOptionError(option, `expected a number between 0 and 1, got ${describe(value)}`);
  }
  return value;
}

/** Checks a positive integer (counts, sizes). */
export function checkCount(option: string, value: unknown, { min = 1 }: { min?: number } = {}): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new InvalidOptionError(option, `expected an integer >= ${min}, got ${describe(value)}`);
  }
  return value;
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return typeof value;
}
