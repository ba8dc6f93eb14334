/**
 * One test application, four frameworks: the same routes, written once as framework-free logic
 * and bound to node:http, Express, Fastify and Hono, each listening on 127.0.0.1:0. Handlers
 * count their runs (to prove a refused request never reached them) and can be held on a gate
 * (to race a long request against logout).
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { expressSessions } from '../../src/adapters/express.js';
import { fastifySessions } from '../../src/adapters/fastify.js';
import { honoSessions, type SessionVariables } from '../../src/adapters/hono.js';
import { nodeSessions } from '../../src/adapters/node.js';
import { isLarderError } from '../../src/errors.js';
import type { SessionContext, SessionManager, SessionMiddlewareOptions } from '../../src/sessions/index.js';

export type Framework = 'node' | 'express' | 'fastify' | 'hono';
export const FRAMEWORKS: readonly Framework[] = ['node', 'express', 'fastify', 'hono'];

export interface TestData {
  role?: string;
  a?: number;
  b?: number;
  x?: number;
}

type Ctx = SessionContext<TestData>;
interface Reply {
  status: number;
  body?: unknown;
  /**
   * Answer "by hand" with these headers, the lowest-level way each framework offers: a raw
   * `Response` (Hono), `writeHead(status, headers)` (node:http), `res.set()` (Express),
   * `reply.headers()` (Fastify). Bodies are plain text.
   */
  raw?: Record<string, string>;
}

interface Route {
  method: 'GET' | 'POST';
  path: string;
  /** Answer 401 through the framework's own guard when there is no session. */
  guard?: boolean;
  run(ctx: Ctx, query: URLSearchParams, app: AppState): Promise<Reply>;
}

/** Gates hold a handler until the test releases them. */
class Gates {
  readonly #gates = new Map<string, { entered: () => void; wait: Promise<void>; release: () => void; reached: Promise<void> }>();

  #gate(name: string) {
    let gate = this.#gates.get(name);
    if (gate === undefined) {
      let release!: () => void;
      let entered!: () => void;
      const wait = new Promise<void>((r) => (release = r));
      const reached = new Promise<void>((r) => (entered = r));
      gate = { wait, release, entered, reached };
      this.#gates.set(name, gate);
    }
    return gate;
  }

  /** Resolves once a handler waits on `name`. */
  reached(name: string): Promise<void> {
    return this.#gate(name).reached;
  }

  release(name: string): void {
    this.#gate(name).release();
  }

  async pass(name: string): Promise<void> {
    const gate = this.#gate(name);
    gate.entered();
    await gate.wait;
  }
}

interface AppState {
  readonly sessions: SessionManager<TestData>;
  readonly gates: Gates;
  /** The app's user table: user id -> password (plain text will do for a test). */
  readonly passwords: Map<string, string>;
}

async function guarded<T>(fn: () => Promise<T>): Promise<T | Reply> {
  try {
    return await fn();
  } catch (error) {
    if (isLarderError(error, 'E_SESSION_INVALID')) {
      // csrf: a cross-site login; rotated: a write through a read-only grace token; epoch: a
      // login that lost to revokeAllForUser; else gone.
      const reason = (error as { reason?: string }).reason;
      const status = reason === 'csrf' || reason === 'rotated' ? 403 : reason === 'epoch' ? 409 : 410;
      return { status, body: { error: (error as Error).message } };
    }
    if (isLarderError(error, 'E_SESSION_STORE')) return { status: 503 };
    throw error;
  }
}

/** What a handler answering by hand sets: caching, its own cookie, its own Vary. */
export const RAW_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/plain',
  'cache-control': 'public, max-age=300',
  'set-cookie': 'theme=dark; Path=/',
  vary: 'Accept-Encoding',
};

