import type { Payload, Serializer } from './serializer.js';
import { payloadText } from './serializer.js';

/**
 * JSON, the default: readable in `redis-cli`, and `JSON.parse` is the fastest decoder V8 has.
 * Dates come back as strings and `Map`/`Set`/`BigInt` are not supported; use
 * {@link msgpackSerializer} (or a custom serializer) for those.
 */
export const jsonSerializer: Serializer = Object.freeze({
  name: 'json',
  binary: false,
  serialize(value: unknown): string {
    const text = JSON.stringify(value);
    // JSON.stringify returns undefined for functions and symbols: refuse rather than store nothing.
    if (text === undefined) throw new TypeError(`JSON cannot represent a value of type ${typeof value}`);
    return text;
  },
  deserialize(payload: Payload): unknown {
    return JSON.parse(payloadText(payload));
  },
});
