/**
 * Cross-site request forgery defence for cookie-authenticated unsafe requests, in the order
 * OWASP recommends: Fetch Metadata (`Sec-Fetch-Site`), then an `Origin` allowlist (the app's own
 * host plus configured origins), then, optionally, a session-bound HMAC token for clients that
 * send neither header.
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
   * Session-bound tokens (`context.csrfToken()`), for clients that send neither `Sec-Fetch-Site`
   * nor `Origin`: such unsafe requests must then carry a valid token in this header. `true` uses
   * the `x-csrf-token` header.
   * @default false
   */
  token?: boolean | { header?: string };
}

export interface ResolvedCsrf {
  readonly origins: ReadonlySet<string>;
  readonly allowSameSite: boolean;
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
  return Object.freeze({ origins, allowSameSite: opts.allowSameSite === true, tokenHeader });
}

/** `allow`; `deny`; or `token`: allowed only with a valid session-bound token. */
export type CsrfVerdict = { readonly verdict: 'allow' | 'token' } | { readonly verdict: 'deny'; readonly detail: string };

function sameHost(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  try {
    return new URL(origin).host === host.toLowerCase();
  } catch {
    return false;
  }
}

/** Decides an unsafe request from its headers alone. */
export function csrfVerdict(
  csrf: ResolvedCsrf,
  headers: { readonly fetchSite: string | undefined; readonly origin: string | undefined; readonly host: string | undefined },
): CsrfVerdict {
  const { fetchSite, origin, host } = headers;
  const allowed = origin !== undefined && origin !== 'null' && (csrf.origins.has(origin) || sameHost(origin, host));
  switch (fetchSite?.toLowerCase()) {
    case 'same-origin':
    case 'none':
      return { verdict: 'allow' };
    case 'same-site':
      if (csrf.allowSameSite || (origin !== undefined && csrf.origins.has(origin))) return { verdict: 'allow' };
      return { verdict: 'deny', detail: 'Sec-Fetch-Site: same-site' };
    case 'cross-site':
      if (origin !== undefined && csrf.origins.has(origin)) return { verdict: 'allow' };
      return { verdict: 'deny', detail: 'Sec-Fetch-Site: cross-site' };
    default:
      break;
  }
  // No (usable) Fetch Metadata: an older browser, or not a browser.
  if (origin !== undefined) {
    if (allowed) return { verdict: 'allow' };
    if (csrf.tokenHeader !== undefined) return { verdict: 'token' };
    return { verdict: 'deny', detail: 'Origin not allowed' };
  }
  // Neither header: not a browser request (browsers send Origin on unsafe cross-origin requests).
  return { verdict: csrf.tokenHeader === undefined ? 'allow' : 'token' };
}
