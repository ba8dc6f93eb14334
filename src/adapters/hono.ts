/**
 * Sessions for Hono 4: a middleware that sets the `session` variable, and a guard. It needs no
 * runtime import of Hono.
 *
 * @example
 * const app = new Hono<{ Variables: SessionVariables<MyData> }>();
 * const auth = honoSessions(sessions);
 * app.use(auth);
 * app.post('/login', async (c) => { await c.var.session.login(user.id); return c.json({ ok: true }); });
 * app.get('/me', auth.required, (c) => c.json({ user: c.var.session.session!.userId }));
 *
 * @see docs/sessions.md
 * @module
 */
import type { Context, MiddlewareHandler } from 'hono';
import type { SessionManager } from '../sessions/manager.js';
import {
  SessionHttp,
  type HeaderTarget,
  type HttpExchange,
  type SessionContext,
  type SessionHeaders,
  type SessionMiddlewareOptions,
} from '../sessions/http.js';

/** The context variables the middleware sets: `c.var.session` / `c.get('session')`. */
export interface SessionVariables<D extends object = Record<string, unknown>> {
  session: SessionContext<D>;
}

export type SessionEnv<D extends object> = { Variables: SessionVariables<D> };

export interface HonoSessionOptions extends SessionMiddlewareOptions {
  /**
   * The client address.
   * @default the socket address under @hono/node-server, else none
   */
  clientIp?: (c: Context) => string | undefined;
}

export interface HonoSessions<D extends object> extends MiddlewareHandler<SessionEnv<D>> {
  /** A guard: 401 unless the request has a valid session. */
  required: MiddlewareHandler<SessionEnv<D>>;
}

function socketAddress(c: Context): string | undefined {
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined;
  return env?.incoming?.socket?.remoteAddress;
}

function exchange(c: Context, ip: string | undefined): HttpExchange {
  return { method: c.req.method, ip, header: (name) => c.req.header(name) };
}

function target(headers: Headers): HeaderTarget {
  return {
    get: (name) => {
      if (name === 'set-cookie') return headers.getSetCookie();
      const value = headers.get(name);
      return value === null ? [] : [value];
    },
    set: (name, values) => {
      headers.delete(name);
      for (const value of values) headers.append(name, value);
    },
  };
}

/**
 * Applies the session headers to the response the handler produced, whether it came from the
 * `c.*` helpers or is a raw `Response`. A response with immutable headers (one from `fetch()`)
 * is copied first.
 */
function applyTo(c: Context, headers: SessionHeaders): void {
  if (headers.empty) return;
  try {
    headers.applyTo(target(c.res.headers));
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    c.res = new Response(c.res.body, c.res);
    headers.applyTo(target(c.res.headers));
  }
}

export function honoSessions<D extends object>(sessions: SessionManager<D>, options: HonoSessionOptions = {}): HonoSessions<D> {
  const http = new SessionHttp(sessions, options);
  const clientIp = options.clientIp ?? socketAddress;
  const middleware: MiddlewareHandler<SessionEnv<D>> = async function larderSessions(c, next) {
    const result = await http.begin(exchange(c, clientIp(c)));
    if (!result.ok) {
      const refused = c.text(result.message, result.status, {
        'Cache-Control': 'no-store',
        ...(result.status === 503 ? { 'Retry-After': '1' } : {}),
      });
      result.headers.applyTo(target(refused.headers));
      return refused;
    }
    c.set('session', result.context);
    await next();
    // After the handler: a raw `Response` never saw headers set on the context before it.
    applyTo(c, result.headers);
    return undefined;
  };
  const required: MiddlewareHandler<SessionEnv<D>> = async function requireSession(c, next) {
    if (c.get('session')?.session === undefined) {
      return c.text('Unauthorized', 401, { 'Cache-Control': 'no-store' });
    }
    await next();
    return undefined;
  };
  return Object.assign(middleware, { required });
}

export type { SessionContext, SessionMiddlewareOptions } from '../sessions/http.js';
