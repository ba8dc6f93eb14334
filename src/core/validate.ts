/** Standard Schema validation (zod, valibot, arktype, …), sync or async. */
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { ValidationError } from '../errors.js';

export type SchemaResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ValidationError };

function toResult<T>(result: StandardSchemaV1.Result<T>, key: string): SchemaResult<T> {
  if (result.issues === undefined) return { ok: true, value: result.value };
  const issues = result.issues.map((issue) => ({
    message: issue.message,
    path: issue.path?.map((segment) => (typeof segment === 'object' ? segment.key : segment)),
  }));
  const first = issues[0]?.message ?? 'invalid value';
  return { ok: false, error: new ValidationError(`The value does not fit the schema: ${first}`, issues, { key }) };
}

/** Validates `value`; returns the schema's output (schemas may transform) or a `ValidationError`. */
export function validate<T>(
  schema: StandardSchemaV1<unknown, T>,
  value: unknown,
  key: string,
): SchemaResult<T> | Promise<SchemaResult<T>> {
  const result = schema['~standard'].validate(value);
  return result instanceof Promise ? result.then((r) => toResult(r, key)) : toResult(result, key);
}
