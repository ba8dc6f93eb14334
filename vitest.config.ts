import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // Child processes and private redis-servers: keep files from starving each other on 2 cores.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
