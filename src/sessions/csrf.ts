/**
 * Cross-site request forgery defence for cookie-authenticated unsafe requests, in the order
 * OWASP recommends: Fetch Metadata (`Sec-Fetch-Site`), then the source origin (`Origin`, or the
 * origin of `Referer` when there is no `Origin`) against the app's own origin and an allowlist,
 * compared as whole origins (scheme, host and port). A request with no origin information at all
 * is refused, as OWASP recommends, unless a session-bound HMAC token is on (it must then carry
 * one) or `allowMissingOrigin` says such clients are trusted.
 *
 * @see docs/sessions.md
 * @module
 */
import { InvalidOptionError } from '../errors.js';

export interface CsrfOptions {
  /**
   * Other origins (`https://app.example.com`) allowed to send unsafe requests with the session
   * cookie, besides the app's own host.
   * @default []
   */
  origins?: readonly string[];
  /**
   * Accept `Sec-Fetch-Site: same-site` (requests from sibling subdomains). Off: a compromised
   * subdomain is a classic CSRF source.
   * @default false
   */
  allowSameSite?: boolean;
  /**
   * Session-bound tokens (`context.csrfToken()`), for clients that send no origin information
   * (no `Sec-Fetch-Site`, `Origin` or `Referer`): such unsafe requests must then carry a valid
   * token in this header instead of being refused. A request whose `Origin` (or `Referer`) is
   * not allowed is refused whatever token it carries. `true` uses the `x-csrf-token` header.
   * @default false
   */
  token?: boolean | { header?: string };
  /**
   * Let unsafe requests that carry the cookie but no origin information at all (no
   * `Sec-Fetch-Site`, `Origin` or `Referer`) through without a token. Browsers send `Origin` on
   * every unsafe request, so these are scripts and other non-browser clients; OWASP recommends
   * refusing them, so only turn this on for such clients you trust, or use `bearer` instead.
   * Ignored when `token` is on (the token is then required).
   * @default false
   */
  allowMissingOrigin?: boolean;
}

export interface ResolvedCsrf {
  readonly origins: ReadonlySet<string>;
  readonly allowSameSite: boolean;
  readonly allowMissingOrigin: boolean;
  /** Lower-case header name, or `undefined` when tokens are off. */
  readonly tokenHeader: string | undefined;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);
const HEADER_NAME = /^[a-z0-9-]{1,64}$/;

export function isUnsafeMethod(method: string): boolean {
  return !SAFE_METHODS.has(method.toUpperCase());
}

export function resolveCsrf(options: CsrfOptions | false | undefined): ResolvedCsrf | undefined {
  if (options === false) return undefined;
  const opts = options ?? {};
  if (typeof opts !== 'object' || opts === null) throw new InvalidOptionError('csrf', 'expected an options object or false');
  const origins = new Set<string>();
  for (const origin of opts.origins ?? []) {
    let parsed: URL;
    try {
      parsed = new URL(origin);
    } catch {
      throw new InvalidOptionError('csrf.origins', `not an origin: ${JSON.stringify(origin)}`);
    }
    if (parsed.origin === 'null' || parsed.origin !== origin.replace(/\/$/, '')) {
      throw new InvalidOptionError('csrf.origins', `expected scheme://host[:port] only, got ${JSON.stringify(origin)}`);
    }
    origins.add(parsed.origin);
  }
  let tokenHeader: string | undefined;
  if (opts.token === true) tokenHeader = 'x-csrf-token';
  else if (typeof opts.token === 'object' && opts.token !== null) {
    tokenHeader = (opts.token.header ?? 'x-csrf-token').toLowerCase();
    if (!HEADER_NAME.test(tokenHeader)) throw new InvalidOptionError('csrf.token.header', 'expected a header name');
  } else if (opts.token !== undefined && typeof opts.token !== 'boolean') {
    throw new InvalidOptionError('csrf.token', 'expected a boolean or { header }');
  }
  if (opts.allowMissingOrigin !== undefined && typeof opts.allowMissingOrigin !== 'boolean') {
    throw new InvalidOptionError('csrf.allowMissingOrigin', 'expected a boolean');
  }
  return Object.freeze({
    origins,
    allowSameSite: opts.allowSameSite === true,
    allowMissingOrigin: opts.allowMissingOrigin === true,
    tokenHeader,
  });
}

/** `allow`; `deny`; or `token`: allowed only with a valid session-bound token. */
export type CsrfVerdict = { readonly verdict: 'allow' | 'token' } | { readonly verdict: 'deny'; readonly detail: string };

/** The serialized origin of a URL (`scheme://host[:port]`, default ports dropped), or `undefined`. */
function originOf(url: string): string | undefined {
  try {
    const origin = new URL(url).origin;
    return origin === 'null' ? undefined : origin;
  } catch {
    return undefined;
  }
}

export interface CsrfRequest {
  readonly fetchSite: string | undefined;
  readonly origin: string | undefined;
  readonly referer: string | undefined;
  /** The `Host` header. */
  readonly host: string | undefined;
  /**
   * The app's scheme as the browser sees it: `https` when the session cookie is `Secure` (the
   * browser then only sends it over HTTPS, whatever proxies sit in front), `http` in development.
   */
  readonly scheme: 'https' | 'http';
}

/** Decides an unsafe request from its headers alone. */
export function csrfVerdict(csrf: ResolvedCsrf, request: CsrfRequest): CsrfVerdict {
  const { fetchSite, origin, referer, host } = request;
  const listed = origin !== undefined && csrf.origins.has(originOf(origin) ?? '');
  switch (fetchSite?.toLowerCase()) {
    case 'same-origin':
    case 'none':
      return { verdict: 'allow' };
    case 'same-site':
      if (csrf.allowSameSite || listed) return { verdict: 'allow' };
      return { verdict: 'deny', detail: 'Sec-Fetch-Site: same-site' };
    case 'cross-site':
      if (listed) return { verdict: 'allow' };
      return { verdict: 'deny', detail: 'Sec-Fetch-Site: cross-site' };
    default:
      break;
  }
  // No (usable) Fetch Metadata: an older browser, a plain-HTTP page, or not a browser. The
  // source origin is `Origin`, else the origin of `Referer`; it must be the app's own origin
  // (scheme, host and port) or an allowed one. A token never makes up for a foreign origin.
  const source = origin ?? (referer === undefined ? undefined : (originOf(referer) ?? 'null'));
  if (source !== undefined) {
    const self = host === undefined || host === '' ? undefined : originOf(`${request.scheme}://${host}`);
    const normalized = originOf(source);
    if (normalized !== undefined && (normalized === self || csrf.origins.has(normalized))) return { verdict: 'allow' };
    return { verdict: 'deny', detail: origin === undefined ? 'Referer not allowed' : 'Origin not allowed' };
  }
  // No origin information at all: browsers send Origin on every unsafe request, so this is not a
  // current browser. OWASP recommends refusing; a session-bound token or an explicit opt-in lets it in.
  if (csrf.tokenHeader !== undefined) return { verdict: 'token' };
  if (csrf.allowMissingOrigin) return { verdict: 'allow' };
  return { verdict: 'deny', detail: 'no Sec-Fetch-Site, Origin or Referer' };
}
