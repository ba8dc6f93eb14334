/**
 * The session flow over Node's `IncomingMessage` / `ServerResponse`, shared by the node:http,
 * Express and Fastify adapters (kept here so that no adapter loads another): the request side,
 * the hook that applies the session headers when the response head is written, and the short
 * answers the middleware gives itself.
 *
 * @module
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { HeaderTarget, HttpExchange, SessionHeaders } from './http.js';

export function nodeExchange(req: IncomingMessage, ip: string | undefined): HttpExchange {
  return {
    method: req.method ?? 'GET',
    ip,
    header: (name) => {
      const value = req.headers[name];
      return Array.isArray(value) ? value.join(', ') : value;
    },
  };
}

function values(value: number | string | readonly string[] | undefined): readonly string[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [String(value)];
}

function nodeTarget(res: ServerResponse): HeaderTarget {
  return {
    get: (name) => values(res.getHeader(name)),
    set: (name, list) => void res.setHeader(name, name === 'set-cookie' ? [...list] : list.join(', ')),
  };
}

/**
 * Folds the headers passed to `writeHead(status, [reason], headers)` into the response the way
 * Node does (an object replaces, a flat `[name, value, …]` array replaces then appends), so that
 * the session headers can be applied on top of them.
 */
function foldHeaders(res: ServerResponse, headers: unknown): boolean {
  if (Array.isArray(headers)) {
    if (headers.length % 2 !== 0) return false;
    for (let i = 0; i < headers.length; i += 2) res.removeHeader(String(headers[i]));
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i]) res.appendHeader(String(headers[i]), headers[i + 1] as string | readonly string[]);
    }
    return true;
  }
  if (typeof headers === 'object' && headers !== null) {
    for (const [name, value] of Object.entries(headers as OutgoingHttpHeaders)) {
      if (name !== '' && value !== undefined) res.setHeader(name, value);
    }
  }
  return true;
}

/**
 * Applies `headers` when the response head is written, whoever writes it: every path to the
 * wire (`end()`, `write()`, `flushHeaders()`, an explicit `writeHead()`, Express and Fastify
 * replies) goes through `writeHead`, so the session cookie, `Cache-Control: no-store` and `Vary`
 * win over anything a handler set or passed to `writeHead` (the on-headers technique, in a few
 * lines).
 */
export function applyOnWriteHead(res: ServerResponse, headers: SessionHeaders): void {
  const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => ServerResponse;
  let applied = false;
  res.writeHead = function writeHeadWithSession(...args: unknown[]): ServerResponse {
    if (applied || headers.empty || res.headersSent) return writeHead(...args);
    applied = true;
    const [status, second, third] = args;
    const reason = typeof second === 'string' ? second : undefined;
    const given = typeof second === 'string' ? third : second;
    if (!foldHeaders(res, given)) return writeHead(...args);
    headers.applyTo(nodeTarget(res));
    return reason === undefined ? writeHead(status) : writeHead(status, reason);
  };
}

/** Answers with a short plain-text status, never cached (a 503 says when to retry). */
export function nodeReject(res: ServerResponse, status: number, message: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  if (status === 503) res.setHeader('Retry-After', '1');
  res.end(message);
}
