/**
 * Real local Redis deployments beyond one server, for the cluster and Sentinel suites:
 *
 * - {@link startCluster}: a 3-master, 3-replica Redis Cluster started by
 *   `scripts/redis-cluster.sh` in a directory of its own (so test files can each run one), with
 *   failover (kill a master by PID, wait for its replica's promotion), node restarts, slot
 *   migration step by step (`CLUSTER SETSLOT … MIGRATING/IMPORTING` + `MIGRATE`, so a test can
 *   read in the middle of it) and resharding with `redis-cli --cluster reshard`.
 * - {@link startSentinel}: one master, its replicas and three `redis-server --sentinel`
 *   processes, with a forced failover (kill the master) and a wait for the new one.
 *
 * Everything polls for readiness; nothing sleeps and hopes.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createClient } from 'redis';
import { ping, sparePort, startRedis, type RedisServer } from './redis-server.js';

const run = promisify(execFile);
export const CLUSTER_SCRIPT = fileURLToPath(new URL('../../scripts/redis-cluster.sh', import.meta.url));

/** Polls `check` every 50 ms until it returns a value other than `undefined`/`false`. */
export async function until<T>(check: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`, { cause: last });
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

type Admin = ReturnType<typeof createClient<{}, {}, {}, 2>>;

/** Short-lived admin connections to single nodes (RESP2: plain strings and arrays). */
class Admins {
  readonly #clients = new Map<number, Promise<Admin>>();

  async command<T = unknown>(port: number, args: string[]): Promise<T> {
    let pending = this.#clients.get(port);
    if (pending === undefined) {
      const client = createClient({
        RESP: 2,
        socket: { port, host: '127.0.0.1', reconnectStrategy: false, connectTimeout: 1_000 },
      });
      client.on('error', () => undefined);
      pending = client.connect();
      this.#clients.set(port, pending);
    }
    try {
      const client = await pending;
      if (!client.isReady) throw new Error(`node ${port} is not connected`);
      return (await client.sendCommand(args, { timeout: 2_000 })) as T;
    } catch (error) {
      this.#clients.delete(port);
      void pending.then((c) => c.destroy()).catch(() => undefined);
      throw error;
    }
  }

  forget(port: number): void {
    const pending = this.#clients.get(port);
    this.#clients.delete(port);
    void pending?.then((c) => c.destroy()).catch(() => undefined);
  }

  close(): void {
    for (const port of [...this.#clients.keys()]) this.forget(port);
  }
}

/** `INFO commandstats` text as command → calls. */
function parseCommandStats(info: string): Map<string, number> {
  const stats = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) stats.set(match[1]!, Number(match[2]));
  return stats;
}

export interface ClusterNode {
  readonly id: string;
  readonly port: number;
  readonly role: 'master' | 'replica';
  /** The master's id, for a replica. */
  readonly masterId: string | undefined;
  /** Flagged `fail` (or `fail?`) by the node asked. */
  readonly failing: boolean;
  /** Slot ranges served, inclusive. */
  readonly slots: readonly (readonly [number, number])[];
}

function parseNodes(text: string): ClusterNode[] {
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const [id, addr, flags, master, , , , , ...slots] = line.trim().split(' ');
      const port = Number(addr!.split('@')[0]!.split(':')[1]);
      const flagList = flags!.split(',');
      return {
        id: id!,
        port,
        role: flagList.includes('master') ? 'master' : 'replica',
        masterId: master === '-' ? undefined : master,
        failing: flagList.includes('fail') || flagList.includes('fail?'),
        slots: slots
          .filter((s) => !s.startsWith('['))
          .map((s): readonly [number, number] => {
            const [from, to] = s.split('-');
            return [Number(from), Number(to ?? from)];
          }),
      } satisfies ClusterNode;
    });
}

export interface LocalCluster {
  /** The script's state directory. */
  readonly dir: string;
  /** Every node's port, masters first (as created). */
  readonly ports: readonly number[];
  /** Startup nodes for clients: `createCluster({ rootNodes })` and `new Cluster(startupNodes)`. */
  readonly rootNodes: readonly { url: string }[];
  readonly startupNodes: readonly { host: string; port: number }[];
  pid(port: number): Promise<number>;
  /** Runs a command on one node. */
  command<T = unknown>(port: number, args: string[]): Promise<T>;
  /** The topology as a live node sees it. */
  nodes(): Promise<ClusterNode[]>;
  masters(): Promise<ClusterNode[]>;
  /** The master serving `slot`. */
  ownerOf(slot: number): Promise<ClusterNode>;
  /** `CONFIG RESETSTAT` on every live master. */
  resetStats(): Promise<void>;
  /** `INFO commandstats` summed over the live masters. */
  masterStats(): Promise<Map<string, number>>;
  /** SIGKILL a node (default: a master that serves slots) once its replica caught up; returns its port. */
  kill(port?: number): Promise<number>;
  /** Waits until a replica of the killed master serves its slots and the cluster is ok again. */
  waitForFailover(killedPort: number, timeoutMs?: number): Promise<{ promoted: number; ms: number }>;
  /** Starts a killed node again (it rejoins, a former master as a replica) and waits for its sync. */
  restart(port: number): Promise<void>;
  /**
   * Moves `slot` to the master on `toPort` step by step: IMPORTING/MIGRATING, then `MIGRATE` of
   * `keysPerStep` keys at a time with `between(step)` awaited before each step, then `SETSLOT
   * NODE` on every master. Reads during `between` meet ASK and TRYAGAIN.
   */
  migrateSlot(
    slot: number,
    toPort: number,
    options?: { keysPerStep?: number; between?: (step: number) => Promise<void> },
  ): Promise<void>;
  /** `redis-cli --cluster reshard`: moves `count` slots from one master to another. */
  reshard(fromPort: number, toPort: number, count: number): Promise<void>;
  /** Waits until every live node reports `cluster_state:ok` and agrees on the slot owners. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** `cluster-node-timeout`, ms: how fast a dead master is detected. @default 2000 */
  nodeTimeout?: number;
}

const live = new Set<string>();
process.once('exit', () => {
  // A crashed test file must not leave a cluster behind.
  for (const dir of live) {
    try {
      execFileSync(CLUSTER_SCRIPT, ['stop'], { env: { ...process.env, LARDER_CLUSTER_DIR: dir }, stdio: 'ignore' });
    } catch {
      // best effort
    }
  }
});

/** Starts a 3-master, 3-replica cluster in a directory of its own, through the script. */
export async function startCluster(options: ClusterOptions = {}): Promise<LocalCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'larder-cluster-'));
  const env = {
    ...process.env,
    LARDER_CLUSTER_DIR: dir,
    LARDER_CLUSTER_NODE_TIMEOUT: String(options.nodeTimeout ?? 2_000),
  };
  const script = (...args: string[]) => run(CLUSTER_SCRIPT, args, { env, timeout: 60_000 });
  live.add(dir);
  const { stdout } = await script('start');
  const ports = stdout.trim().split(/\s+/).map(Number);
  const admins = new Admins();
  const dead = new Set<number>();

  const cluster: LocalCluster = {
    dir,
    ports,
    rootNodes: ports.slice(0, 3).map((port) => ({ url: `redis://127.0.0.1:${port}` })),
    startupNodes: ports.slice(0, 3).map((port) => ({ host: '127.0.0.1', port })),
    pid: async (port) => Number((await readFile(join(dir, String(port), 'pid'), 'utf8')).trim()),
    command: (port, args) => admins.command(port, args),
    nodes: async () => {
      let last: unknown;
      for (const port of ports) {
        if (dead.has(port)) continue;
        try {
          return parseNodes(await admins.command<string>(port, ['CLUSTER', 'NODES']));
        } catch (error) {
          last = error;
        }
      }
      throw new Error('no live node answered CLUSTER NODES', { cause: last });
    },
    masters: async () => (await cluster.nodes()).filter((n) => n.role === 'master' && !n.failing && n.slots.length > 0),
    ownerOf: async (slot) => {
      const owner = (await cluster.masters()).find((n) => n.slots.some(([from, to]) => slot >= from && slot <= to));
      if (owner === undefined) throw new Error(`no master serves slot ${slot}`);
      return owner;
    },
    resetStats: async () => {
      await Promise.all((await cluster.masters()).map((m) => admins.command(m.port, ['CONFIG', 'RESETSTAT'])));
    },
    masterStats: async () => {
      const total = new Map<string, number>();
      for (const master of await cluster.masters()) {
        const stats = parseCommandStats(await admins.command<string>(master.port, ['INFO', 'commandstats']));
        for (const [command, calls] of stats) total.set(command, (total.get(command) ?? 0) + calls);
      }
      return total;
    },
    kill: async (port) => {
      const target = port ?? (await cluster.masters())[0]!.port;
      // What was written so far reached the replicas: the test is about availability, not about
      // the writes an asynchronous replica can lose in a crash.
      await admins.command(target, ['WAIT', '1', '2000']).catch(() => undefined);
      const pid = await cluster.pid(target);
      dead.add(target);
      admins.forget(target);
      process.kill(pid, 'SIGKILL');
      await until(async () => !(await ping(target, 100)), 5_000, `node ${target} to die`);
      return target;
    },
    waitForFailover: async (killedPort, timeoutMs = 30_000) => {
      const started = Date.now();
      const nodes = await cluster.nodes();
      const killed = nodes.find((n) => n.port === killedPort);
      if (killed === undefined) throw new Error(`unknown node ${killedPort}`);
      const promoted = await until(
        async () => {
          const now = await cluster.nodes();
          const replica = now.find(
            (n) => n.role === 'master' && n.slots.length > 0 && nodes.some((o) => o.id === n.id && o.masterId === killed.id),
          );
          return replica?.port;
        },
        timeoutMs,
        `a replica of ${killedPort} to take over`,
      );
      await cluster.waitHealthy(timeoutMs);
      return { promoted, ms: Date.now() - started };
    },
    restart: async (port) => {
      await script('restart-node', String(port));
      dead.delete(port);
      await until(
        async () => {
          const info = await admins.command<string>(port, ['INFO', 'replication']);
          return info.includes('role:master') || info.includes('master_link_status:up');
        },
        30_000,
        `node ${port} to rejoin`,
      );
      await cluster.waitHealthy();
    },
    migrateSlot: async (slot, toPort, { keysPerStep = 10, between } = {}) => {
      const all = await cluster.nodes();
      const source = await cluster.ownerOf(slot);
      const target = all.find((n) => n.port === toPort);
      if (target === undefined || target.role !== 'master') throw new Error(`${toPort} is not a master`);
      if (target.id === source.id) return;
      const s = String(slot);
      await admins.command(target.port, ['CLUSTER', 'SETSLOT', s, 'IMPORTING', source.id]);
      await admins.command(source.port, ['CLUSTER', 'SETSLOT', s, 'MIGRATING', target.id]);
      for (let step = 0; ; step++) {
        await between?.(step);
        const keys = await admins.command<string[]>(source.port, ['CLUSTER', 'GETKEYSINSLOT', s, String(keysPerStep)]);
        if (keys.length === 0) break;
        await admins.command(source.port, ['MIGRATE', '127.0.0.1', String(target.port), '', '0', '5000', 'KEYS', ...keys]);
      }
      // The target first, so that it owns the slot before the source starts redirecting to it.
      await admins.command(target.port, ['CLUSTER', 'SETSLOT', s, 'NODE', target.id]);
      await admins.command(source.port, ['CLUSTER', 'SETSLOT', s, 'NODE', target.id]);
      for (const master of await cluster.masters()) {
        if (master.id !== target.id && master.id !== source.id) {
          await admins.command(master.port, ['CLUSTER', 'SETSLOT', s, 'NODE', target.id]);
        }
      }
      await cluster.waitHealthy();
    },
    reshard: async (fromPort, toPort, count) => {
      const all = await cluster.nodes();
      const from = all.find((n) => n.port === fromPort);
      const to = all.find((n) => n.port === toPort);
      if (from === undefined || to === undefined) throw new Error('unknown node');
      await run(
        'redis-cli',
        [
          '--cluster',
          'reshard',
          `127.0.0.1:${toPort}`,
          '--cluster-from',
          from.id,
          '--cluster-to',
          to.id,
          '--cluster-slots',
          String(count),
          '--cluster-yes',
          '--cluster-pipeline',
          '20',
        ],
        { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 },
      );
      await cluster.waitHealthy();
    },
    waitHealthy: async (timeoutMs = 30_000) => {
      await until(
        async () => {
          const views: string[] = [];
          for (const port of ports) {
            if (dead.has(port)) continue;
            const info = await admins.command<string>(port, ['CLUSTER', 'INFO']);
            if (!info.includes('cluster_state:ok')) return false;
            const owners = parseNodes(await admins.command<string>(port, ['CLUSTER', 'NODES']))
              .filter((n) => n.role === 'master' && n.slots.length > 0)
              .map((n) => `${n.id}=${JSON.stringify(n.slots)}`)
              .sort()
              .join(' ');
            views.push(owners);
          }
          return views.length > 0 && views.every((v) => v === views[0]);
        },
        timeoutMs,
        'a healthy cluster',
      );
    },
    stop: async () => {
      admins.close();
      await script('stop');
      live.delete(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}

// --- Sentinel --------------------------------------------------------------------------------

export interface LocalSentinel {
  /** The master name the sentinels monitor. */
  readonly name: string;
  /** Sentinel addresses, for `createSentinel({ sentinelRootNodes })` and `new Redis({ sentinels })`. */
  readonly sentinels: readonly { host: string; port: number }[];
  /** Data nodes: the initial master first. */
  readonly servers: readonly RedisServer[];
  /** The port of the master the sentinels currently report. */
  masterPort(): Promise<number>;
  /** Runs a command on one node (data node or sentinel). */
  command<T = unknown>(port: number, args: string[]): Promise<T>;
  /** SIGKILL the current master once its replicas caught up; returns its port. */
  killMaster(): Promise<number>;
  /** Waits until the sentinels report a master other than `oldPort` and it answers as master. */
  waitForFailover(oldPort: number, timeoutMs?: number): Promise<{ port: number; ms: number }>;
  stop(): Promise<void>;
}

export interface SentinelOptions {
  /** Replicas of the master. @default 1 */
  replicas?: number;
  /** `down-after-milliseconds`: how long the master may be silent before a failover. @default 1000 */
  downAfter?: number;
}

/** One master, its replicas and 3 sentinels (quorum 2), each on a spare port. */
export async function startSentinel(options: SentinelOptions = {}): Promise<LocalSentinel> {
  const name = 'larder';
  const dir = mkdtempSync(join(tmpdir(), 'larder-sentinel-'));
  const admins = new Admins();
  const extra = ['--repl-diskless-sync-delay', '0'];
  const master = await startRedis({ args: extra });
  const replicas = await Promise.all(
    Array.from({ length: options.replicas ?? 1 }, () =>
      startRedis({ args: [...extra, '--replicaof', '127.0.0.1', String(master.port)] }),
    ),
  );
  const servers = [master, ...replicas];
  await until(
    async () => {
      for (const r of replicas) {
        if (!(await admins.command<string>(r.port, ['INFO', 'replication'])).includes('master_link_status:up')) return false;
      }
      return true;
    },
    15_000,
    'replicas to sync',
  );

  const children: ChildProcess[] = [];
  const sentinelPorts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await sparePort();
    const conf = join(dir, `sentinel-${port}.conf`);
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        'protected-mode no',
        `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${name} ${options.downAfter ?? 1_000}`,
        `sentinel failover-timeout ${name} 10000`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n'),
    );
    const child = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
    children.push(child);
    sentinelPorts.push(port);
  }
  const kill = (child: ChildProcess) => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const onExit = () => children.forEach(kill);
  process.once('exit', onExit);
  // Ready for a failover: each sentinel sees the replicas and the two other sentinels.
  await until(
    async () => {
      for (const port of sentinelPorts) {
        if (!(await ping(port))) return false;
        const others = await admins.command<unknown[]>(port, ['SENTINEL', 'SENTINELS', name]);
        const known = await admins.command<unknown[]>(port, ['SENTINEL', 'REPLICAS', name]);
        if (others.length < 2 || known.length < replicas.length) return false;
      }
      return true;
    },
    30_000,
    'sentinels to discover each other',
  );

  const masterPort = async () => {
    for (const port of sentinelPorts) {
      try {
        const [, p] = await admins.command<[string, string]>(port, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name]);
        return Number(p);
      } catch {
        // the next sentinel
      }
    }
    throw new Error('no sentinel answered');
  };

  return {
    name,
    sentinels: sentinelPorts.map((port) => ({ host: '127.0.0.1', port })),
    servers,
    masterPort,
    command: (port, args) => admins.command(port, args),
    killMaster: async () => {
      const port = await masterPort();
      const server = servers.find((s) => s.port === port)!;
      await admins.command(port, ['WAIT', String(replicas.length), '2000']).catch(() => undefined);
      admins.forget(port);
      process.kill(server.pid, 'SIGKILL');
      await until(async () => !(await ping(port, 100)), 5_000, 'the master to die');
      return port;
    },
    waitForFailover: async (oldPort, timeoutMs = 30_000) => {
      const started = Date.now();
      const port = await until(
        async () => {
          const now = await masterPort();
          if (now === oldPort) return false;
          const role = await admins.command<unknown[]>(now, ['ROLE']);
          return role[0] === 'master' ? now : false;
        },
        timeoutMs,
        'a new master',
      );
      return { port, ms: Date.now() - started };
    },
    stop: async () => {
      admins.close();
      process.removeListener('exit', onExit);
      await Promise.all(
        children.map(async (child) => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = once(child, 'exit');
          child.kill('SIGTERM');
          const timer = setTimeout(() => kill(child), 2_000);
          await exited;
          clearTimeout(timer);
        }),
      );
      await Promise.all(servers.map((s) => s.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
