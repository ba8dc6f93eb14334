import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { REDIS_URL, uniqueNamespace } from './helpers/redis.js';

describe('timeouts leave nothing behind', () => {
  it('a process whose loaders never settle exits on its own after soft and hard timeouts', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/timeouts-exit.ts'], {
      env: { ...process.env, REDIS_URL, NAMESPACE: uniqueNamespace('timers') },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const started = Date.now();
    const code = await new Promise<number | null>((resolve) => {
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.on('exit', (c) => {
        clearTimeout(killer);
        resolve(c);
      });
    });
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(8_000);
    expect(JSON.parse(output)).toEqual({
      soft: 'old value',
      hard: 'hard timeout',
      both: 'old value',
      afterHard: 'old value',
      aborted: 'AbortError',
    });
  });
});
