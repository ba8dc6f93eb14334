/** The payload a serializer produces: text for text formats, bytes for binary ones. */
export type Payload = string | Uint8Array;

/**
 * Turns values into payloads and back. Larder writes `name` into every entry, so an entry
 * written by another serializer (or another version of this one) reads as a miss, never as
 * garbage.
 */
export interface Serializer {
  /** Stable identifier, 1-32 characters from `[A-Za-z0-9_.-]`. Change it when the format changes. */
  readonly name: string;
  /** `true` when `serialize` returns bytes; Larder then reads entries from Redis as Buffers. */
  readonly binary: boolean;
  /** Throws on values the format cannot represent; Larder wraps that in a `SerializationError`. */
  serialize(value: unknown): Payload;
  /** Throws on payloads it cannot read; Larder then treats the entry as corrupt (a miss). */
  deserialize(payload: Payload): unknown;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** UTF-8 text of a payload (bytes are decoded strictly: invalid UTF-8 throws). */
export function payloadText(payload: Payload): string {
  return typeof payload === 'string' ? payload : decoder.decode(payload);
}
