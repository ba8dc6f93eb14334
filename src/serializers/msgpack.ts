import { Packr } from 'msgpackr';
import type { Payload, Serializer } from './serializer.js';

/**
 * MessagePack through msgpackr: smaller than JSON, and keeps `Date`, `Set`, `BigInt`, `Error`,
 * typed arrays and `undefined` inside objects (msgpackr's `moreTypes`). Cyclic structures are
 * not supported.
 *
 * A `Map` comes back as a plain object: a MessagePack map is a map, and telling the two apart
 * needs msgpackr "records", which keep structure definitions in process state that a cache
 * shared by several processes cannot rely on. Records are therefore off.
 */
export function msgpackSerializer(): Serializer {
  const packr = new Packr({ useRecords: false, moreTypes: true, int64AsType: 'bigint' });
  return Object.freeze({
    name: 'msgpack',
    binary: true,
    serialize: (value: unknown): Uint8Array => packr.pack(value),
    deserialize: (payload: Payload): unknown =>
      packr.unpack(typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload),
  });
}
