/**
 * Sessions for plain `node:http` servers: a function that reads the request's session (or
 * answers 403 / 503 itself and returns `undefined`).
 *
 * @example
 * const session = nodeSessions(sessions);
 * createServer(async (req, res) => {
 *   const ctx = await session(req, res);
 *   if (ctx === undefined) return; // already answered (403 CSRF, 503 store down)
 *   if (ctx.session === undefined) return void res.writeHead(401).end();
 *   res.end(`hello ${ctx.session.userId}`);
 * });
 *
 * @see docs/sessions.md
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SessionManager } from '../sessions/manager.js';
import { SessionHttp, type SessionContext, type SessionMiddlewareOptions } from '../sessions/http.js';
import { applyOnWriteHead, nodeExchange, nodeReject } from '../sessions/node-http.js';

export interface NodeSessionOptions extends SessionMiddlewareOptions {
  /**
   * The client address. Behind a proxy, read it from the header your proxy sets (and only then).
   * @default req.socket.remoteAddress
   */
  clientIp?: (req: IncomingMessage) => string | undefined;
}

/** Validates the request's session; `undefined` when it already answered (403 or 503). */
export type NodeSessionHandler<D extends object> = (
  req: IncomingMessage,
  res: ServerResponse,
) => Promise<SessionContext<D> | undefined>;

/** Sessions for `node:http` (and anything built on its request and response objects). */
export function nodeSessions<D extends object>(
  sessions: SessionManager<D>,
  options: NodeSessionOptions = {},
): NodeSessionHandler<D> {
  const http = new SessionHttp(sessions, options);
  const clientIp = options.clientIp ?? ((req: IncomingMessage) => req.socket.remoteAddress);
  return async function nodeSession(req, res) {
    const result = await http.begin(nodeExchange(req, clientIp(req)));
    applyOnWriteHead(res, result.headers);
    if (result.ok) return result.context;
    nodeReject(res, result.status, result.message);
    return undefined;
  };
}

export type { SessionContext, SessionMiddlewareOptions } from '../sessions/http.js';
