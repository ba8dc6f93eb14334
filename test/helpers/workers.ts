/**
 * Child processes that speak in lines: a test starts a fixture, reads what it prints one line at
 * a time, and writes commands to its stdin. Every worker started is killed by `killWorkers()`.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { createInterface } from 'node:readline';

export interface Worker {
  /** stdin and stdout are pipes; stderr goes to the test's own. */
  readonly child: ChildProcessByStdio<Writable, Readable, null>;
  /** The next line the worker prints; rejects when it exits first. */
  next(): Promise<string>;
}

const started: Worker[] = [];

/** Starts `fixture` (a TypeScript file, run through tsx) with `env` added to this process's. */
export function startWorker(fixture: string, env: Record<string, string>): Worker {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const worker: Worker = {
    child,
    next: async () => {
      const { value, done } = await lines.next();
      if (done === true) throw new Error(`${fixture} exited`);
      return value;
    },
  };
  started.push(worker);
  return worker;
}

/** Kills (SIGKILL) every worker started so far; for `afterEach`. */
export function killWorkers(): void {
  for (const worker of started.splice(0)) worker.child.kill('SIGKILL');
}
