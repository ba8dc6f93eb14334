/** Synthetic access traces for comparing eviction policies. Deterministic (seeded). */

/** A small, fast, seedable PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `length` keys drawn from a Zipf(`s`) distribution over `keys` keys (key 0 is the hottest). */
export function zipfTrace(length: number, keys: number, s: number, seed = 1): Uint32Array {
  const cdf = new Float64Array(keys);
  let sum = 0;
  for (let k = 0; k < keys; k++) cdf[k] = sum += 1 / (k + 1) ** s;
  for (let k = 0; k < keys; k++) cdf[k]! /= sum;
  const random = rng(seed);
  const trace = new Uint32Array(length);
  for (let i = 0; i < length; i++) {
    const u = random();
    let lo = 0;
    let hi = keys - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    // Shuffle ranks into key ids so hotness is not correlated with id order.
    trace[i] = Math.imul(lo, 2654435761) >>> 0;
  }
  return trace;
}

/**
 * A Zipf workload interrupted by scans: every `every` requests, a sequential scan of `scan`
 * keys that are never read otherwise (a report, a batch job, a crawler).
 */
export function scanTrace(length: number, keys: number, s: number, scan: number, every: number, seed = 2): Uint32Array {
  const base = zipfTrace(length, keys, s, seed);
  const trace = new Uint32Array(length);
  let next = 0;
  let scanned = 0;
  for (let i = 0; i < length; i++) {
    if (i % every < scan) trace[i] = 0x80000000 + (scanned++ % (scan * 16));
    else trace[i] = base[next++]!;
  }
  return trace;
}