const ROUTES: readonly Route[] = [
  {
    method: 'GET',
    path: '/public',
    run: async (ctx) => ({ status: 200, body: { status: ctx.status, user: ctx.session?.userId ?? null } }),
  },
  {
    method: 'GET',
    path: '/me',
    guard: true,
    run: async (ctx) => ({
      status: 200,
      body: { user: ctx.session!.userId, id: ctx.session!.id, data: ctx.session!.data, grace: ctx.grace },
    }),
  },
  {
    method: 'POST',
    path: '/login',
    run: async (ctx, q) =>
      guarded(async () => {
        const role = q.get('role');
        const session = await ctx.login(q.get('user') ?? 'alice', role === null ? {} : { data: { role } });
        return { status: 200, body: { id: session.id } };
      }),
  },
  {
    // The login of docs/sessions.md: the password is checked inside `verify`, which reads it.
    method: 'POST',
    path: '/verified-login',
    run: async (ctx, q, app) =>
      guarded(async () => {
        const user = q.get('user') ?? 'alice';
        const gate = q.get('gate');
        const session = await ctx.login(user, {
          verify: async () => {
            const stored = app.passwords.get(user);
            // Hold here (a slow hash) so a test can change the password meanwhile.
            if (gate !== null) await app.gates.pass(gate);
            return stored !== undefined && stored === q.get('password');
          },
        });
        return session === undefined ? { status: 401 } : { status: 200, body: { id: session.id } };
      }),
  },
  {
    method: 'POST',
    path: '/logout',
    run: async (ctx) => guarded(async () => (await ctx.logout(), { status: 204 })),
  },
  {
    method: 'POST',
    path: '/data',
    guard: true,
    run: async (ctx, q) =>
      guarded(async () => {
        const session = await ctx.update({ [q.get('key') ?? 'x']: Number(q.get('value')) });
        return { status: 200, body: { data: session.data } };
      }),
  },
  {
    method: 'POST',
    path: '/rotate',
    guard: true,
    run: async (ctx, q) =>
      guarded(async () => {
        const session = await ctx.rotate();
        const role = q.get('role');
        if (role !== null) await ctx.update({ role });
        return { status: 200, body: { id: session.id } };
      }),
  },
  {
    method: 'POST',
    path: '/revoke-others',
    guard: true,
    run: async (ctx) => guarded(async () => ({ status: 200, body: { count: await ctx.revokeOthers() } })),
  },
  {
    method: 'GET',
    path: '/csrf',
    guard: true,
    run: async (ctx) => guarded(async () => ({ status: 200, body: { token: ctx.csrfToken() } })),
  },
  {
    method: 'POST',
    path: '/echo',
    guard: true,
    run: async (ctx) => ({ status: 200, body: { user: ctx.session!.userId } }),
  },
  {
    method: 'POST',
    path: '/slow',
    guard: true,
    run: async (ctx, q, app) =>
      guarded(async () => {
        await app.gates.pass(q.get('gate') ?? 'slow');
        await ctx.update({ x: 1 });
        return { status: 200 };
      }),
  },
  {
    method: 'POST',
    path: '/raw/login',
    run: async (ctx, q) =>
      guarded(async () => {
        await ctx.login(q.get('user') ?? 'alice');
        return { status: 200, body: 'welcome', raw: RAW_HEADERS };
      }),
  },
  {
    method: 'POST',
    path: '/raw/logout',
    run: async (ctx) => guarded(async () => (await ctx.logout(), { status: 200, body: 'bye', raw: RAW_HEADERS })),
  },
  {
    method: 'GET',
    path: '/raw/me',
    run: async (ctx) => ({ status: 200, body: ctx.session?.userId ?? 'nobody', raw: RAW_HEADERS }),
  },
  {
    method: 'POST',
    path: '/admin/revoke-all',
    run: async (_ctx, q, app) => ({
      status: 200,
      body: { count: await app.sessions.revokeAllForUser(q.get('user') ?? 'alice', { reason: 'password-change' }) },
    }),
  },
];

export interface TestApp {
  readonly framework: Framework;
  readonly url: string;
  readonly port: number;
  /** Handler runs per path. */
  readonly hits: Map<string, number>;
  readonly gates: Gates;
  readonly passwords: Map<string, string>;
  close(): Promise<void>;
}

function count(hits: Map<string, number>, path: string): void {
  hits.set(path, (hits.get(path) ?? 0) + 1);
}

