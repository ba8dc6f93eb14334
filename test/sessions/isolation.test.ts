/**
 * Importing `larder/sessions` or one adapter loads no web framework and no Redis client: each
 * entry is imported in a fresh process whose module resolution refuses those packages.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

async function importAlone(entry: string): Promise<string> {
  const { stdout } = await run(
    process.execPath,
    [
      '--import',
      'tsx',
      '--import',
      './test/sessions/fixtures/deny-frameworks.mjs',
      '--input-type=module',
      '-e',
      `const m = await import(${JSON.stringify(entry)}); console.log(Object.keys(m).sort().join(','));`,
    ],
    { timeout: 20_000 },
  );
  return stdout.trim();
}

describe('entry points load only what they need', () => {
  it('the deny hook works (a framework import fails)', async () => {
    await expect(importAlone('express')).rejects.toThrow(/LOADED express/);
  });

  it.each([
    ['./src/sessions/index.ts', 'createSessions'],
    ['./src/adapters/node.ts', 'nodeSessions'],
    ['./src/adapters/express.ts', 'expressSessions'],
    ['./src/adapters/fastify.ts', 'fastifySessions'],
    ['./src/adapters/hono.ts', 'honoSessions'],
  ])('%s imports without any framework or Redis client', async (entry, name) => {
    expect((await importAlone(entry)).split(',')).toContain(name);
  });
});
