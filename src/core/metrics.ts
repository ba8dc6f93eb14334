/**
 * Latency histograms: fixed buckets in milliseconds, cheap enough to record on every operation
 * (a few comparisons and an increment), exported by `stats()` and the Prometheus/OpenTelemetry
 * integrations.
 */

/** Upper bounds of the buckets, in ms (the last bucket, beyond the final bound, is +Inf). */
export const LATENCY_BOUNDS_MS: readonly number[] = Object.freeze([
  0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000,
]);

export interface HistogramSnapshot {
  /** Upper bounds in ms, matching `counts` (plus one final +Inf bucket). */
  readonly bounds: readonly number[];
  /** Observations per bucket (not cumulative); `counts.length === bounds.length + 1`. */
  readonly counts: readonly number[];
  /** Sum of the observations, in ms. */
  readonly sum: number;
  readonly count: number;
}

/** Called with each observation a histogram records itself (not those a child forwards). */
export type HistogramTap = (ms: number) => void;

export class Histogram {
  readonly #counts = new Float64Array(LATENCY_BOUNDS_MS.length + 1);
  #sum = 0;
  #count = 0;
  /** A histogram that also counts every observation of this one (a namespace's cache totals). */
  readonly #parent: Histogram | undefined;
  readonly #tap: HistogramTap | undefined;

  constructor(parent?: Histogram, tap?: HistogramTap) {
    this.#parent = parent;
    this.#tap = tap;
  }

  record(ms: number): void {
    let i = 0;
    while (i < LATENCY_BOUNDS_MS.length && ms > LATENCY_BOUNDS_MS[i]!) i++;
    this.#counts[i]!++;
    this.#sum += ms;
    this.#count++;
    const parent = this.#parent;
    if (parent !== undefined) {
      parent.#counts[i]!++;
      parent.#sum += ms;
      parent.#count++;
    }
    this.#tap?.(ms);
  }

  snapshot(): HistogramSnapshot {
    return Object.freeze({
      bounds: LATENCY_BOUNDS_MS,
      counts: Object.freeze([...this.#counts]),
      sum: this.#sum,
      count: this.#count,
    });
  }
}
