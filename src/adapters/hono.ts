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
import { SessionHttp, type HttpExchange, type SessionContext, type SessionMiddlewareOptions } from '../sessions/http.js';

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
  return {
    method: c.req.method,
    ip,
    header: (name) => c.req.header(name),
    appendHeader: (name, value) => c.header(name, value, { append: true }),
    setHeader: (name, value) => c.header(name, value),
  };
}

export function honoSessions<D extends object>(sessions: SessionManager<D>, options: HonoSessionOptions = {}): HonoSessions<D> {
  const http = new SessionHttp(sessions, options);
  const clientIp = options.clientIp ?? socketAddress;
  const middleware: MiddlewareHandler<SessionEnv<D>> = async function larderSessions(c, next) {
    const result = await http.begin(exchange(c, clientIp(c)));
    if (!result.ok) {
      return c.text(result.message, result.status, { 'Cache-Control': 'no-store' });
    }
    c.set('session', result.context);
    await next();
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
