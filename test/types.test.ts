/**
 * Type tests: what `tsc` infers for callers (checked by `npm run typecheck`, which covers test/),
 * plus a runtime pass so the file is a real test.
 */
import { describe, expectTypeOf, it } from 'vitest';
import { createCache, type Cache, type CacheStats, type LoaderContext } from '../src/index.js';

describe('types', () => {
  it('infers values from loaders and schemas', async () => {
    const cache: Cache = createCache({ namespace: 'types' });
    const user = await cache.getOrSet('u', async () => ({ id: 1, name: 'Ada' }));
    expectTypeOf(user).toEqualTypeOf<{ id: number; name: string }>();
    const maybe = await cache.getOrSet('m', (): Promise<string | undefined> => Promise.resolve(undefined));
    expectTypeOf(maybe).toEqualTypeOf<string | undefined>();
    const schema = {
      '~standard': {
        version: 1 as const,
        vendor: 'test',
        validate: (value: unknown) => ({ value: value as { id: number } }),
      },
    };
    const checked = await cache.getOrSet('s', () => ({ id: 2 }), { schema });
    expectTypeOf(checked).toEqualTypeOf<{ id: number }>();
    const many = await cache.getOrSetMany(['a', 'b'], async (keys) => keys.map((k) => k.length));
    // A key the loader leaves out is "not found": `undefined`, as in getMany.
    expectTypeOf(many).toEqualTypeOf<(number | undefined)[]>();
    expectTypeOf(await cache.get<number>('a')).toEqualTypeOf<number | undefined>();
    expectTypeOf(await cache.getMany<number>(['a'])).toEqualTypeOf<(number | undefined)[]>();
    expectTypeOf(cache.stats()).toEqualTypeOf<CacheStats>();
    // A loader that takes its context still gives the value's type; `stale` is then unknown.
    const found = await cache.getOrSet('f', async ({ signal, stale }) => {
      expectTypeOf(signal).toEqualTypeOf<AbortSignal>();
      expectTypeOf(stale).toEqualTypeOf<unknown>();
      return { id: 3, name: 'Grace' };
    });
    expectTypeOf(found).toEqualTypeOf<{ id: number; name: string }>();
    // Naming the type types `stale` too, and holds the loader to it.
    const named = await cache.getOrSet<number>('c', (context) => {
      expectTypeOf(context).toEqualTypeOf<LoaderContext<number>>();
      expectTypeOf(context.stale).toEqualTypeOf<number | undefined>();
      return 1;
    });
    expectTypeOf(named).toEqualTypeOf<number>();
    // @ts-expect-error: the loader returns a string, not the number named
    await cache.getOrSet<number>('c2', () => 'one').catch(() => undefined);
    // With a schema, its output is the value's type whatever the loader returns (it is validated),
    // and `stale` has it.
    const parsed = await cache.getOrSet(
      's2',
      ({ stale }) => {
        expectTypeOf(stale).toEqualTypeOf<{ id: number } | undefined>();
        return JSON.parse('{"id":4}') as unknown;
      },
      { schema, ttl: 1000 },
    );
    // `unknown` may be `undefined`, which is "not found" (never validated).
    expectTypeOf(parsed).toEqualTypeOf<{ id: number } | undefined>();
    const someObject = (): object => ({ id: 5 });
    const validated = await cache.getOrSet('s3', someObject, { schema });
    expectTypeOf(validated).toEqualTypeOf<{ id: number }>();
    const notFound = await cache.getOrSet('s4', async () => (Math.random() > 2 ? { id: 6 } : undefined), { schema });
    expectTypeOf(notFound).toEqualTypeOf<{ id: number } | undefined>();
    // Naming the type with a schema: the loader is held to it.
    const namedSchema = await cache.getOrSet<{ id: number }>('s5', () => ({ id: 7 }), { schema });
    expectTypeOf(namedSchema).toEqualTypeOf<{ id: number }>();
    // @ts-expect-error: the loader must be a function
    await cache.getOrSet('x', 42).catch(() => undefined);
    // @ts-expect-error: durations are numbers of milliseconds
    expectTypeOf(createCache).toBeCallableWith({ ttl: '5m' });
    await cache.close();
  });
});
