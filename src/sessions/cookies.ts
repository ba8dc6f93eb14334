/**
 * The session cookie: safe defaults, start-up checks that refuse unsafe settings, the
 * `Set-Cookie` value, and a `Cookie` header reader that never throws and runs in linear time.
 *
 * Defaults: `__Host-sid=<token>; Max-Age=<remaining absolute lifetime>; Path=/; HttpOnly;
 * Secure; SameSite=Lax`, no `Domain`. Development mode (for http://localhost only) drops the
 * `__Host-` prefix and `Secure`, and is refused when `NODE_ENV` is `production`.
 *
 * @see docs/sessions.md
 * @module
 */
import { InvalidOptionError } from '../errors.js';

export interface CookieOptions {
  /**
   * Cookie name. Keep the `__Host-` prefix: the browser then only accepts the cookie from this
   * exact host, over HTTPS, with `Path=/` and no `Domain`, so a sibling subdomain cannot plant or
   * shadow it.
   * @default '__Host-sid' ('sid' in development mode)
   */
  name?: string;
  /**
   * `SameSite` attribute. `'none'` requires `secure`.
   * @default 'lax'
   */
  sameSite?: 'lax' | 'strict' | 'none';
  /**
   * `Secure` attribute. Only development mode may turn it off.
   * @default true (false in development mode)
   */
  secure?: boolean;
  /**
   * `Domain` attribute. Leave it unset (host-only): a domain shares the cookie with every
   * subdomain. Refused with a `__Host-` name.
   */
  domain?: string;
  /**
   * `Path` attribute. Must be `/` with a `__Host-` name.
   * @default '/'
   */
  path?: string;
  /** `Partitioned` attribute (CHIPS), for sessions inside third-party iframes. @default false */
  partitioned?: boolean;
  /** `Priority` attribute (Chromium). */
  priority?: 'low' | 'medium' | 'high';
}

export interface ResolvedCookie {
  readonly name: string;
  readonly sameSite: 'Lax' | 'Strict' | 'None';
  readonly secure: boolean;
  readonly domain: string | undefined;
  readonly path: string;
  readonly partitioned: boolean;
  readonly priority: 'Low' | 'Medium' | 'High' | undefined;
  /** Everything after the value and Max-Age, precomputed. */
  readonly attributes: string;
}

/** RFC 6265 cookie-name (an RFC 7230 token). */
const NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$/;
/** Domain and path values: printable ASCII without `;`, `,`, `=`, spaces or controls. */
const ATTRIBUTE = /^[!-+\--:<>-~]{1,256}$/;
/** Longest Max-Age browsers honour (RFC 6265bis): 400 days. */
export const MAX_COOKIE_AGE_S = 400 * 24 * 60 * 60;

let warnedDevelopment = false;

