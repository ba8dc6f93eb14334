import { describe, expect, it } from 'vitest';
import { FrequencySketch, hashKey } from '../src/tiers/sketch.js';
import { MemoryTier, type EvictionPolicy } from '../src/tiers/memory-tier.js';

describe.each<EvictionPolicy>(['tinylfu', 'lru'])('memory tier (%s)', (policy) => {
  const tier = (maxEntries: number, maxBytes = 1e12) => new MemoryTier<string>({ maxEntries, maxBytes, policy });

  it('stores, reads, updates and deletes', () => {
    const t = tier(10);
    t.set('a', 'A', 10, Infinity);
    expect(t.get('a', 0)).toBe('A');
    t.set('a', 'A2', 20, Infinity);
    expect(t.get('a', 0)).toBe('A2');
    expect(t.bytes).toBe(20);
    expect(t.delete('a')).toBe(true);
    expect(t.get('a', 0)).toBeUndefined();
    expect(t.size).toBe(0);
    expect(t.bytes).toBe(0);
  });

  it('never holds more than maxEntries', () => {
    const t = tier(100);
    for (let i = 0; i < 10_000; i++) {
      t.set(`k${i}`, 'v', 1, Infinity);
      t.get(`k${i % 7}`, 0);
    }
    expect(t.size).toBe(100);
    expect(t.evictions).toBe(9_900);
  });

  it('never holds more than maxBytes, and skips an entry larger than the bound', () => {
    const t = tier(1_000_000, 10_000);
    for (let i = 0; i < 5_000; i++) t.set(`k${i}`, 'v', 100 + (i % 50), Infinity);
    expect(t.bytes).toBeLessThanOrEqual(10_000);
    t.set('huge', 'v', 20_000, Infinity);
    expect(t.get('huge', 0)).toBeUndefined();
    expect(t.bytes).toBeLessThanOrEqual(10_000);
  });

  it('drops expired entries when read, and by prefix', () => {
    const t = tier(10);
    t.set('ns:a', 'A', 1, 100);
    t.set('ns:b', 'B', 1, Infinity);
    t.set('other', 'O', 1, Infinity);
    expect(t.get('ns:a', 99)).toBe('A');
    expect(t.get('ns:a', 100)).toBeUndefined();
    t.deletePrefixes(['ns:']);
    expect(t.get('ns:b', 0)).toBeUndefined();
    expect(t.get('other', 0)).toBe('O');
    t.clear();
    expect(t.size).toBe(0);
  });
});

describe('W-TinyLFU admission', () => {
  it('keeps a frequently used working set through a scan of one-off keys', () => {
    const run = (policy: EvictionPolicy) => {
      const t = new MemoryTier<number>({ maxEntries: 100, maxBytes: 1e12, policy });
      for (let round = 0; round < 20; round++)
        for (let i = 0; i < 80; i++) if (t.get(`hot${i}`, 0) === undefined) t.set(`hot${i}`, i, 1, Infinity);
      for (let i = 0; i < 10_000; i++) if (t.get(`scan${i}`, 0) === undefined) t.set(`scan${i}`, i, 1, Infinity);
      let kept = 0;
      for (let i = 0; i < 80; i++) if (t.get(`hot${i}`, 0) !== undefined) kept++;
      return kept;
    };
    expect(run('tinylfu')).toBeGreaterThanOrEqual(75);
    expect(run('lru')).toBe(0);
  });

  it('estimates frequencies and ages them', () => {
    const sketch = new FrequencySketch(16);
    const a = hashKey('a');
    const b = hashKey('b');
    for (let i = 0; i < 10; i++) sketch.increment(a);
    sketch.increment(b);
    expect(sketch.frequency(a)).toBeGreaterThanOrEqual(10);
    expect(sketch.frequency(b)).toBeGreaterThanOrEqual(1);
    expect(sketch.frequency(a)).toBeLessThanOrEqual(15);
    // 10 × capacity additions halve every counter.
    for (let i = 0; i < 200; i++) sketch.increment(hashKey(`other${i}`));
    expect(sketch.frequency(a)).toBeLessThan(10);
  });
});
