/**
 * Private `redis-server` processes for tests that stop, pause, restart or count commands on
 * Redis: each runs on a spare port, keeps nothing on disk, and is stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

const reservations = join(tmpdir(), 'larder-test-ports');
const reserved: string[] = [];
process.once('exit', () => {
  for (const file of reserved) rmSync(file, { force: true });
});

/**
 * A port nothing listens on, reserved for this process until it exits. The reservation matters:
 * test files run in parallel, stop their servers and start them again on the same port, and their
 * clients reconnect to whatever answers there. Without it another file could start its server on
 * a port freed a moment ago and receive (and count) the first file's commands.
 */
export async function sparePort(): Promise<number> {
  mkdirSync(reservations, { recursive: true });
  for (;;) {
    const port = await unusedPort();
    if (reserve(join(reservations, String(port)))) return port;
  }
}

/** Creates the reservation file, or takes it over from a process that no longer runs. */
function reserve(file: string): boolean {
  try {
    writeFileSync(file, String(process.pid), { flag: 'wx' });
  } catch {
    const owner = readFileSync(file, 'utf8');
    // Empty: its owner is writing it right now.
    if (owner === '' || isRunning(Number(owner))) return false;
    writeFileSync(file, String(process.pid));
  }
  reserved.push(file);
  return true;
}

function isRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function unusedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

/** Sends `PING` over a raw socket; true on `+PONG`. */
export function ping(port: number, timeoutMs = 200): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
  });
}

/** The `process_id` of the Redis answering on `port`, or undefined when none answers. */
function serverPid(port: number, timeoutMs = 200): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = new Socket();
    let reply = '';
    const done = (pid: number | undefined) => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(timeoutMs, () => done(undefined));
    socket.once('error', () => done(undefined));
    socket.connect(port, '127.0.0.1', () => socket.write('INFO server\r\n'));
    socket.on('data', (data) => {
      reply += data.toString();
      const match = /process_id:(\d+)/.exec(reply);
      if (match !== null) done(Number(match[1]));
    });
  });
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly pid: number;
  /** SIGSTOP: the server keeps its connections but answers nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Stops the process (SIGTERM, then SIGKILL) and waits for it to exit. */
  stop(): Promise<void>;
  /** Starts a new process on the same port (data is not kept). */
  restart(): Promise<void>;
}

/**
 * Starts `redis-server` on `port` and waits until *this* process answers there: test files run in
 * parallel, and another file's server may have taken a port that was spare a moment ago. Throws
 * {@link PortUnavailableError} then.
 */
async function launchOn(port: number, extraArgs: readonly string[]): Promise<ChildProcess> {
  // Nothing is saved, but a replica still writes the RDB of its full sync: not into our cwd.
  const rdb = `larder-test-${port}.rdb`;
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  args.push('--dir', tmpdir(), '--dbfilename', rdb, ...extraArgs);
  const child = spawn('redis-server', args, { stdio: 'ignore' });
  running.add(child);
  child.once('exit', () => {
    running.delete(child);
    rmSync(join(tmpdir(), rdb), { force: true });
  });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const pid = await serverPid(port);
    if (pid === child.pid) return child;
    if (pid !== undefined) {
      child.kill('SIGKILL');
      throw new PortUnavailableError(`port ${port} is taken by process ${pid}`);
    }
    // Most often the port was taken before another server answered on it; bad arguments also exit.
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new PortUnavailableError(`redis-server on port ${port} exited (${child.exitCode ?? child.signalCode})`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGKILL');
  throw new Error(`Timed out waiting for redis-server on port ${port}`);
}

class PortUnavailableError extends Error {}

export async function startRedis(options: { port?: number; args?: string[] } = {}): Promise<RedisServer> {
  const extraArgs = options.args ?? [];
  let port = options.port ?? (await sparePort());
  let child: ChildProcess;
  for (let attempt = 1; ; attempt++) {
    try {
      child = await launchOn(port, extraArgs);
      break;
    } catch (error) {
      // A port picked for us can be picked again; a port the caller chose cannot.
      if (!(error instanceof PortUnavailableError) || options.port !== undefined || attempt === 5) throw error;
      port = await sparePort();
    }
  }
  const launch = async () => {
    child = await launchOn(port, extraArgs);
  };
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return child.pid ?? -1;
    },
    pause: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 2_000);
      await exited;
      clearTimeout(timer);
    },
    restart: async () => {
      await server.stop();
      await launch();
    },
  };
  return server;
}
