/**
 * The framework-neutral request flow every adapter shares: find the token (cookie, or a bearer
 * header when enabled), refuse cookie tossing and cross-site unsafe requests, validate (failing
 * closed when the store is down), renew the cookie, and give the handler a {@link SessionContext}
 * with login / logout / rotate / update helpers that set or clear the cookie with
 * `Cache-Control: no-store`.
 *
 * Adapters only translate headers and responses; see `larder/node`, `larder/express`,
 * `larder/fastify` and `larder/hono`.
 *
 * @see docs/sessions.md
 * @module
 */
import { SessionInvalidError, isLarderError } from '../errors.js';
import { clearCookie, findCookie, resolveCookie, serializeCookie, type CookieOptions, type ResolvedCookie } from './cookies.js';
import { csrfVerdict, isUnsafeMethod, resolveCsrf, type CsrfOptions, type ResolvedCsrf } from './csrf.js';
import type { CreateOptions, LoginWithVerifyOptions, Session, SessionManager, SessionPatch } from './manager.js';
import { InvalidOptionError } from '../errors.js';

export interface SessionMiddlewareOptions {
  /** Cookie name and attributes; unsafe combinations throw at start-up. @see CookieOptions */
  cookie?: CookieOptions;
  /**
   * Development mode for http://localhost: the cookie drops `Secure` and the `__Host-` prefix
   * (default name `sid`). Refused when `NODE_ENV` is `production`.
   * @default false
   */
  development?: boolean;
  /**
   * Also accept `Authorization: Bearer <token>` (for non-browser clients). When present it is
   * used instead of the cookie, and no CSRF check applies (browsers never attach it on their own).
   * @default false
   */
  bearer?: boolean;
  /**
   * CSRF defence for unsafe methods (POST, PUT, PATCH, DELETE, …) that carry the session cookie.
   * `false` turns it off (only if something else does the job).
   * @default { origins: [], allowSameSite: false, token: false, allowMissingOrigin: false }
   */
  csrf?: CsrfOptions | false;
  /**
   * When the store cannot answer for a request that carries a token: `'reject'` answers 503 and
   * never runs the handler; `'anonymous'` runs it unauthenticated (never authenticated).
   * @default 'reject'
   */
  onStoreError?: 'reject' | 'anonymous';
  /**
   * Delete the cookie (`Max-Age=0`) when it holds a token that is malformed, unknown or expired.
   * @default true
   */
  clearInvalidCookie?: boolean;
}

/** How adapters expose a request to the shared flow. */
export interface HttpExchange {
  readonly method: string;
  /** A request header by lower-case name (repeated headers joined). */
  header(name: string): string | undefined;
  /** The client address, for brute-force counting and the session's metadata. */
  readonly ip: string | undefined;
}

/** A response's headers as {@link SessionHeaders.applyTo} reads and writes them. */
export interface HeaderTarget {
  /** The current values of a header (one entry per `Set-Cookie` line); `[]` when absent. */
  get(name: 'set-cookie' | 'vary' | 'cache-control'): readonly string[];
  /** Replaces a header with these values. */
  set(name: 'set-cookie' | 'vary' | 'cache-control', values: readonly string[]): void;
}

const VARY = ['Sec-Fetch-Site', 'Origin'];

/**
 * The headers the session flow owes one response: the session cookie line (the latest one set
 * or cleared), `Cache-Control: no-store` whenever that cookie is set or cleared, and
 * `Vary: Sec-Fetch-Site, Origin` for cookie-authenticated unsafe requests. Adapters apply them
 * when the response is sent (Node's `writeHead`, Hono after `next()`), so a handler that answers
 * on its own, sets its own `Cache-Control` or replaces `Set-Cookie` cannot drop them.
 */
export class SessionHeaders {
  #cookie: string | undefined;
  #noStore = false;
  #vary = false;

  /** Sets the session cookie line for this response, replacing an earlier one. */
  cookie(line: string): void {
    this.#cookie = line;
    this.#noStore = true;
  }

  noStore(): void {
    this.#noStore = true;
  }

  vary(): void {
    this.#vary = true;
  }

  /** Nothing to apply. */
  get empty(): boolean {
    return this.#cookie === undefined && !this.#noStore && !this.#vary;
  }

