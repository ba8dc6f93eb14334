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
import type { CreateOptions, Session, SessionManager, SessionPatch } from './manager.js';
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
   * @default { origins: [], allowSameSite: false, token: false }
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

/** How adapters expose a request and its response to the shared flow. */
export interface HttpExchange {
  readonly method: string;
  /** A request header by lower-case name (repeated headers joined). */
  header(name: string): string | undefined;
  /** The client address, for brute-force counting and the session's metadata. */
  readonly ip: string | undefined;
  /** Adds a response header line (`Set-Cookie`, `Vary`). */
  appendHeader(name: string, value: string): void;
  /** Sets a response header, replacing any previous value. */
  setHeader(name: string, value: string): void;
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

export type LoginOptions<D extends object> = Omit<CreateOptions<D>, 'ip' | 'userAgent'>;

/** What a handler gets: the request's session and the helpers that change it. */
export interface SessionContext<D extends object = Record<string, unknown>> {
  /** The validated session, or `undefined`. */
  readonly session: Session<D> | undefined;
  readonly status: SessionStatus;
  /** Where the token came from. */
  readonly via: 'cookie' | 'bearer' | undefined;
  /** The request used a rotated-away token within its grace window (`session` is the successor). */
  readonly grace: boolean;
  /**
   * Ends the request's current session (if any), starts a new one for `userId` and sets the
   * cookie: a fresh token on every login, so a planted token is never promoted (fixation). Throws
   * a `SessionInvalidError` (reason `csrf`) for a cross-site unsafe request (login CSRF).
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

/** The outcome of {@link SessionHttp.begin}: go on to the handler, or answer now. */
export type BeginResult<D extends object> =
  | { readonly ok: true; readonly context: SessionContext<D> }
  | { readonly ok: false; readonly status: 403 | 503; readonly message: string };

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
        host: exchange.header('host'),
      });
      const cookieAuthenticated = via === 'cookie' || duplicate;
      if (cookieAuthenticated) exchange.appendHeader('Vary', 'Sec-Fetch-Site, Origin');
      if (verdict.verdict === 'deny') {
        if (cookieAuthenticated) {
          this.manager.reportSecurityEvent({ type: 'csrf', ...(ip === undefined ? {} : { ip }), detail: verdict.detail });
          exchange.setHeader('Cache-Control', 'no-store');
          return { ok: false, status: 403, message: 'Forbidden: cross-site request refused' };
        }
        loginDenied = true;
      }
      needsToken = verdict.verdict === 'token' && cookieAuthenticated;
    }

    const context = new Context<D>(this, exchange, via, duplicate ? 'duplicate' : 'anonymous', loginDenied);
    if (token === undefined) return { ok: true, context };

    let result;
    try {
      result = await this.manager.validate(token, { ip, userAgent: exchange.header('user-agent') });
    } catch (error) {
      if (!isLarderError(error, 'E_SESSION_STORE')) throw error;
      if (this.#onStoreError === 'anonymous') {
        context.status = 'unavailable';
        return { ok: true, context };
      }
      exchange.setHeader('Cache-Control', 'no-store');
      exchange.setHeader('Retry-After', '1');
      return { ok: false, status: 503, message: 'Service Unavailable: the session store cannot answer' };
    }

    if (!result.valid) {
      context.status = result.reason === 'expired' ? 'expired' : 'invalid';
      if (via === 'cookie' && this.#clearInvalid) this.clear(exchange);
      if (needsToken) return this.#csrfDenied(exchange, ip, 'no session for a CSRF token');
      return { ok: true, context };
    }
    if (needsToken) {
      const presented = exchange.header(this.#csrf!.tokenHeader!);
      if (!this.manager.verifyCsrfToken(result.session, presented)) {
        return this.#csrfDenied(exchange, ip, 'missing or invalid CSRF token');
      }
    }
    context.adopt(result.session, token, result.grace);
    if (result.renewed && via === 'cookie') this.issue(exchange, token, result.session);
    return { ok: true, context };
  }

  #csrfDenied(exchange: HttpExchange, ip: string | undefined, detail: string): BeginResult<D> {
    this.manager.reportSecurityEvent({ type: 'csrf', ...(ip === undefined ? {} : { ip }), detail });
    exchange.setHeader('Cache-Control', 'no-store');
    return { ok: false, status: 403, message: 'Forbidden: cross-site request refused' };
  }

  /** Sets the cookie for `token`, expiring with the session's absolute deadline. */
  issue(exchange: HttpExchange, token: string, session: Session<D>): void {
    const remaining = session.absoluteExpiresAt - this.manager.options.clock.now();
    exchange.appendHeader('Set-Cookie', serializeCookie(this.cookie, token, remaining));
    exchange.setHeader('Cache-Control', 'no-store');
  }

  clear(exchange: HttpExchange): void {
    exchange.appendHeader('Set-Cookie', clearCookie(this.cookie));
    exchange.setHeader('Cache-Control', 'no-store');
  }
}

class Context<D extends object> implements SessionContext<D> {
  readonly #http: SessionHttp<D>;
  readonly #exchange: HttpExchange;
  readonly #loginDenied: boolean;
  #token: string | undefined;
  session: Session<D> | undefined;
  status: SessionStatus;
  via: 'cookie' | 'bearer' | undefined;
  grace = false;

  constructor(
    http: SessionHttp<D>,
    exchange: HttpExchange,
    via: 'cookie' | 'bearer' | undefined,
    status: SessionStatus,
    loginDenied: boolean,
  ) {
    this.#http = http;
    this.#exchange = exchange;
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

  async login(userId: string, ...[options]: [options?: LoginOptions<D>]): Promise<Session<D>> {
    if (this.#loginDenied) {
      const ip = this.#exchange.ip;
      this.#http.manager.reportSecurityEvent({ type: 'csrf', ...(ip === undefined ? {} : { ip }), detail: 'cross-site login' });
      throw new SessionInvalidError('csrf', 'Cross-site login refused');
    }
    if (this.#token !== undefined) await this.#http.manager.revoke(this.#token, { reason: 'login' });
    // `create`'s rest parameter is conditional on D; here the options are known to fit it.
    const manager = this.#http.manager as unknown as {
      create(userId: string, options: CreateOptions<D>): ReturnType<SessionManager<D>['create']>;
    };
    const issued = await manager.create(userId, { ...options, ...this.#meta() } as CreateOptions<D>);
    this.#http.issue(this.#exchange, issued.token, issued.session);
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
    if (this.via !== 'bearer') this.#http.clear(this.#exchange);
  }

  async rotate(): Promise<Session<D>> {
    if (this.session === undefined || this.#token === undefined) noSession();
    if (this.via === 'bearer') {
      throw new SessionInvalidError('invalid', 'rotate() sets a cookie; for bearer tokens call sessions.rotate(token)');
    }
    const issued = await this.#http.manager.rotate(this.#token, this.#meta());
    this.#http.issue(this.#exchange, issued.token, issued.session);
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
