/**
 * Session data: a plain object whose top-level keys are stored one per field (so concurrent
 * writes of different keys both survive), each value as JSON.
 *
 * Writes refuse what could hurt later: non-JSON values (functions, `BigInt`, cycles), keys that
 * pollute prototypes (`__proto__`, `constructor`, `prototype`, at any depth), too many keys, too
 * many bytes, and anything the schema rejects. Reads parse with the same key filter, so a record
 * planted in the store cannot pollute either.
 *
 * @module
 */
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { SessionDataError } from '../errors.js';

const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype']);
export const MAX_KEY_LENGTH = 128;

export interface DataLimits {
  readonly maxBytes: number;
  readonly maxKeys: number;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Throws when a key anywhere in `value` could pollute a prototype once merged. */
function checkKeys(value: unknown, path: string[]): void {
  const stack: { value: unknown; path: string[] }[] = [{ value, path }];
  const seen = new Set<object>();
  while (stack.length > 0) {
    const item = stack.pop()!;
    if (typeof item.value !== 'object' || item.value === null) continue;
    if (seen.has(item.value)) throw new SessionDataError('Session data must be JSON: it contains a cycle');
    seen.add(item.value);
    for (const key of Object.keys(item.value)) {
      if (FORBIDDEN.has(key)) {
        throw new SessionDataError(`Session data may not use the key ${JSON.stringify(key)}`, [
          { message: 'prototype-polluting key', path: [...item.path, key] },
        ]);
      }
      stack.push({ value: (item.value as Record<string, unknown>)[key], path: [...item.path, key] });
    }
  }
}

function encodeValue(key: string, value: unknown): string {
  checkKeys(value, [key]);
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new SessionDataError(`Session data key ${JSON.stringify(key)} is not JSON-serializable`, [], { cause: error });
  }
  if (json === undefined) {
    throw new SessionDataError(`Session data key ${JSON.stringify(key)} is not JSON-serializable`);
  }
  return json;
}

export function checkKey(key: string): void {
  if (key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw new SessionDataError(`Session data keys must be 1-${MAX_KEY_LENGTH} characters`);
  }
  if (FORBIDDEN.has(key)) {
    throw new SessionDataError(`Session data may not use the key ${JSON.stringify(key)}`, [
      { message: 'prototype-polluting key', path: [key] },
    ]);
  }
}

/** Size of a data map as the store counts it: UTF-8 bytes of every key and JSON value. */
export function dataSize(fields: ReadonlyMap<string, string>): number {
  let total = 0;
  for (const [key, json] of fields) total += Buffer.byteLength(key, 'utf8') + Buffer.byteLength(json, 'utf8');
  return total;
}

export function checkLimits(fields: ReadonlyMap<string, string>, limits: DataLimits): void {
  if (fields.size > limits.maxKeys) {
    throw new SessionDataError(`Session data has ${fields.size} keys; the limit is ${limits.maxKeys}`);
  }
  const size = dataSize(fields);
  if (size > limits.maxBytes) {
    throw new SessionDataError(`Session data is ${size} bytes; the limit is ${limits.maxBytes}`);
  }
}

/** Encodes a whole data object: key → JSON. Keys whose value is `undefined` are left out. */
export function encodeData(data: unknown, limits: DataLimits): Map<string, string> {
  if (!isPlainObject(data)) throw new SessionDataError('Session data must be a plain object');
  const fields = new Map<string, string>();
  for (const key of Object.keys(data)) {
    checkKey(key);
    const value = data[key];
    if (value === undefined) continue;
    fields.set(key, encodeValue(key, value));
  }
  checkLimits(fields, limits);
  return fields;
}

function reviver(key: string, value: unknown): unknown {
  return FORBIDDEN.has(key) ? undefined : value;
}

/** Decodes stored fields; unreadable values and polluting keys are dropped, never thrown. */
export function decodeData(fields: ReadonlyMap<string, string>): Record<string, unknown> {
  const data: Record<string, unknown> = {};
  for (const [key, json] of fields) {
    if (FORBIDDEN.has(key)) continue;
    try {
      data[key] = JSON.parse(json, reviver);
    } catch {
      // A damaged value reads as absent.
    }
  }
  return data;
}

/** Runs the schema (sync or async); returns its output or throws a `SessionDataError`. */
export async function checkSchema<D>(schema: StandardSchemaV1<unknown, D> | undefined, value: unknown): Promise<D> {
  if (schema === undefined) return value as D;
  let result = schema['~standard'].validate(value);
  if (result instanceof Promise) result = await result;
  if (result.issues === undefined) return result.value;
  const issues = result.issues.map((issue) => ({
    message: issue.message,
    path: issue.path?.map((segment) => (typeof segment === 'object' ? segment.key : segment)),
  }));
  throw new SessionDataError(`Session data does not fit the schema: ${issues[0]?.message ?? 'invalid'}`, issues);
}

/** Fields to write and delete to go from `before` to `after` (unchanged keys are not written). */
export function diffData(
  before: ReadonlyMap<string, string>,
  after: ReadonlyMap<string, string>,
): { set: Map<string, string>; remove: string[] } {
  const set = new Map<string, string>();
  for (const [key, json] of after) if (before.get(key) !== json) set.set(key, json);
  const remove = [...before.keys()].filter((key) => !after.has(key));
  return { set, remove };
}
