/**
 * `HttpExchange` over Node's `IncomingMessage` / `ServerResponse`, shared by the node:http and
 * Express adapters (kept here so that neither adapter loads the other).
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpExchange } from './http.js';

export function nodeExchange(req: IncomingMessage, res: ServerResponse, ip: string | undefined): HttpExchange {
  return {
    method: req.method ?? 'GET',
    ip,
    header: (name) => {
      const value = req.headers[name];
      return Array.isArray(value) ? value.join(', ') : value;
    },
    appendHeader: (name, value) => void res.appendHeader(name, value),
    setHeader: (name, value) => void res.setHeader(name, value),
  };
}

/** Answers with a short plain-text status, never cached. */
export function nodeReject(res: ServerResponse, status: number, message: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(message);
}