function addressOf(server: Server): number {
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

export async function startApp(
  framework: Framework,
  sessions: SessionManager<TestData>,
  options: SessionMiddlewareOptions = {},
): Promise<TestApp> {
  const hits = new Map<string, number>();
  const state: AppState = { sessions, gates: new Gates(), passwords: new Map() };
  let port: number;
  let close: () => Promise<void>;

  if (framework === 'node') {
    const session = nodeSessions(sessions, options);
    const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
      const ctx = await session(req, res);
      if (ctx === undefined) return;
      const url = new URL(req.url ?? '/', 'http://localhost');
      const route = ROUTES.find((r) => r.method === req.method && r.path === url.pathname);
      if (route === undefined) {
        res.writeHead(404).end();
        return;
      }
      if (route.guard === true && ctx.session === undefined) {
        res.writeHead(401).end('Unauthorized');
        return;
      }
      count(hits, route.path);
      const reply = await route.run(ctx, url.searchParams, state);
      if (reply.raw !== undefined) {
        res.writeHead(reply.status, reply.raw).end(String(reply.body));
        return;
      }
      res.statusCode = reply.status;
      if (reply.body === undefined) res.end();
      else res.setHeader('content-type', 'application/json').end(JSON.stringify(reply.body));
    };
    const server = createServer((req, res) => {
      handle(req, res).catch(() => res.writeHead(500).end());
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = addressOf(server);
    close = () => closeServer(server);
  } else if (framework === 'express') {
    const app = express();
    const auth = expressSessions(sessions, options);
    app.use(auth);
    for (const route of ROUTES) {
      const handler = async (req: express.Request, res: express.Response) => {
        count(hits, route.path);
        const url = new URL(req.originalUrl, 'http://localhost');
        const reply = await route.run(auth.get(req), url.searchParams, state);
        res.status(reply.status);
        if (reply.raw !== undefined) res.set(reply.raw).send(String(reply.body));
        else if (reply.body === undefined) res.end();
        else res.json(reply.body);
      };
      const method = route.method === 'GET' ? 'get' : 'post';
      if (route.guard === true) app[method](route.path, auth.required, handler);
      else app[method](route.path, handler);
    }
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = addressOf(server);
    close = () => closeServer(server);
  } else if (framework === 'fastify') {
    const app = Fastify();
    const auth = fastifySessions(sessions, options);
    await app.register(auth);
    for (const route of ROUTES) {
      app.route({
        method: route.method,
        url: route.path,
        ...(route.guard === true ? { preHandler: auth.required } : {}),
        handler: async (request, reply) => {
          count(hits, route.path);
          const url = new URL(request.url, 'http://localhost');
          const result = await route.run(auth.get(request), url.searchParams, state);
          reply.code(result.status);
          if (result.raw !== undefined) return reply.headers(result.raw).send(String(result.body));
          return result.body === undefined ? reply.send() : result.body;
        },
      });
    }
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as AddressInfo).port;
    close = async () => {
      app.server.closeAllConnections();
      await app.close();
    };
  } else {
    const app = new Hono<{ Variables: SessionVariables<TestData> }>();
    const auth = honoSessions(sessions, options);
    app.use(auth);
    for (const route of ROUTES) {
      const handler = async (c: import('hono').Context<{ Variables: SessionVariables<TestData> }>) => {
        count(hits, route.path);
        const url = new URL(c.req.url);
        const reply = await route.run(c.var.session, url.searchParams, state);
        if (reply.raw !== undefined) return new Response(String(reply.body), { status: reply.status, headers: reply.raw });
        if (reply.body === undefined) return c.body(null, reply.status as 200);
        return c.json(reply.body, reply.status as 200);
      };
      if (route.guard === true) app.on(route.method, route.path, auth.required, handler);
      else app.on(route.method, route.path, handler);
    }
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as Server;
    if (!server.listening) await once(server, 'listening');
    port = addressOf(server);
    close = () => closeServer(server);
  }
  return { framework, url: `http://127.0.0.1:${port}`, port, hits, gates: state.gates, passwords: state.passwords, close };
}
