/**
 * Tag versions kept in memory: bounded, whatever the number of distinct tags seen.
 */
import { describe, expect, it } from 'vitest';
import { TagVersions } from '../src/core/tags.js';
import { memoryStore } from '../src/stores/memory.js';

describe('TagVersions', () => {
  it('keeps at most 10,000 versions in memory; a forgotten one is read from the store again', async () => {
    const store = memoryStore();
    const tags = new TagVersions(
      store,
      (tag) => `t:${tag}`,
      () => true,
      200,
    );
    for (let i = 0; i < 20_000; i++) tags.learn(`tag${i}`, 'v');
    // The oldest went first: the local copy no longer vouches for it.
    expect(tags.validNow([['tag0', 'v']])).toBeUndefined();
    expect(tags.validNow([['tag19999', 'v']])).toBe(true);
    // Read again from the store (where it is absent: never invalidated there).
    expect(await tags.current(['tag0'])).toEqual([['tag0', '']]);
    await store.close();
  });
});
