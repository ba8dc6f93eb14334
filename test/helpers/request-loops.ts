/** Requests kept flowing through caches while a test breaks what is under them. */
import type { Cache } from '../../src/index.js';

/** What the loops count for one cache. */
export interface LoopTarget {
  readonly cache: Cache;
  requests: number;
  /** Every rejection a caller saw. */
  failures: unknown[];
  /** Answers that were not the key's value. */
  wrong: number;
}

export interface RequestLoopOptions {
  /** Loops per target. Default 8. */
  readonly perTarget?: number;
  /** Every n-th request of a loop is a `getOrSetMany`. Default 5. */
  readonly batchEvery?: number;
  /** Keys per `getOrSetMany`. Default 10. */
  readonly batchSize?: number;
}

/**
 * Starts loops of `getOrSet` and `getOrSetMany` over `keys` on each target until `stop()`, which
 * resolves once every loop has ended. Each loop waits 2 ms between requests so the loops do not
 * starve the process (2 cores shared with the Redis servers).
 */
export function startRequestLoops(
  targets: readonly LoopTarget[],
  keys: readonly string[],
  valueOf: (key: string) => string,
  { perTarget = 8, batchEvery = 5, batchSize = 10 }: RequestLoopOptions = {},
): { stop(): Promise<void> } {
  // An object, so the loops see the change stop() makes.
  const state = { stopped: false };
  const loops = targets.flatMap((target) =>
    Array.from({ length: perTarget }, async (_loop, worker) => {
      for (let i = 0; !state.stopped; i++) {
        target.requests++;
        try {
          if ((worker + i) % batchEvery === 0) {
            const some = Array.from({ length: batchSize }, (_, j) => keys[(worker * 31 + i * 7 + j * 13) % keys.length]!);
            const values = await target.cache.getOrSetMany(some, (missing) => missing.map(valueOf));
            if (values.some((v, j) => v !== valueOf(some[j]!))) target.wrong++;
          } else {
            const key = keys[(worker * 17 + i * 11) % keys.length]!;
            if ((await target.cache.getOrSet(key, () => valueOf(key))) !== valueOf(key)) target.wrong++;
          }
        } catch (error) {
          target.failures.push(error);
        }
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    }),
  );
  return {
    async stop() {
      state.stopped = true;
      await Promise.all(loops);
    },
  };
}
