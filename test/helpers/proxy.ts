/**
 * A TCP proxy between a client and Redis, for injecting faults the server cannot produce on
 * its own: latency, connection resets, a black hole (connections stay open, nothing passes).
 * It counts the RESP commands clients send through it, so tests can bound traffic.
 */
import { once } from 'node:events';
import { createServer, Socket, type Server } from 'node:net';

/** Counts complete RESP commands (`*N\r\n` arrays of bulk strings) in a client's byte stream. */
class CommandCounter {
  #buffer: Buffer = Buffer.alloc(0);
  count = 0;
  /** Commands by name (upper case). */
  readonly byName = new Map<string, number>();

  push(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      const end = this.#parseOne(this.#buffer);
      if (end < 0) return;
      this.count++;
      const name = this.#name(this.#buffer);
      this.byName.set(name, (this.byName.get(name) ?? 0) + 1);
      this.#buffer = this.#buffer.subarray(end);
    }
  }

  /** The name of the complete command at the start of `buf`. */
  #name(buf: Buffer): string {
    if (buf[0] !== 0x2a)
      return buf.toString('latin1', 0, buf.indexOf(' ') > 0 ? buf.indexOf(' ') : buf.indexOf('\r\n')).toUpperCase();
    const first = buf.indexOf('\r\n') + 2;
    const headerEnd = buf.indexOf('\r\n', first);
    const len = Number(buf.toString('latin1', first + 1, headerEnd));
    return buf.toString('latin1', headerEnd + 2, headerEnd + 2 + len).toUpperCase();
  }

  /** Offset after one complete command, or -1 when incomplete. Inline commands count too. */
  #parseOne(buf: Buffer): number {
    if (buf.length === 0) return -1;
    const lineEnd = buf.indexOf('\r\n');
    if (lineEnd < 0) return -1;
    if (buf[0] !== 0x2a /* * */) return lineEnd + 2;
    const n = Number(buf.toString('latin1', 1, lineEnd));
    let offset = lineEnd + 2;
    for (let i = 0; i < n; i++) {
      const headerEnd = buf.indexOf('\r\n', offset);
      if (headerEnd < 0) return -1;
      const len = Number(buf.toString('latin1', offset + 1, headerEnd));
      offset = headerEnd + 2 + len + 2;
      if (offset > buf.length) return -1;
    }
    return offset;
  }
}

export interface FaultProxy {
  readonly port: number;
  readonly url: string;
  /** Commands that reached the proxy from clients (forwarded or not). */
  readonly commands: number;
  /** Commands by name so far (upper case), e.g. to leave out connection handshakes. */
  readonly commandsByName: ReadonlyMap<string, number>;
  /** Delay added to every chunk in both directions, in ms. */
  setLatency(ms: number): void;
  /** Destroys every open connection (clients see a reset). */
  resetAll(): void;
  /** While on, data is accepted but nothing is forwarded or answered (a network black hole). */
  blackhole(on: boolean): void;
  /** While on, new connections are refused (closed at once). */
  refuse(on: boolean): void;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number): Promise<FaultProxy> {
  let latency = 0;
  let holeOn = false;
  let refusing = false;
  const counter = new CommandCounter();
  const sockets = new Set<Socket>();
  const delay = (fn: () => void) => (latency > 0 ? setTimeout(fn, latency) : fn());

  const server: Server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = new Socket();
    sockets.add(client);
    sockets.add(upstream);
    const cleanup = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', cleanup);
    upstream.on('error', cleanup);
    client.on('close', cleanup);
    upstream.on('close', cleanup);
    upstream.connect(targetPort, '127.0.0.1');
    client.on('data', (chunk) => {
      counter.push(chunk);
      if (holeOn) return;
      delay(() => upstream.writable && upstream.write(chunk));
    });
    upstream.on('data', (chunk) => {
      if (holeOn) return;
      delay(() => client.writable && client.write(chunk));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get commands() {
      return counter.count;
    },
    get commandsByName() {
      return new Map(counter.byName);
    },
    setLatency: (ms) => {
      latency = ms;
    },
    resetAll: () => {
      for (const socket of sockets) socket.resetAndDestroy();
      sockets.clear();
    },
    blackhole: (on) => {
      holeOn = on;
    },
    refuse: (on) => {
      refusing = on;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}
