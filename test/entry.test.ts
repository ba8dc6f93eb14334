/**
 * The entry envelope's header: every field survives a round trip, times as base 36 (written and
 * read without `toString(36)`/`parseInt` on the hot paths), and a malformed header is corrupt.
 */
import { describe, expect, it } from 'vitest';
import { CorruptEntry, EntryCodec, type Entry, type EntryHeader } from '../src/core/entry.js';
import { jsonSerializer } from '../src/serializers/json.js';

const codec = new EntryCodec(jsonSerializer, undefined);

function header(overrides: Partial<EntryHeader> = {}): Omit<EntryHeader, 'codec'> {
  const now = Date.now();
  return {
    kind: 'v',
    id: 'abc.1',
    createdAt: now,
    freshUntil: now + 60_000,
    staleUntil: now + 120_000,
    loadMs: 12,
    tags: undefined,
    ...overrides,
  };
}

function roundTrip(h: Omit<EntryHeader, 'codec'>): Entry {
  const decoded = codec.decode(codec.encode(h, { n: 1 }));
  if (decoded instanceof CorruptEntry) throw new Error(`corrupt: ${decoded.reason}`);
  return decoded;
}

describe('entry header', () => {
  it('writes times in base 36, as toString(36) would', () => {
    for (const ms of [0, 1, 35, 36, 36 ** 4 - 1, 36 ** 4, 36 ** 4 + 1, Date.now(), 2 ** 53 - 1]) {
      const wire = codec.encode(header({ createdAt: ms }), null) as string;
      expect(wire.split(',')[2]).toBe(ms.toString(36));
    }
  });

  it('reads back every field, Infinity and sub-millisecond times included', () => {
    const times = [0, 1, 36 ** 4, Date.now(), 2 ** 53 - 1];
    for (const ms of times) {
      const back = roundTrip(header({ createdAt: ms, freshUntil: ms, staleUntil: ms }));
      expect([back.createdAt, back.freshUntil, back.staleUntil]).toEqual([ms, ms, ms]);
    }
    const forever = roundTrip(header({ freshUntil: Infinity, staleUntil: Infinity }));
    expect([forever.freshUntil, forever.staleUntil]).toEqual([Infinity, Infinity]);
    expect(roundTrip(header({ createdAt: 1_700_000_000_000.6 })).createdAt).toBe(1_700_000_000_001);
    const tagged = roundTrip(header({ tags: [['users', '1700000000000.3']] }));
    expect(tagged.tags).toEqual([['users', '1700000000000.3']]);
    expect(tagged.value).toEqual({ n: 1 });
  });

  it('reads negative times (a clock stepped back, a manual clock before 1970)', () => {
    expect(roundTrip(header({ loadMs: -3 })).loadMs).toBe(-3);
    const back = roundTrip(header({ createdAt: -5_000, freshUntil: -1, staleUntil: 36 ** 5 }));
    expect([back.createdAt, back.freshUntil, back.staleUntil]).toEqual([-5_000, -1, 36 ** 5]);
  });

  it('writes what toString(36) writes past 2^53 too, and a NaN time makes the entry corrupt', () => {
    for (const ms of [2 ** 53, 2 ** 62, 1e21, 1e24]) {
      const wire = codec.encode(header({ createdAt: ms }), null) as string;
      expect(wire.split(',')[2]).toBe(ms.toString(36));
    }
    expect(codec.decode(codec.encode(header({ freshUntil: Number.NaN }), 1))).toBeInstanceOf(CorruptEntry);
  });

  it('treats a header whose numbers are not base 36 as corrupt', () => {
    const good = codec.encode(header(), 1) as string;
    const fields = good.split(',');
    for (const [index, bad] of [
      [2, '1z!'],
      [2, 'A1'],
      [2, '-'],
      [3, ' 12'],
      [5, ''],
    ] as const) {
      const broken = fields.slice();
      broken[index] = bad;
      const decoded = codec.decode(broken.join(','));
      expect(decoded, `${index}: ${bad}`).toBeInstanceOf(CorruptEntry);
    }
  });
});
