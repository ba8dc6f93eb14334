/**
 * Sessions for Fastify 5: a plugin (applied to the scope it is registered in and its children),
 * a typed accessor and a `preHandler` guard. It needs no runtime import of Fastify.
 *
 * @example
 * const auth = fastifySessions(sessions);
 * await app.register(auth);
 * app.post('/login', async (request) => { await auth.get(request).login(user.id); return { ok: true }; });
 * app.get('/me', { preHandler: auth.required }, async (request) => ({ user: auth.get(request).session!.userId }));
 *
 * @see docs/sessions.md
 * @module
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { SessionManager } from '../sessions/manager.js';
import { SessionHttp, type HttpExchange, type SessionContext, type SessionMiddlewareOptions } from '../sessions/http.js';
import { applyOnWriteHead } from '../sessions/node-http.js';

export interface FastifySessionOptions extends SessionMiddlewareOptions {
  /**
   * The client address.
   * @default request.ip (which honours Fastify's `trustProxy` setting)
   */
  clientIp?: (request: FastifyRequest) => string | undefined;
}

export interface FastifySessions<D extends object> {
  /** The plugin: `await app.register(auth)`. */
  (instance: FastifyInstance): Promise<void>;
  /** The request's session context. Throws if the plugin's hook did not run for this request. */
  readonly get: (request: FastifyRequest) => SessionContext<D>;
  /** A `preHandler` guard: 401 unless the request has a valid session. */
  readonly required: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
}

function exchange(request: FastifyRequest, ip: string | undefined): HttpExchange {
  return {
    method: request.method,
    ip,
    header: (name) => {
      const value = request.headers[name];
      return Array.isArray(value) ? value.join(', ') : value;
    },
  };
}

function send(reply: FastifyReply, status: number, message: string): FastifyReply {
  if (status === 503) reply.header('retry-after', '1');
  return reply.code(status).header('cache-control', 'no-store').type('text/plain; charset=utf-8').send(message);
}

export function fastifySessions<D extends object>(
  sessions: SessionManager<D>,
  options: FastifySessionOptions = {},
): FastifySessions<D> {
  const http = new SessionHttp(sessions, options);
  const contexts = new WeakMap<object, SessionContext<D>>();
  const clientIp = options.clientIp ?? ((request: FastifyRequest) => request.ip);
  const plugin = async function larderSessions(instance: FastifyInstance): Promise<void> {
    instance.addHook('onRequest', async (request, reply) => {
      const result = await http.begin(exchange(request, clientIp(request)));
      // Applied when Fastify writes the head (after every onSend hook, streams and hijacked
      // replies included), so no hook or handler can drop them.
      applyOnWriteHead(reply.raw, result.headers);
      if (!result.ok) return send(reply, result.status, result.message);
      contexts.set(request, result.context);
      return undefined;
    });
  };
  // As fastify-plugin does: the hook applies to the scope that registers the plugin.
  Object.assign(plugin, {
    [Symbol.for('skip-override')]: true,
    [Symbol.for('fastify.display-name')]: 'larder-sessions',
  });
  return Object.assign(plugin, {
    get: (request: FastifyRequest): SessionContext<D> => {
      const context = contexts.get(request);
      if (context === undefined) throw new Error('larder/fastify: the sessions plugin did not run for this request');
      return context;
    },
    required: async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
      if (contexts.get(request)?.session === undefined) await send(reply, 401, 'Unauthorized');
    },
  });
}

export type { SessionContext, SessionMiddlewareOptions } from '../sessions/http.js';
