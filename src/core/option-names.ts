/**
 * Refusing misspelt option names: `{ tll: 5 }` would otherwise run on the defaults, silently.
 * Each list of names is a `Record` of its options type's keys, so it cannot drift from the type.
 *
 * @module
 */
import { InvalidOptionError } from '../errors.js';

/** A name → `true` record without a prototype (a lookup is cheaper than `Set.has`, measured). */
export type OptionNames = Readonly<Record<string, true | undefined>>;

/** The names of `O`'s options; TypeScript requires every key of `O`, and no other. */
export function optionNames<O>(names: Record<keyof O & string, true>): OptionNames {
  return Object.freeze(Object.assign(Object.create(null) as OptionNames, names));
}

/**
 * Throws `InvalidOptionError` for an own property `names` does not hold (named `within.name`
 * inside an option's object). Inherited enumerable properties (a polyfill on `Object.prototype`)
 * are not the caller's options; they are checked only when the name is unknown, off the fast path.
 */
export function checkOptionNames(options: object, names: OptionNames, within?: string): void {
  for (const name in options) {
    if (names[name] !== true && Object.hasOwn(options, name)) {
      throw new InvalidOptionError(within === undefined ? name : `${within}.${name}`, 'unknown option');
    }
  }
}
