/**
 * Sessions for Express 5 (the peer dependency is `express@^5`): a middleware, a typed accessor
 * and a guard. It needs no runtime import of Express.
 *
 * @example
 * const auth = expressSessions(sessions);
 * app.use(auth);
 * app.post('/login', async (req, res) => { await auth.get(req).login(user.id); res.sendStatus(204); });
 * app.get('/me', auth.required, (req, res) => res.json({ user: auth.get(req).session!.userId }));
 *
 * @see docs/sessions.md
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SessionManager } from '../sessions/manager.js';
import { SessionHttp, type SessionContext, type SessionMiddlewareOptions } from '../sessions/http.js';
import { applyOnWriteHead, nodeExchange, nodeReject } from '../sessions/node-http.js';

/** The parts of an Express request the middleware reads (any Express `Request` fits). */
export type ExpressRequestLike = IncomingMessage & { ip?: string | undefined };
type Next = (error?: unknown) => void;

export interface ExpressSessionOptions extends SessionMiddlewareOptions {
  /**
   * The client address.
   * @default req.ip (which honours Express's `trust proxy` setting)
   */
  clientIp?: (req: ExpressRequestLike) => string | undefined;
}

export interface ExpressSessions<D extends object> {
  /** The middleware: `app.use(auth)`. Answers 403 (CSRF) or 503 (store down) without calling `next`. */
  (req: ExpressRequestLike, res: ServerResponse, next: Next): Promise<void>;
  /** The request's session context. Throws if the middleware did not run for this request. */
  readonly get: (req: ExpressRequestLike) => SessionContext<D>;
  /** A guard: 401 unless the request has a valid session. */
  readonly required: (req: ExpressRequestLike, res: ServerResponse, next: Next) => void;
}

export function expressSessions<D extends object>(
  sessions: SessionManager<D>,
  options: ExpressSessionOptions = {},
): ExpressSessions<D> {
  const http = new SessionHttp(sessions, options);
  const contexts = new WeakMap<object, SessionContext<D>>();
  const clientIp = options.clientIp ?? ((req: ExpressRequestLike) => req.ip ?? req.socket.remoteAddress);
  const get = (req: ExpressRequestLike): SessionContext<D> => {
    const context = contexts.get(req);
    if (context === undefined) throw new Error('larder/express: the sessions middleware did not run for this request');
    return context;
  };
  const middleware = async function larderSessions(req: ExpressRequestLike, res: ServerResponse, next: Next): Promise<void> {
    let result;
    try {
      result = await http.begin(nodeExchange(req, clientIp(req)));
    } catch (error) {
      next(error);
      return;
    }
    applyOnWriteHead(res, result.headers);
    if (!result.ok) {
      nodeReject(res, result.status, result.message);
      return;
    }
    contexts.set(req, result.context);
    next();
  };
  return Object.assign(middleware, {
    get,
    required: (req: ExpressRequestLike, res: ServerResponse, next: Next): void => {
      if (contexts.get(req)?.session === undefined) nodeReject(res, 401, 'Unauthorized');
      else next();
    },
  });
}

export type { SessionContext, SessionMiddlewareOptions } from '../sessions/http.js';