  /**
   * Applies the headers on top of what the response already has: the cookie line is added
   * unless present, missing `Vary` tokens are added, and `Cache-Control` becomes `no-store`.
   * Idempotent. Reads everything before the first write.
   */
  applyTo(target: HeaderTarget): void {
    const writes: ['set-cookie' | 'vary' | 'cache-control', readonly string[]][] = [];
    if (this.#cookie !== undefined) {
      const cookies = target.get('set-cookie');
      if (!cookies.includes(this.#cookie)) writes.push(['set-cookie', [...cookies, this.#cookie]]);
    }
    if (this.#vary) {
      const current = target.get('vary').join(', ');
      const tokens = current
        .split(',')
        .map((t) => t.trim())
        .filter((t) => t !== '');
      const lower = new Set(tokens.map((t) => t.toLowerCase()));
      const missing = lower.has('*') ? [] : VARY.filter((t) => !lower.has(t.toLowerCase()));
      if (missing.length > 0) writes.push(['vary', [[...tokens, ...missing].join(', ')]]);
    }
    if (this.#noStore) {
      const current = target.get('cache-control');
      if (!(current.length === 1 && current[0] === 'no-store')) writes.push(['cache-control', ['no-store']]);
    }
    for (const [name, values] of writes) target.set(name, values);
  }
}

/** Why the request has no session (`authenticated` when it has one). */
export type SessionStatus =
  | 'authenticated'
  /** No token at all. */
  | 'anonymous'
  /** A token that is malformed, unknown, revoked or rotated away. */
  | 'invalid'
  | 'expired'
  /** The session cookie appeared more than once (cookie tossing): ignored. */
  | 'duplicate'
  /** The store could not answer and `onStoreError` is `'anonymous'`. */
  | 'unavailable';

/** `login()` without `verify`: pass `epoch` (from `sessions.userEpoch()`) yourself, or use `verify`. */
export type LoginOptions<D extends object> = Omit<CreateOptions<D>, 'ip' | 'userAgent'> & { verify?: undefined };

/** `login()` that checks the credentials itself, safe against a racing `revokeAllForUser`. */
export type VerifiedLoginOptions<D extends object> = Omit<LoginWithVerifyOptions<D>, 'ip' | 'userAgent'>;

/** What a handler gets: the request's session and the helpers that change it. */
export interface SessionContext<D extends object = Record<string, unknown>> {
  /** The validated session, or `undefined`. */
  readonly session: Session<D> | undefined;
  readonly status: SessionStatus;
  /** Where the token came from. */
  readonly via: 'cookie' | 'bearer' | undefined;
  /**
   * The request used a rotated-away token within its grace window: `session` is the successor,
   * read-only (`update`, `rotate`, `revokeOthers` and `csrfToken` throw `SessionInvalidError`,
   * reason `rotated`; `logout` works and ends the successor too).
   */
  readonly grace: boolean;
  /**
   * Checks the credentials with `verify` and logs `userId` in, safe against a racing
   * `revokeAllForUser`: the user's epoch is read first, then `verify` runs (load the password
   * hash inside it), then the request's current session is revoked and a new one created, only
   * if the epoch has not moved (else `SessionInvalidError`, reason `epoch`). Resolves `undefined`,
   * changing nothing, when `verify` resolves `false`. Throws `SessionInvalidError` (reason
   * `csrf`) for a cross-site unsafe request (login CSRF).
   */
  login(userId: string, options: VerifiedLoginOptions<D>): Promise<Session<D> | undefined>;
  /**
   * Ends the request's current session (if any), starts a new one for `userId` and sets the
   * cookie: a fresh token on every login, so a planted token is never promoted (fixation). Throws
   * a `SessionInvalidError` (reason `csrf`) for a cross-site unsafe request (login CSRF). Prefer
   * the `verify` form: without it, a login racing a password change survives it unless you pass
   * `epoch` read before checking the credentials.
   */
  login(userId: string, ...options: {} extends D ? [options?: LoginOptions<D>] : [options: LoginOptions<D>]): Promise<Session<D>>;
  /** Revokes the session and clears the cookie (always, even without a valid session). */
  logout(): Promise<void>;
  /** Issues a new token for the same session (after a privilege change) and sets the cookie. */
  rotate(): Promise<Session<D>>;
  /** Writes data keys, only if the session still exists. */
  update(patch: SessionPatch<D>): Promise<Session<D>>;
  /** Revokes the user's other sessions; returns how many. */
  revokeOthers(): Promise<number>;
  /** A CSRF token bound to this session, for the configured header. */
  csrfToken(): string;
}

/**
 * The outcome of {@link SessionHttp.begin}: go on to the handler, or answer now (a 503 also
 * carries `Retry-After: 1`). Either way the adapter applies `headers` when the response is sent.
 */
export type BeginResult<D extends object> =
  | { readonly ok: true; readonly context: SessionContext<D>; readonly headers: SessionHeaders }
  | { readonly ok: false; readonly status: 403 | 503; readonly message: string; readonly headers: SessionHeaders };

const BEARER = /^Bearer[ \t]+([^ \t]+)[ \t]*$/i;

function noSession(): never {
  throw new SessionInvalidError('gone', 'The request has no session');
}

/** The request flow shared by every adapter. */
export class SessionHttp<D extends object> {
  readonly manager: SessionManager<D>;
  readonly cookie: ResolvedCookie;
  readonly #csrf: ResolvedCsrf | undefined;
  readonly #bearer: boolean;
  readonly #onStoreError: 'reject' | 'anonymous';
  readonly #clearInvalid: boolean;

  constructor(manager: SessionManager<D>, options: SessionMiddlewareOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', 'expected an object');
    if (options.development !== undefined && typeof options.development !== 'boolean') {
      throw new InvalidOptionError('development', 'expected a boolean');
    }
    this.manager = manager;
    this.cookie = resolveCookie(options.cookie, options.development === true);
    this.#csrf = resolveCsrf(options.csrf);
    this.#bearer = options.bearer === true;
    const onStoreError = options.onStoreError ?? 'reject';
    if (onStoreError !== 'reject' && onStoreError !== 'anonymous') {
      throw new InvalidOptionError('onStoreError', "expected 'reject' or 'anonymous'");
    }
    this.#onStoreError = onStoreError;
    this.#clearInvalid = options.clearInvalidCookie ?? true;
  }

  async begin(exchange: HttpExchange): Promise<BeginResult<D>> {
    const ip = exchange.ip;
    const headers = new SessionHeaders();
    let token: string | undefined;
    let via: 'cookie' | 'bearer' | undefined;
    let duplicate = false;
    const authorization = this.#bearer ? exchange.header('authorization') : undefined;
    if (authorization !== undefined && /^bearer\b/i.test(authorization)) {
      via = 'bearer';
      token = BEARER.exec(authorization)?.[1] ?? '\0';
    } else {
      const found = findCookie(exchange.header('cookie'), this.cookie.name);
      if (found.count > 1) {
        duplicate = true;
        this.manager.reportSecurityEvent({
          type: 'duplicate-cookie',
          ...(ip === undefined ? {} : { ip }),
          detail: `${found.count} ${this.cookie.name} cookies`,
        });
      } else if (found.count === 1) {
        via = 'cookie';
        token = found.value ?? '';
      }
    }

    const unsafe = isUnsafeMethod(exchange.method);
    let needsToken = false;
    let loginDenied = false;
    if (this.#csrf !== undefined && unsafe && via !== 'bearer') {
      const verdict = csrfVerdict(this.#csrf, {
        fetchSite: exchange.header('sec-fetch-site'),
        origin: exchange.header('origin'),
        referer: exchange.header('referer'),
        host: exchange.header('host'),
        scheme: this.cookie.secure ? 'https' : 'http',
      });
      const cookieAuthenticated = via === 'cookie' || duplicate;
      if (cookieAuthenticated) headers.vary();
      if (verdict.verdict === 'deny') {
        if (cookieAuthenticated) {
          return this.#csrfDenied(headers, ip, verdict.detail);
        }
        loginDenied = true;
      }
      needsToken = verdict.verdict === 'token' && cookieAuthenticated;
    }

    const context = new Context<D>(this, exchange, headers, via, duplicate ? 'duplicate' : 'anonymous', loginDenied);
    if (token === undefined) return { ok: true, context, headers };

    let result;
    try {
      result = await this.manager.validate(token, { ip, userAgent: exchange.header('user-agent') });
    } catch (error) {
      if (!isLarderError(error, 'E_SESSION_STORE')) throw error;
      if (this.#onStoreError === 'anonymous') {
        context.status = 'unavailable';
        return { ok: true, context, headers };
      }
      headers.noStore();
      return { ok: false, status: 503, message: 'Service Unavailable: the session store cannot answer', headers };
    }

    if (!result.valid) {
      context.status = result.reason === 'expired' ? 'expired' : 'invalid';
      if (via === 'cookie' && this.#clearInvalid) this.clear(headers);
      if (needsToken) return this.#csrfDenied(headers, ip, 'no session for a CSRF token');
      return { ok: true, context, headers };
    }
    if (needsToken) {
      const presented = exchange.header(this.#csrf!.tokenHeader!);
      if (!this.manager.verifyCsrfToken(result.session, presented)) {
        return this.#csrfDenied(headers, ip, 'missing or invalid CSRF token');
      }
    }
    context.adopt(result.session, token, result.grace);
    if (result.renewed && via === 'cookie') this.issue(headers, token, result.session);
    return { ok: true, context, headers };
  }

  #csrfDenied(headers: SessionHeaders, ip: string | undefined, detail: string): BeginResult<D> {
    this.manager.reportSecurityEvent({ type: 'csrf', ...(ip === undefined ? {} : { ip }), detail });
    headers.noStore();
    return { ok: false, status: 403, message: 'Forbidden: cross-site request refused', headers };
  }

  /** Sets the cookie for `token`, expiring with the session's absolute deadline. */
  issue(headers: SessionHeaders, token: string, session: Session<D>): void {
    const remaining = session.absoluteExpiresAt - this.manager.options.clock.now();
    headers.cookie(serializeCookie(this.cookie, token, remaining));
  }

  clear(headers: SessionHeaders): void {
    headers.cookie(clearCookie(this.cookie));
  }
}

class Context<D extends object> implements SessionContext<D> {
  readonly #http: SessionHttp<D>;
  readonly #exchange: HttpExchange;
  readonly #headers: SessionHeaders;
  readonly #loginDenied: boolean;
  #token: string | undefined;
  session: Session<D> | undefined;
  status: SessionStatus;
  via: 'cookie' | 'bearer' | undefined;
  grace = false;

  constructor(
    http: SessionHttp<D>,
    exchange: HttpExchange,
    headers: SessionHeaders,
    via: 'cookie' | 'bearer' | undefined,
    status: SessionStatus,
    loginDenied: boolean,
  ) {
    this.#http = http;
    this.#exchange = exchange;
    this.#headers = headers;
    this.via = via;
    this.status = status;
    this.#loginDenied = loginDenied;
  }

  adopt(session: Session<D>, token: string, grace: boolean): void {
    this.session = session;
    this.#token = token;
    this.grace = grace;
    this.status = 'authenticated';
  }

  #meta(): { ip?: string; userAgent?: string } {
    const ip = this.#exchange.ip;
    const userAgent = this.#exchange.header('user-agent');
    return { ...(ip === undefined ? {} : { ip }), ...(userAgent === undefined ? {} : { userAgent }) };
  }

  login(userId: string, options: VerifiedLoginOptions<D>): Promise<Session<D> | undefined>;
  login(userId: string, options?: LoginOptions<D>): Promise<Session<D>>;
  async login(userId: string, options?: LoginOptions<D> | VerifiedLoginOptions<D>): Promise<Session<D> | undefined> {
    if (this.#loginDenied) {
      const ip = this.#exchange.ip;
      this.#http.manager.reportSecurityEvent({ type: 'csrf', ...(ip === undefined ? {} : { ip }), detail: 'cross-site login' });
      throw new SessionInvalidError('csrf', 'Cross-site login refused');
    }
    const { verify, ...rest } = options ?? {};
    let epoch = (rest as { epoch?: number }).epoch;
    if (verify !== undefined) {
      if (typeof verify !== 'function') throw new InvalidOptionError('verify', 'expected a function checking the credentials');
      // The epoch before the credentials: a revoke-all landing in between fails the create below.
      epoch = await this.#http.manager.userEpoch(userId);
      // Only `true` logs in (not a truthy value from untyped code).
      const verified: unknown = await verify();
      if (verified !== true) return undefined;
    }
    if (this.#token !== undefined) await this.#http.manager.revoke(this.#token, { reason: 'login' });
    // `create`'s rest parameter is conditional on D; here the options are known to fit it.
    const manager = this.#http.manager as unknown as {
      create(userId: string, options: CreateOptions<D>): ReturnType<SessionManager<D>['create']>;
    };
    const createOptions = { ...rest, ...(epoch === undefined ? {} : { epoch }), ...this.#meta() };
    const issued = await manager.create(userId, createOptions as CreateOptions<D>);
    this.#http.issue(this.#headers, issued.token, issued.session);
    this.adopt(issued.session, issued.token, false);
    this.via = 'cookie';
    return issued.session;
  }

  async logout(): Promise<void> {
    const token = this.#token;
    this.session = undefined;
    this.#token = undefined;
    this.grace = false;
    this.status = 'anonymous';
    if (token !== undefined) await this.#http.manager.revoke(token, { reason: 'logout' });
    if (this.via !== 'bearer') this.#http.clear(this.#headers);
  }

  async rotate(): Promise<Session<D>> {
    if (this.session === undefined || this.#token === undefined) noSession();
    if (this.via === 'bearer') {
      throw new SessionInvalidError('invalid', 'rotate() sets a cookie; for bearer tokens call sessions.rotate(token)');
    }
    const issued = await this.#http.manager.rotate(this.#token, this.#meta());
    this.#http.issue(this.#headers, issued.token, issued.session);
    this.adopt(issued.session, issued.token, false);
    return issued.session;
  }

  async update(patch: SessionPatch<D>): Promise<Session<D>> {
    if (this.session === undefined) noSession();
    this.session = await this.#http.manager.update(this.session, patch);
    return this.session;
  }

  revokeOthers(): Promise<number> {
    if (this.session === undefined) noSession();
    return this.#http.manager.revokeOthers(this.session);
  }

  csrfToken(): string {
    if (this.session === undefined) noSession();
    return this.#http.manager.csrfToken(this.session);
  }
}