/** Resolves and checks the cookie settings; throws `InvalidOptionError` for any unsafe one. */
export function resolveCookie(options: CookieOptions = {}, development = false): ResolvedCookie {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('cookie', 'expected an object');
  if (development) {
    if (process.env.NODE_ENV === 'production') {
      throw new InvalidOptionError('development', 'development mode is refused when NODE_ENV is production');
    }
    if (!warnedDevelopment) {
      warnedDevelopment = true;
      process.emitWarning('Larder sessions run in development mode: the cookie is not Secure (http://localhost only)', {
        code: 'LARDER_SESSIONS_DEVELOPMENT',
      });
    }
  }
  const name = options.name ?? (development ? 'sid' : '__Host-sid');
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new InvalidOptionError('cookie.name', 'expected 1-64 token characters (no spaces, `;`, `=`, `,`, quotes or controls)');
  }
  const secure = options.secure ?? !development;
  if (typeof secure !== 'boolean') throw new InvalidOptionError('cookie.secure', 'expected a boolean');
  if (!secure && !development) {
    throw new InvalidOptionError('cookie.secure', 'a session cookie without Secure is refused outside development mode');
  }
  const sameSiteOption = options.sameSite ?? 'lax';
  const sameSite = ({ lax: 'Lax', strict: 'Strict', none: 'None' } as const)[sameSiteOption];
  if (sameSite === undefined) throw new InvalidOptionError('cookie.sameSite', "expected 'lax', 'strict' or 'none'");
  if (sameSite === 'None' && !secure) throw new InvalidOptionError('cookie.sameSite', 'SameSite=None requires Secure');
  const domain = options.domain;
  if (domain !== undefined && (typeof domain !== 'string' || !ATTRIBUTE.test(domain))) {
    throw new InvalidOptionError('cookie.domain', 'expected a domain without `;`, `,`, `=`, spaces or control characters');
  }
  const path = options.path ?? '/';
  if (typeof path !== 'string' || !ATTRIBUTE.test(path) || !path.startsWith('/')) {
    throw new InvalidOptionError(
      'cookie.path',
      'expected a path starting with `/`, without `;`, `,`, `=`, spaces or control characters',
    );
  }
  if (name.startsWith('__Host-')) {
    if (domain !== undefined) throw new InvalidOptionError('cookie.domain', 'a __Host- cookie may not have a Domain');
    if (path !== '/') throw new InvalidOptionError('cookie.path', 'a __Host- cookie must have Path=/');
    if (!secure) throw new InvalidOptionError('cookie.secure', 'a __Host- cookie must be Secure');
  }
  if (name.startsWith('__Secure-') && !secure) {
    throw new InvalidOptionError('cookie.secure', 'a __Secure- cookie must be Secure');
  }
  const partitioned = options.partitioned ?? false;
  if (typeof partitioned !== 'boolean') throw new InvalidOptionError('cookie.partitioned', 'expected a boolean');
  if (partitioned && !secure) throw new InvalidOptionError('cookie.partitioned', 'Partitioned requires Secure');
  const priority =
    options.priority === undefined ? undefined : ({ low: 'Low', medium: 'Medium', high: 'High' } as const)[options.priority];
  if (options.priority !== undefined && priority === undefined) {
    throw new InvalidOptionError('cookie.priority', "expected 'low', 'medium' or 'high'");
  }
  let attributes = `; Path=${path}`;
  if (domain !== undefined) attributes += `; Domain=${domain}`;
  attributes += '; HttpOnly';
  if (secure) attributes += '; Secure';
  attributes += `; SameSite=${sameSite}`;
  if (partitioned) attributes += '; Partitioned';
  if (priority !== undefined) attributes += `; Priority=${priority}`;
  return Object.freeze({ name, sameSite, secure, domain, path, partitioned, priority, attributes });
}

/** `Set-Cookie` value carrying `token` for `maxAgeMs` (rounded down to seconds, at most 400 days). */
export function serializeCookie(cookie: ResolvedCookie, token: string, maxAgeMs: number): string {
  const maxAge = Math.max(0, Math.min(MAX_COOKIE_AGE_S, Math.floor(maxAgeMs / 1000)));
  return `${cookie.name}=${token}; Max-Age=${maxAge}${cookie.attributes}`;
}

/** `Set-Cookie` value that deletes the cookie (same name, path and domain). */
export function clearCookie(cookie: ResolvedCookie): string {
  return `${cookie.name}=; Max-Age=0${cookie.attributes}`;
}

export interface CookieLookup {
  /** How many times the name appears (more than once: cookie tossing, treat as unauthenticated). */
  readonly count: number;
  /** The value of the first occurrence, surrounding quotes and spaces removed. */
  readonly value: string | undefined;
}

/** Longest `Cookie` header read; the rest is ignored (Node already caps headers at 16 KiB). */
const MAX_HEADER = 65_536;

/**
 * Finds `name` in a `Cookie` header: one linear pass, no decoding, no regex, never throws. Names
 * compare exactly (a `sid` or `__host-sid` cookie is not `__Host-sid`).
 */
export function findCookie(header: string | readonly string[] | undefined, name: string): CookieLookup {
  if (header === undefined) return { count: 0, value: undefined };
  const text = typeof header === 'string' ? header : header.join('; ');
  const end = Math.min(text.length, MAX_HEADER);
  let count = 0;
  let value: string | undefined;
  let start = 0;
  while (start < end) {
    let stop = text.indexOf(';', start);
    if (stop < 0 || stop > end) stop = end;
    const eq = text.indexOf('=', start);
    if (eq >= 0 && eq < stop) {
      let keyStart = start;
      let keyEnd = eq;
      while (keyStart < keyEnd && (text.charCodeAt(keyStart) === 32 || text.charCodeAt(keyStart) === 9)) keyStart++;
      while (keyEnd > keyStart && (text.charCodeAt(keyEnd - 1) === 32 || text.charCodeAt(keyEnd - 1) === 9)) keyEnd--;
      if (keyEnd - keyStart === name.length && text.startsWith(name, keyStart)) {
        count++;
        if (count === 1) {
          let v = text.slice(eq + 1, stop).trim();
          if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
          value = v;
        }
      }
    }
    start = stop + 1;
  }
  return { count, value };
}
