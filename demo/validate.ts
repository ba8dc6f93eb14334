/**
 * Input checks for every route: path ids, the `ids` list, query parameters and JSON bodies. Each
 * failure is an {@link HttpError} with a message saying what was expected; the app answers it as
 * `{ "error": "bad_request", "message": ... }` with status 400, never as a 500.
 */

export class HttpError extends Error {
  override readonly name = 'HttpError';
  readonly status: 400 | 401 | 404 | 413;
  readonly code: string;

  constructor(status: HttpError['status'], code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const badRequest = (message: string): HttpError => new HttpError(400, 'bad_request', message);

/** Largest id a Postgres `integer` holds. */
const MAX_ID = 2_147_483_647;
/** Most ids in one bulk request. */
export const MAX_BULK_IDS = 100;

const ID = /^[1-9]\d{0,9}$/;

/** A positive `integer` id, from a path segment or a list item. */
export function parseId(raw: string | undefined, what = 'id'): number {
  if (raw === undefined || !ID.test(raw) || Number(raw) > MAX_ID) {
    throw badRequest(`${what} must be a positive integer up to ${MAX_ID}, got ${JSON.stringify(raw ?? '')}`);
  }
  return Number(raw);
}

/** `ids=1,2,3`: 1 to {@link MAX_BULK_IDS} ids, duplicates removed, order kept. */
export function parseIds(raw: string | undefined): number[] {
  if (raw === undefined || raw === '') throw badRequest('ids is required: /products?ids=1,2,3');
  const parts = raw.split(',');
  if (parts.length > MAX_BULK_IDS) throw badRequest(`ids takes at most ${MAX_BULK_IDS} ids, got ${parts.length}`);
  return [...new Set(parts.map((part) => parseId(part.trim(), 'each id in ids')))];
}

/** Refuses query parameters the route does not take, and repeated ones. */
export function checkQuery(url: string, allowed: readonly string[]): URLSearchParams {
  const params = new URL(url).searchParams;
  const seen = new Set<string>();
  for (const name of params.keys()) {
    if (!allowed.includes(name)) {
      throw badRequest(
        allowed.length === 0
          ? `this route takes no query parameters, got ${JSON.stringify(name)}`
          : `unknown query parameter ${JSON.stringify(name)} (expected: ${allowed.join(', ')})`,
      );
    }
    if (seen.has(name)) throw badRequest(`query parameter ${JSON.stringify(name)} is repeated`);
    seen.add(name);
  }
  return params;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A UTF-16 surrogate without its other half: JSON's `"\ud800"` decodes to one. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Refuses text Postgres cannot store, or would store as something else: a NUL character (a
 * `text` column cannot hold U+0000) and a lone surrogate (not a character: encoding it to UTF-8
 * turns it into U+FFFD, so two different inputs would become the same).
 */
export function checkText(value: string, what: string): void {
  if (value.includes('\u0000')) throw badRequest(`${what} must not contain the NUL character (U+0000)`);
  const surrogate = LONE_SURROGATE.exec(value);
  if (surrogate !== null) {
    const code = surrogate[0].charCodeAt(0).toString(16).toUpperCase();
    throw badRequest(`${what} must be valid Unicode text: it contains a lone surrogate (\\u${code}), which is not a character`);
  }
}

/** Every string in a parsed JSON value, keys included, through {@link checkText}. */
function checkStrings(value: unknown, path: string): void {
  if (typeof value === 'string') checkText(value, path);
  else if (Array.isArray(value)) value.forEach((item, i) => checkStrings(item, `${path}[${i}]`));
  else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      checkText(key, `a field name in ${path}`);
      checkStrings(item, path === 'the body' ? key : `${path}.${key}`);
    }
  }
}

/**
 * Parses a JSON object body from its raw bytes: they must be UTF-8 (a decoder would otherwise
 * turn bad bytes into U+FFFD silently), and no string in it may hold a NUL or a lone surrogate.
 */
export function parseJsonObject(contentType: string | undefined, bytes: ArrayBuffer | Uint8Array): Record<string, unknown> {
  if (contentType === undefined || !/^application\/json\s*(;|$)/i.test(contentType)) {
    throw badRequest('send a JSON body with Content-Type: application/json');
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw badRequest('the body is not valid UTF-8');
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw badRequest('the body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('the body must be a JSON object');
  checkStrings(body, 'the body');
  return body as Record<string, unknown>;
}

function onlyFields(body: Record<string, unknown>, fields: readonly string[]): void {
  for (const name of Object.keys(body)) {
    if (!fields.includes(name)) throw badRequest(`unknown field ${JSON.stringify(name)} (expected: ${fields.join(', ')})`);
  }
}

export interface Credentials {
  readonly email: string;
  readonly password: string;
}

export function parseCredentials(body: Record<string, unknown>): Credentials {
  onlyFields(body, ['email', 'password']);
  const { email, password } = body;
  if (typeof email !== 'string' || email.length > 254 || !/^[^\s@]+@[^\s@]+$/.test(email)) {
    throw badRequest('email must be an email address (at most 254 characters)');
  }
  if (typeof password !== 'string' || password.length === 0 || password.length > 1024) {
    throw badRequest('password must be a non-empty string (at most 1024 characters)');
  }
  return { email: email.toLowerCase(), password };
}

export interface ProductPatch {
  readonly name?: string;
  readonly price?: number;
  readonly stock?: number;
}

export function parseProductPatch(body: Record<string, unknown>): ProductPatch {
  onlyFields(body, ['name', 'price', 'stock']);
  const patch: { name?: string; price?: number; stock?: number } = {};
  if (body.name !== undefined) {
    if (typeof body.name !== 'string' || body.name.trim().length === 0 || body.name.length > 200) {
      throw badRequest('name must be a non-empty string of at most 200 characters');
    }
    patch.name = body.name.trim();
  }
  if (body.price !== undefined) {
    const price = body.price;
    if (typeof price !== 'number' || !Number.isFinite(price) || price < 0 || price > 99_999_999.99) {
      throw badRequest('price must be a number from 0 to 99999999.99');
    }
    if (Math.abs(Math.round(price * 100) - price * 100) > 1e-6) throw badRequest('price takes at most 2 decimal places');
    patch.price = price;
  }
  if (body.stock !== undefined) {
    if (typeof body.stock !== 'number' || !Number.isInteger(body.stock) || body.stock < 0 || body.stock > MAX_ID) {
      throw badRequest(`stock must be an integer from 0 to ${MAX_ID}`);
    }
    patch.stock = body.stock;
  }
  if (Object.keys(patch).length === 0) throw badRequest('send at least one of: name, price, stock');
  return patch;
}
