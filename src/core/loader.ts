/**
 * Running a loader: its context, its hard timeout, and the soft-timeout race against a stale
 * value. Timers exist only while a load runs and are cleared when it settles, so a loader that
 * never settles leaves nothing behind once its timeout fired.
 */
import { LoaderTimeoutError } from '../errors.js';

/**
 * What a load can be cancelled through. The `AbortController` behind it is created on first use:
 * most loaders never look at their signal, and creating one costs more than a cache hit.
 */
export class Abortable {
  #controller: AbortController | undefined;

  get signal(): AbortSignal {
    return (this.#controller ??= new AbortController()).signal;
  }

  abort(reason: unknown): void {
    (this.#controller ??= new AbortController()).abort(reason);
  }
}

/** The context a loader receives; `signal` is created only if the loader reads it. */
class Call<T> implements LoaderContext<T> {
  readonly key: string;
  readonly stale: T | undefined;
  readonly background: boolean;
  readonly #abortable: Abortable;

  constructor(abortable: Abortable, context: Omit<LoaderContext<T>, 'signal'>) {
    this.#abortable = abortable;
    this.key = context.key;
    this.stale = context.stale;
    this.background = context.background;
  }

  get signal(): AbortSignal {
    return this.#abortable.signal;
  }
}

/** What a loader receives. */
export interface LoaderContext<T> {
  /** The key as the caller gave it (without namespace). */
  readonly key: string;
  /**
   * Aborted when every caller waiting for this load has gone, or when the hard timeout fires.
   * Pass it to your database driver or `fetch` so abandoned work stops.
   */
  readonly signal: AbortSignal;
  /** The stale value being refreshed, when there is one. */
  readonly stale: T | undefined;
  /** The load runs in the background: nobody waits for its result. */
  readonly background: boolean;
}

/** Loads the value of a key; return `undefined` for "not found" (cached with `negativeTtl`). */
export type Loader<T> = (context: LoaderContext<T>) => T | Promise<T>;

/**
 * A loader whose return type gives the value's type. Its context's `stale` is `unknown`: a
 * context typed by the value could not also let TypeScript infer the value from the loader.
 */
export type InferringLoader = (context: LoaderContext<unknown>) => unknown;

/** The value an {@link InferringLoader} resolves to. */
export type LoaderValue<L extends InferringLoader> = Awaited<ReturnType<L>>;

/**
 * Calls `loader` with `abortable`'s signal, aborting it and rejecting after `hardTimeout` ms.
 * Without a hard timeout it returns what the loader returned (a value or a promise) and throws
 * what it throws: the caller awaits only when it must.
 */
export function runLoader<T>(
  loader: Loader<T>,
  abortable: Abortable,
  key: string,
  context: Omit<LoaderContext<T>, 'signal'>,
  hardTimeout: number,
): T | Promise<T> {
  if (hardTimeout === Infinity) return loader(new Call(abortable, context));
  let result: Promise<T>;
  try {
    result = Promise.resolve(loader(new Call(abortable, context)));
  } catch (error) {
    return Promise.reject(error);
  }
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      const error = new LoaderTimeoutError(hardTimeout, { key });
      abortable.abort(error);
      reject(error);
    }, hardTimeout);
    result.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** What {@link softTimeout} answers when the load is still running. */
export const TIMED_OUT: unique symbol = Symbol('timed out');

/**
 * Waits for `load` at most `ms`: its value, or {@link TIMED_OUT}. `load` keeps running either
 * way. `0` returns at once, `Infinity` waits for good.
 */
export function softTimeout<T>(load: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  if (ms === Infinity) return load;
  if (ms === 0) return Promise.resolve(TIMED_OUT);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(TIMED_OUT), ms);
    load.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
