/**
 * Type tests (checked by `tsc`, run as no-ops by vitest): session data is typed from the schema or
 * the type argument through the manager and every adapter.
 */
import type { StandardSchemaV1 } from '@standard-schema/spec';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { describe, expectTypeOf, it } from 'vitest';
import { expressSessions } from '../../src/adapters/express.js';
import { fastifySessions } from '../../src/adapters/fastify.js';
import { honoSessions, type SessionVariables } from '../../src/adapters/hono.js';
import { nodeSessions } from '../../src/adapters/node.js';
import {
  createSessions,
  type IssuedSession,
  type Session,
  type SessionContext,
  type SessionInfo,
  type SessionManager,
  type ValidationResult,
} from '../../src/sessions/index.js';
import { memoryStore } from '../../src/stores/memory.js';

interface Cart {
  items: string[];
  coupon?: string;
}
const cartSchema: StandardSchemaV1<unknown, Cart> = {
  '~standard': { version: 1, vendor: 'test', validate: (value) => ({ value: value as Cart }) },
};

/** Bodies are only type-checked (by tsc): they never run. */
function typeOnly(body: () => void): void {
  expectTypeOf(body).toBeFunction();
}

describe('session types', () => {
  it('data is inferred from the schema and required when it has required keys', () =>
    typeOnly(() => {
      const sessions = createSessions({ store: memoryStore(), schema: cartSchema });
      expectTypeOf(sessions).toEqualTypeOf<SessionManager<Cart>>();
      expectTypeOf(sessions.create('u', { data: { items: [] } })).resolves.toEqualTypeOf<IssuedSession<Cart>>();
      // @ts-expect-error data is required: Cart has required keys
      void sessions.create('u');
      // @ts-expect-error items must be a string array
      void sessions.create('u', { data: { items: [1] } });
      expectTypeOf(sessions.validate('t')).resolves.toEqualTypeOf<ValidationResult<Cart>>();
      expectTypeOf(sessions.listForUser('u')).resolves.toEqualTypeOf<SessionInfo[]>();
      expectTypeOf<Session<Cart>['data']>().toEqualTypeOf<Readonly<Cart>>();
    }));

  it('untyped sessions take optional data; patches may delete keys with undefined', () =>
    typeOnly(() => {
      const sessions = createSessions({ store: memoryStore() });
      void sessions.create('u');
      const typed = createSessions<{ role?: string; visits: number }>({ store: memoryStore() });
      const session = {} as Session<{ role?: string; visits: number }>;
      expectTypeOf<Parameters<typeof typed.update>[1]>().toMatchTypeOf<{
        role?: string | undefined;
        visits?: number | undefined;
      }>();
      void typed.update(session, { role: undefined });
      // @ts-expect-error unknown key
      void typed.update(session, { other: 1 });
    }));

  it('every adapter hands handlers the typed context', () =>
    typeOnly(() => {
      const sessions = createSessions({ store: memoryStore(), schema: cartSchema });

      const node = nodeSessions(sessions);
      expectTypeOf(node).returns.resolves.toEqualTypeOf<SessionContext<Cart> | undefined>();

      const auth = expressSessions(sessions);
      const app = express();
      app.use(auth);
      app.get('/', auth.required, (req, res) => {
        expectTypeOf(auth.get(req).session).toEqualTypeOf<Session<Cart> | undefined>();
        res.end();
      });

      const fastify = Fastify();
      const plugin = fastifySessions(sessions);
      void fastify.register(plugin);
      fastify.get('/', { preHandler: plugin.required }, async (request) => {
        expectTypeOf(plugin.get(request).session?.data.items).toEqualTypeOf<string[] | undefined>();
        return {};
      });

      const hono = new Hono<{ Variables: SessionVariables<Cart> }>();
      const mw = honoSessions(sessions);
      hono.use(mw);
      hono.get('/', mw.required, (c) => {
        expectTypeOf(c.var.session).toEqualTypeOf<SessionContext<Cart>>();
        expectTypeOf<Parameters<SessionContext<Cart>['login']>[1]>().toMatchTypeOf<{ data: Cart }>();
        expectTypeOf(c.get('session')).toEqualTypeOf<SessionContext<Cart>>();
        return c.text('ok');
      });
    }));

  it('login with verify may refuse (undefined); without it, it always resolves a session', () =>
    typeOnly(() => {
      const sessions = createSessions({ store: memoryStore(), schema: cartSchema });
      const ctx = {} as SessionContext<Cart>;
      const verify = async () => true;
      expectTypeOf(ctx.login('u', { verify, data: { items: [] } })).resolves.toEqualTypeOf<Session<Cart> | undefined>();
      expectTypeOf(ctx.login('u', { data: { items: [] } })).resolves.toEqualTypeOf<Session<Cart>>();
      // @ts-expect-error data is required: Cart has required keys
      void ctx.login('u', { verify });
      // @ts-expect-error verify decides the epoch itself
      void ctx.login('u', { verify, epoch: 1, data: { items: [] } });
      expectTypeOf(sessions.login('u', { verify, data: { items: [] } })).resolves.toEqualTypeOf<
        IssuedSession<Cart> | undefined
      >();
      // @ts-expect-error verify is required on the manager's login
      void sessions.login('u', { data: { items: [] } });
    }));
});
