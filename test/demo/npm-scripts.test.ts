/**
 * `npm start` and `npm run load` as a process manager runs them: npm in a session of its own
 * (as `setsid`), and SIGTERM sent to the npm process only. npm forwards the signal to its child;
 * the scripts `exec` node, so that child is the service itself (no `sh` in between to die and
 * leave node orphaned), which drains and exits 0. Afterwards nothing is left in the process group.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { eventually } from '../helpers/redis.js';
import { dropSchema, testEnv, uniqueSchema } from './helpers.js';

const schema = uniqueSchema('npm');
const root = fileURLToPath(new URL('../..', import.meta.url));

afterAll(async () => {
  await dropSchema(schema);
});

/** The processes of process group `pgid`: `pid command line`. */
function group(pgid: number): string[] {
  return execFileSync('ps', ['-e', '-o', 'pid=,pgid=,args='], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([, id]) => Number(id) === pgid)
    .map(([pid, , ...args]) => `${pid} ${args.join(' ')}`);
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** `npm run <script>` in a new session (its own process group, as under setsid), output collected. */
function npm(script: string, env: Record<string, string | undefined>): { child: ChildProcess; output: () => string } {
  const child = spawn('npm', ['run', script], {
    cwd: root,
    detached: true,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return { child, output: () => output };
}

/** Kills whatever is left of the group (a failed test must not leave a service running). */
function cleanUp(pgid: number | undefined): void {
  if (pgid !== undefined && groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
}

it('npm start: SIGTERM to npm reaches the service, which drains and exits; nothing is left', async () => {
  const { child, output } = npm('start', testEnv(schema, { LOG: '1' }));
  const pgid = child.pid!;
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.once('exit', (code, signal) => resolve([code, signal])),
  );
  try {
    await eventually(() => /listening on (http:\S+)/.test(output()), 30_000, 'the service to listen');
    const url = /listening on (http:\S+)/.exec(output())![1]!;
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    // npm, and under it the service itself: no shell in between.
    const processes = group(pgid);
    expect(processes.some((line) => /\bdemo\/main\.ts\b/.test(line))).toBe(true);
    expect(processes.filter((line) => /\bsh -c\b/.test(line))).toEqual([]);

    process.kill(pgid, 'SIGTERM');
    const [code] = await exited;
    expect(output()).toContain('[demo] SIGTERM: draining in-flight requests');
    expect(output()).toContain('[demo] stopped');
    expect(code).toBe(0);
    await eventually(() => !groupAlive(pgid), 10_000, 'every process of the group to exit');
    await expect(fetch(`${url}/healthz`)).rejects.toThrow('fetch failed');
  } finally {
    cleanUp(pgid);
  }
}, 60_000);

it('npm run load: SIGTERM to npm stops the run, its service and its load generator', async () => {
  const { child, output } = npm(
    'load',
    testEnv(schema, { PORT: undefined, LOAD_DURATION: '30', LOAD_WARMUP: '0', LOAD_CONNECTIONS: '4', LOAD_USERS: '2' }),
  );
  const pgid = child.pid!;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    // The first measured run has started: the service, and the load generator in its own process.
    await eventually(() => /\[load\] off: 30 s/.test(output()), 30_000, 'the first run to start');
    const processes = group(pgid);
    expect(processes.some((line) => /\bdemo\/load\.ts\b/.test(line))).toBe(true);
    expect(processes.some((line) => /load-worker\.ts\b/.test(line))).toBe(true);
    expect(processes.filter((line) => /\bsh -c\b/.test(line))).toEqual([]);

    const started = Date.now();
    process.kill(pgid, 'SIGTERM');
    await exited;
    await eventually(() => !groupAlive(pgid), 10_000, 'every process of the group to exit');
    // Well before the 30 s run would have ended.
    expect(Date.now() - started).toBeLessThan(10_000);
  } finally {
    cleanUp(pgid);
  }
}, 60_000);
