/**
 * `npm start`. The demo service (a product API on Postgres + Redis) is being built; until it
 * lands, this shows Larder working on its embedded defaults.
 */
import { createCache } from '../src/index.js';

const cache = createCache({ namespace: 'demo' });
let loads = 0;
const loadUser = async () => {
  loads++;
  await new Promise((resolve) => setTimeout(resolve, 50));
  return { id: 1, name: 'Ada Lovelace' };
};
const started = performance.now();
const users = await Promise.all(Array.from({ length: 100 }, () => cache.getOrSet('user:1', loadUser)));
console.log(
  `100 concurrent reads of a cold key: ${loads} loader call, ${(performance.now() - started).toFixed(0)} ms, ${users[0]?.name}`,
);
console.log('The demo service (Postgres + Redis, `npm run load`) is coming with the demo issue.');
await cache.close();
