/**
 * The Redis store, shared by both client libraries: every command passes the circuit breaker
 * and the coarse deadline timer, conditional writes are Lua scripts (sent by SHA, reloaded on
 * `NOSCRIPT`), and one dedicated connection carries every pub/sub channel the store serves.
 */
import { createHash } from 'node:crypto';
import { systemClock, type Clock } from '../core/clock.js';
import { optionalDuration } from '../core/durations.js';
import { checkOptionNames, optionNames } from '../core/option-names.js';
import type { Wire } from '../core/entry.js';
import { CircuitOpenError, InvalidOptionError, StoreError } from '../errors.js';
import { CircuitBreaker, type BreakerOptions, type BreakerState } from '../resilience/breaker.js';
import { commandTrace } from '../core/diagnostics.js';
import { Histogram } from '../core/metrics.js';
import { Deadlines } from '../resilience/deadlines.js';
import { MAX_SCRIPT_BATCH, TickBatcher } from './tick-batch.js';
import {
  settlesWithin,
  type DriverSubscriber,
  type PubSubKind,
  type RedisArg,
  type RedisCommand,
  type RedisDriver,
} from './redis-driver.js';
import { commonStart, startsWithAny, WAIT_MARK } from './store.js';
import type {
  ConditionalExpire,
  ConditionalWrite,
  LeaseRequest,
  Notice,
  PubSubMode,
  PubSubOptions,
  Store,
  StoreStatus,
  StoreWrite,
  SubscribeHandlers,
  Subscription,
  VersionReply,
  VersionRequest,
} from './store.js';

/** Options shared by `redisStore()` and `ioredisStore()`. */
export interface RedisConnectionOptions {
  /**
   * Longest wait for any single Redis command, in ms. A command that takes longer rejects with a
   * `CommandTimeoutError` (and counts as a breaker failure); `getOrSet` then answers from the
   * loader. Enforced by one coarse timer for all commands in flight (overshoot up to a quarter of
   * the timeout), not a timer per command. `Infinity` turns it off.
   * @default 500
   */
  commandTimeout?: number;
  /**
   * Circuit breaker settings, or `false` to send every command whatever happened before.
   * @default { failureThreshold: 5, cooldown: 1_000, maxCooldown: 30_000 }
   */
  breaker?: BreakerOptions | false;
  /** Called for connection errors and breaker transitions; Larder never logs by itself. */
  onEvent?: (event: RedisStoreEvent) => void;
  /** Time source (for the breaker's cooldown). @default the system clock */
  clock?: Clock;
  /**
   * Record a latency histogram of Redis commands (`status().latency`).
   * @default true
   */
  metrics?: boolean;
  /**
   * Coalesce the single-key commands of a cache-aside call issued in one tick while other
   * commands are in flight: reads into one `MGET`, leases into one script call, compare-and-set
   * writes into one script call (see `tick-batch.ts`). It saves client CPU under load. But a
   * read batch answers when its last value has arrived, so with values of hundreds of kilobytes
   * it delays the first ones and holds them all in memory at once: turn it off there. Never on a
   * Redis Cluster.
   * @default true
   */
  coalesce?: boolean;
}

/** The names `redisStore` and `ioredisStore` take: these, and `client` or `url`. */
const STORE_OPTION_NAMES = optionNames<RedisConnectionOptions & { client: unknown; url: string }>({
  commandTimeout: true,
  breaker: true,
  onEvent: true,
  clock: true,
  metrics: true,
  coalesce: true,
  client: true,
  url: true,
});

const BREAKER_OPTION_NAMES = optionNames<BreakerOptions>({ failureThreshold: true, cooldown: true, maxCooldown: true });

export type RedisStoreEvent =
  { readonly type: 'breaker'; readonly state: BreakerState } | { readonly type: 'connection-error'; readonly error: unknown };

/** A Lua script, sent by SHA and by source when Redis does not know it (yet). */
export class LuaScript {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

/**
 * Compare-and-set, for each key: writes the value (with PX, none when empty) if the current
 * value starts with `expect`, or if the key is absent when `expect` is empty; then publishes the
 * message on the channel, when one is given and the replaced value carried the wait mark. Five
 * arguments per key: expect, value, PX, channel, message. Answers 1 (written) or 0 per key, or
 * that key's error (a key of another type) without stopping the others. PUBLISH touches no key,
 * so with one key the script stays single-slot on a cluster; with more it runs on one Redis only.
 */
export const SET_IF = new LuaScript(`
local replies = {}
for i = 1, #KEYS do
  local a = (i - 1) * 5
  local expect = ARGV[a + 1]
  local cur = redis.pcall('GET', KEYS[i])
  if type(cur) == 'table' then
    replies[i] = cur
  elseif (expect == '' and cur) or (expect ~= '' and ((not cur) or string.sub(cur, 1, #expect) ~= expect)) then
    replies[i] = 0
  else
    if ARGV[a + 3] == '' then
      redis.call('SET', KEYS[i], ARGV[a + 2])
    else
      redis.call('SET', KEYS[i], ARGV[a + 2], 'PX', ARGV[a + 3])
    end
    if ARGV[a + 4] ~= '' and cur and string.sub(cur, -1) == '${WAIT_MARK}' then
      redis.call('PUBLISH', ARGV[a + 4], ARGV[a + 5])
    end
    replies[i] = 1
  end
end
return replies
`);

/** Deletes the key if its value starts with `ARGV[1]`, then publishes `ARGV[3]` on `ARGV[2]` when given and marked. */
export const DELETE_IF = new LuaScript(`
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, #ARGV[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[2] ~= '' and string.sub(cur, -1) == '${WAIT_MARK}' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
  return 1
end
return 0
`);

/** Appends the wait mark to the value if it starts with `ARGV[1]`, keeping its TTL. */
export const MARK = new LuaScript(`
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, #ARGV[1]) == ARGV[1] then
  if string.sub(cur, -1) ~= '${WAIT_MARK}' then redis.call('SET', KEYS[1], cur .. '${WAIT_MARK}', 'KEEPTTL') end
  return 1
end
return 0
`);

/** Sets PX \`ARGV[2]\` if the value starts with \`ARGV[1]\`. */
export const EXPIRE_IF = new LuaScript(`
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, #ARGV[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`);

/**
 * Reads (`ARGV[1]` = '0') or advances ('1') the version `<epoch>.<n>` of the key, creating it from
 * the server's clock when absent (see `Store.versions`); a value of another form (an earlier
 * Larder's random token) reads as it is, and a bump replaces it; `ARGV[2]` is the PX of a written version.
 * Answers `{version, 1 when written}`. TIME is allowed in scripts since Redis 5 (effects replication).
 */
export const VERSIONS = new LuaScript(`
local cur = redis.call('GET', KEYS[1])
local epoch, n
if cur then epoch, n = string.match(cur, '^(%d+)%.(%d+)$') end
if cur and ARGV[1] == '0' then return {cur, 0} end
if not epoch then
  local t = redis.call('TIME')
  epoch, n = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)), '0'
end
local v = epoch .. '.' .. string.format('%d', tonumber(n) + tonumber(ARGV[1]))
redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
return {v, 1}
`);

/**
 * `SET NX PX GET` for each key (two arguments per key: value, PX): answers the current value,
 * or nil where the lease was taken, or that key's error. One call stands for a batch of leases,
 * and for a single one on Redis < 7.0, which refuses NX together with GET.
 */
const LEASE = new LuaScript(`
local replies = {}
for i = 1, #KEYS do
  local cur = redis.pcall('GET', KEYS[i])
  if cur then
    replies[i] = cur
  else
    redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'PX', ARGV[2 * i])
    replies[i] = false
  end
end
return replies
`);

/** Redis error replies that mean "unavailable right now", as opposed to "wrong request". */
const UNAVAILABLE_REPLY = /^(LOADING|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|BUSY|READONLY)\b/;
const SCAN_COUNT = 1000;
const UNLINK_BATCH = 500;

/** Exponential backoff with full jitter, capped at 5 s: a fleet does not reconnect in lockstep. */
export function reconnectDelay(retries: number): number {
  return Math.round(Math.random() * Math.min(5_000, 50 * 2 ** Math.min(retries, 10)));
}

function px(ttl: number): string {
  return ttl === Infinity ? '' : String(Math.max(1, Math.ceil(ttl)));
}

function setCommand(key: string, value: Wire, ttl: number): RedisCommand {
  const v = value as RedisArg;
  return ttl === Infinity ? ['SET', key, v] : ['SET', key, v, 'PX', px(ttl)];
}

function leaseCommand(request: LeaseRequest): RedisCommand {
  return ['SET', request.key, request.value as RedisArg, 'NX', 'PX', px(request.ttl), 'GET'];
}

/** One write's arguments to {@link SET_IF}. */
function setIfArgs(write: ConditionalWrite): RedisArg[] {
  return [write.expect, write.value as RedisArg, px(write.ttl), write.notify?.channel ?? '', write.notify?.message ?? ''];
}

function setIfReply(reply: unknown): boolean {
  return Number(reply) === 1;
}

/** Drops a reply nobody reads (`OK`), without an `async` frame around the command. */
function toVoid(): void {}

function nullToUndefined(reply: unknown): Wire | undefined {
  return reply === null || reply === undefined ? undefined : (reply as Wire);
}

/** Shared by both Redis drivers; see {@link Store}. */
export class RedisStore implements Store {
  readonly name: string;
  readonly shared = true;
  readonly driver: RedisDriver;
  readonly #deadlines: Deadlines;
  readonly #breaker: CircuitBreaker | undefined;
  readonly #onEvent: ((event: RedisStoreEvent) => void) | undefined;
  readonly #breakerListeners = new Set<(state: BreakerState) => void>();
  #nativeLease = true;
  /** Scripts Redis answered by source: sent by SHA from then on. */
  readonly #loadedScripts = new Set<LuaScript>();
  readonly #subscribers = new Map<PubSubKind, Promise<DriverSubscriber>>();
  readonly #channels: Record<PubSubKind, Map<string, ChannelEntry>> = { classic: new Map(), sharded: new Map() };
  #shardedUnsupported = false;
  #closed = false;
  /**
   * Coalesce the commands of concurrent cache-aside calls (see `tick-batch.ts`), unless
   * `coalesce: false`. Not on a cluster, where the keys of one tick fall on as many slots, so a
   * command per slot would be a command per key with extra work.
   */
  readonly #reads: TickBatcher<string, Wire | undefined> | undefined;
  readonly #leases: TickBatcher<LeaseRequest, Wire | undefined> | undefined;
  readonly #writes: TickBatcher<ConditionalWrite, boolean> | undefined;

  constructor(driver: RedisDriver, options: RedisConnectionOptions) {
    checkOptionNames(options, STORE_OPTION_NAMES);
    this.name = driver.name;
    this.driver = driver;
    this.#onEvent = options.onEvent;
    const timeout = optionalDuration('commandTimeout', options.commandTimeout, 500, { infinity: true, zero: false });
    if (options.breaker !== undefined && options.breaker !== false && typeof options.breaker !== 'object') {
      throw new InvalidOptionError('breaker', 'expected an options object or false');
    }
    if (typeof options.breaker === 'object' && options.breaker !== null) {
      checkOptionNames(options.breaker, BREAKER_OPTION_NAMES, 'breaker');
    }
    if (options.coalesce !== undefined && typeof options.coalesce !== 'boolean') {
      throw new InvalidOptionError('coalesce', 'expected a boolean');
    }
    this.#breaker =
      options.breaker === false
        ? undefined
        : new CircuitBreaker(
            options.breaker ?? {},
            (state) => {
              this.#onEvent?.({ type: 'breaker', state });
              for (const listener of this.#breakerListeners) listener(state);
            },
            options.clock ?? systemClock,
          );
    this.#deadlines = new Deadlines(
      timeout,
      (error) => this.#settled(error),
      (error) => this.#wrap(error),
      options.metrics === false ? undefined : new Histogram(),
    );
    driver.onError((error) => this.#onEvent?.({ type: 'connection-error', error }));
    const coalesce = !driver.cluster && options.coalesce !== false;
    const busy = (): boolean => this.#deadlines.pending > 0;
    this.#reads = coalesce
      ? new TickBatcher({
          one: (key, binary) => this.#getOne(key, binary),
          many: (keys, binary) => this.#getBatch(keys, binary),
          busy,
          refused: isRefusal,
        })
      : undefined;
    this.#leases = coalesce
      ? new TickBatcher({
          one: (request, binary) => this.#leaseOne(request, binary),
          many: (requests, binary) => this.#leaseEach(requests, binary),
          maxBatch: MAX_SCRIPT_BATCH,
          busy,
          // Scripts refused (an ACL without them): each lease is its own `SET NX GET`.
          refused: isRefusal,
        })
      : undefined;
    this.#writes = coalesce
      ? new TickBatcher({
          one: (write) => this.#setIfOne(write),
          many: (writes) => this.#setIfEach(writes),
          maxBatch: MAX_SCRIPT_BATCH,
          busy,
          // Refused scripts refuse the single write's script too: it then fails as it would have alone.
          refused: isRefusal,
        })
      : undefined;
  }

  watchBreaker(listener: (state: BreakerState) => void): () => void {
    this.#breakerListeners.add(listener);
    return () => this.#breakerListeners.delete(listener);
  }

  /** Breaker state; also in {@link status}. */
  get breakerState(): BreakerState {
    return this.#breaker?.state ?? 'closed';
  }

  /** How many times the breaker opened since the store was created. */
  get breakerOpens(): number {
    return this.#breaker?.opens ?? 0;
  }

  /**
   * Breaker accounting for every command outcome, including commands the client refused to send.
   * An error reply (`NOSCRIPT`, `WRONGTYPE`, …) is Redis answering: a success for the breaker, or
   * a half-open probe answered `NOSCRIPT` after a restart would never close it.
   */
  #settled(error: unknown): void {
    if (this.#breaker === undefined) return;
    if (error === undefined || !this.#isAvailabilityFailure(error)) this.#breaker.success();
    else this.#breaker.failure();
  }

  /** A command the client threw on instead of sending: it failed like any other. */
  #refused<T>(error: unknown): Promise<T> {
    this.#settled(error);
    return Promise.reject(this.#wrap(error));
  }

  #isAvailabilityFailure(error: unknown): boolean {
    if (!this.driver.isReplyError(error)) return true;
    return UNAVAILABLE_REPLY.test(String((error as { message?: unknown }).message));
  }

  /**
   * Runs one command (or one pipeline) through the breaker and the deadline timer. Failures
   * reject with a `StoreError` (or a subclass) whose `cause` is the client's error. `trace` names
   * it on the `larder:store:command` channel.
   */
  run<T>(command: () => Promise<T>, trace?: { readonly command: string; readonly keys: readonly string[] }): Promise<T> {
    if (trace !== undefined && commandTrace.hasSubscribers) {
      const { command: name, keys } = trace;
      const context = { command: name, key: keys[0], ...(keys.length > 1 ? { count: keys.length } : {}), store: this.name };
      return commandTrace.tracePromise(() => this.#runNow(command), context);
    }
    return this.#runNow(command);
  }

  #runNow<T>(command: () => Promise<T>): Promise<T> {
    if (this.#breaker !== undefined && !this.#breaker.allow()) return Promise.reject(new CircuitOpenError());
    let promise: Promise<T>;
    try {
      promise = command();
    } catch (error) {
      return this.#refused(error);
    }
    return this.#deadlines.track(promise);
  }

  #wrap(error: unknown): StoreError {
    if (error instanceof StoreError) return error;
    const message = error instanceof Error ? error.message : String(error);
    return new StoreError('E_STORE_UNAVAILABLE', `Redis failed: ${message}`, {
      cause: error,
      reply: this.driver.isReplyError(error),
    });
  }

  /** One command through the breaker and the deadline timer, like {@link run} but without a closure. */
  #send<R = unknown>(command: RedisCommand, key: string | undefined, binary: boolean, map?: (reply: unknown) => R): Promise<R> {
    if (commandTrace.hasSubscribers) {
      return commandTrace.tracePromise(() => this.#sendNow(command, key, binary, map), {
        command: String(command[0]),
        key,
        store: this.name,
      });
    }
    return this.#sendNow(command, key, binary, map);
  }

  #sendNow<R>(command: RedisCommand, key: string | undefined, binary: boolean, map?: (reply: unknown) => R): Promise<R> {
    if (this.#breaker !== undefined && !this.#breaker.allow()) return Promise.reject(new CircuitOpenError());
    let promise: Promise<unknown>;
    try {
      promise = this.driver.send(command, key, binary);
    } catch (error) {
      return this.#refused(error);
    }
    return this.#deadlines.track(promise, map);
  }

  /**
   * Runs a script: by source (`EVAL`) until Redis is known to have it, then by SHA. Sending the
   * source first keeps commands in the order they were issued: an `EVALSHA` answered `NOSCRIPT`
   * is re-sent after whatever the caller issued next (a write would land after the read that
   * follows it). That still happens once per script after Redis restarts or flushes its scripts,
   * and on each other node of a cluster: the fallback below.
   */
  async script(script: LuaScript, keys: readonly string[], args: readonly RedisArg[], binary = false): Promise<unknown> {
    const loaded = this.#loadedScripts.has(script);
    const command: RedisArg[] = [
      loaded ? 'EVALSHA' : 'EVAL',
      loaded ? script.sha : script.source,
      String(keys.length),
      ...keys,
      ...args,
    ];
    try {
      const reply = await this.#sendScript(command, keys, binary);
      this.#loadedScripts.add(script);
      return reply;
    } catch (error) {
      if (!(loaded && error instanceof StoreError && isNoScript(error.cause))) throw error;
      this.#loadedScripts.delete(script);
      command[0] = 'EVAL';
      command[1] = script.source;
      const reply = await this.#sendScript(command, keys, binary);
      this.#loadedScripts.add(script);
      return reply;
    }
  }

  /** A script call; a multi-key one (a coalesced batch) is traced with its key count. */
  #sendScript(command: RedisCommand, keys: readonly string[], binary: boolean): Promise<unknown> {
    if (keys.length <= 1) return this.#send(command, keys[0], binary);
    return this.run(() => this.driver.send(command, keys[0], binary), { command: String(command[0]), keys });
  }

  /** Runs a script once per key in one round trip; `argsFor(i)` gives each call's arguments. */
  #scriptBatch(script: LuaScript, keys: readonly string[], argsFor: (i: number) => readonly RedisArg[]): Promise<unknown[]> {
    const build = (verb: 'EVALSHA' | 'EVAL', body: string): RedisCommand[] =>
      keys.map((key, i) => [verb, body, '1', key, ...argsFor(i)]);
    return this.run(
      async () => {
        if (!this.#loadedScripts.has(script)) {
          // By source until Redis has it (see `script`).
          const replies = throwFirstError(await this.driver.batch(build('EVAL', script.source), keys, false));
          this.#loadedScripts.add(script);
          return replies;
        }
        const replies = await this.driver.batch(build('EVALSHA', script.sha), keys, false);
        if (!replies.some(isNoScript)) return throwFirstError(replies);
        return throwFirstError(await this.driver.batch(build('EVAL', script.source), keys, false));
      },
      { command: this.#loadedScripts.has(script) ? 'EVALSHA' : 'EVAL', keys },
    );
  }

  get(key: string, binary: boolean): Promise<Wire | undefined> {
    return this.#reads === undefined ? this.#getOne(key, binary) : this.#reads.send(key, binary);
  }

  #getOne(key: string, binary: boolean): Promise<Wire | undefined> {
    if (commandTrace.hasSubscribers)
      return commandTrace.tracePromise(() => this.#get(key, binary), { command: 'GET', key, store: this.name });
    return this.#get(key, binary);
  }

  /** The reads of one tick, as one `MGET` (see {@link TickBatcher}). */
  #getBatch(keys: readonly string[], binary: boolean): Promise<(Wire | undefined)[]> {
    return this.run(() => this.driver.mget(keys, binary), { command: 'MGET', keys }).then((replies) =>
      replies.map(nullToUndefined),
    );
  }

  #get(key: string, binary: boolean): Promise<Wire | undefined> {
    // The hit path: no closure, one promise on top of the client's.
    if (this.#breaker !== undefined && !this.#breaker.allow()) return Promise.reject(new CircuitOpenError());
    let command: Promise<unknown>;
    try {
      command = this.driver.get(key, binary);
    } catch (error) {
      return this.#refused(error);
    }
    return this.#deadlines.track(command, nullToUndefined);
  }

  async getMany(keys: readonly string[], binary: boolean): Promise<(Wire | undefined)[]> {
    if (keys.length === 0) return [];
    // One key is a read like `get`'s (a GET, or part of this tick's MGET).
    if (keys.length === 1) return [await this.get(keys[0]!, binary)];
    const replies = await this.run(() => this.driver.mget(keys, binary), { command: 'MGET', keys });
    return replies.map(nullToUndefined);
  }

  set(key: string, value: Wire, ttl: number): Promise<void> {
    return this.#send(setCommand(key, value, ttl), key, false, toVoid);
  }

  async setMany(writes: readonly StoreWrite[]): Promise<void> {
    if (writes.length === 0) return;
    const commands = writes.map((w) => setCommand(w.key, w.value, w.ttl));
    const keys = writes.map((w) => w.key);
    throwFirstError(await this.run(() => this.driver.batch(commands, keys, false), { command: 'SET', keys }));
  }

  async setIf(writes: readonly ConditionalWrite[]): Promise<boolean[]> {
    if (writes.length === 0) return [];
    // One write (every miss): this tick's batch, or a single command.
    if (writes.length === 1) {
      const write = writes[0]!;
      return [await (this.#writes === undefined ? this.#setIfOne(write) : this.#writes.send(write, false))];
    }
    // Several writes (`getOrSetMany`): one script call per key, in one round trip. Each stays
    // single-slot on a cluster, and a batch of any size never holds Redis in one long script.
    const replies = await this.#scriptBatch(
      SET_IF,
      writes.map((w) => w.key),
      (i) => setIfArgs(writes[i]!),
    );
    return this.#firstReplies(replies).map(setIfReply);
  }

  async #setIfOne(write: ConditionalWrite): Promise<boolean> {
    const [reply] = (await this.script(SET_IF, [write.key], setIfArgs(write))) as unknown[];
    if (reply instanceof Error) throw this.#wrap(reply);
    return setIfReply(reply);
  }

  /** The writes as one script call; a key's error reply (a key of another type) fails that write only. */
  async #setIfEach(writes: readonly ConditionalWrite[]): Promise<(boolean | Error)[]> {
    const replies = (await this.script(
      SET_IF,
      writes.map((w) => w.key),
      writes.flatMap(setIfArgs),
    )) as unknown[];
    return this.#eachReply(replies, setIfReply);
  }

  async lease(requests: readonly LeaseRequest[], binary: boolean): Promise<(Wire | undefined)[]> {
    if (requests.length === 0) return [];
    // One lease (every miss): this tick's batch, or a single command.
    if (requests.length === 1) {
      const request = requests[0]!;
      return [await (this.#leases === undefined ? this.#leaseOne(request, binary) : this.#leases.send(request, binary))];
    }
    // Several leases (`getOrSetMany`): one native command per key, in one round trip (see `setIf`).
    const keys = requests.map((r) => r.key);
    if (this.#nativeLease) {
      const commands = requests.map(leaseCommand);
      const replies = await this.run(() => this.driver.batch(commands, keys, binary), { command: 'SET', keys });
      if (!replies.some(isSyntaxError)) return this.#throwFirst(replies).map(nullToUndefined);
      // Redis < 7.0 refuses NX together with GET: the script from now on.
      this.#nativeLease = false;
    }
    const replies = await this.run(
      () =>
        this.driver.batch(
          requests.map((r): RedisCommand => ['EVAL', LEASE.source, '1', r.key, r.value as RedisArg, px(r.ttl)]),
          keys,
          binary,
        ),
      { command: 'EVAL', keys },
    );
    return this.#firstReplies(this.#throwFirst(replies)).map(nullToUndefined);
  }

  /** Each key's reply of a multi-key script, mapped; a key's error reply kept as a `StoreError` for that key alone. */
  #eachReply<R>(replies: readonly unknown[], map: (reply: unknown) => R): (R | StoreError)[] {
    return replies.map((reply) => (reply instanceof Error ? this.#wrap(reply) : map(reply)));
  }

  /** The one reply inside each single-key script call's array, or the first key's error thrown. */
  #firstReplies(replies: readonly unknown[]): unknown[] {
    return this.#throwFirst(replies.map((reply) => (reply as unknown[])[0]));
  }

  /** The replies, or the first error reply among them thrown as a `StoreError`. */
  #throwFirst(replies: unknown[]): unknown[] {
    const error = replies.find((reply) => reply instanceof Error);
    if (error !== undefined) throw this.#wrap(error);
    return replies;
  }

  /** `SET NX PX GET`, or the script on Redis < 7.0. */
  async #leaseOne(request: LeaseRequest, binary: boolean): Promise<Wire | undefined> {
    if (this.#nativeLease) {
      try {
        return await this.#send(leaseCommand(request), request.key, binary, nullToUndefined);
      } catch (error) {
        if (!(error instanceof StoreError && isSyntaxError(error.cause))) throw error;
        // Redis < 7.0 refuses NX together with GET: the script from now on.
        this.#nativeLease = false;
      }
    }
    const [reply] = (await this.script(LEASE, [request.key], [request.value as RedisArg, px(request.ttl)], binary)) as unknown[];
    if (reply instanceof Error) throw this.#wrap(reply);
    return nullToUndefined(reply);
  }

  /** The leases as one script call; a key's error reply fails that lease only. */
  async #leaseEach(requests: readonly LeaseRequest[], binary: boolean): Promise<(Wire | undefined | Error)[]> {
    const replies = (await this.script(
      LEASE,
      requests.map((r) => r.key),
      requests.flatMap((r) => [r.value as RedisArg, px(r.ttl)]),
      binary,
    )) as unknown[];
    return this.#eachReply(replies, nullToUndefined);
  }

  async deleteIf(key: string, expect: string, notify?: Notice): Promise<boolean> {
    return Number(await this.script(DELETE_IF, [key], [expect, notify?.channel ?? '', notify?.message ?? ''])) === 1;
  }

  async mark(key: string, expect: string): Promise<boolean> {
    return Number(await this.script(MARK, [key], [expect])) === 1;
  }

  async expireIf(requests: readonly ConditionalExpire[]): Promise<boolean[]> {
    if (requests.length === 0) return [];
    const replies = await this.#scriptBatch(
      EXPIRE_IF,
      requests.map((r) => r.key),
      (i) => [requests[i]!.expect, px(requests[i]!.ttl)],
    );
    return replies.map((reply) => Number(reply) === 1);
  }

  async versions(requests: readonly VersionRequest[]): Promise<VersionReply[]> {
    if (requests.length === 0) return [];
    const replies = await this.#scriptBatch(
      VERSIONS,
      requests.map((r) => r.key),
      (i) => [requests[i]!.bump ? '1' : '0', px(requests[i]!.ttl)],
    );
    return replies.map((reply): VersionReply => {
      const [version, changed] = reply as [unknown, unknown];
      return { version: typeof version === 'string' ? version : String(version), changed: Number(changed) === 1 };
    });
  }

  async delete(keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return 0;
    return this.run(() => this.driver.unlink(keys), { command: 'UNLINK', keys });
  }

  async clear(prefixes: readonly string[]): Promise<number> {
    let deleted = 0;
    let batch: string[] = [];
    // One SCAN over the prefixes' common start, filtered here (a glob has no alternation):
    // `app:v1*` for `app:v1:` and `app:v1/`, which also matches `app:v10:`, left alone.
    // Namespace segments hold no glob characters, so the stem needs no escaping.
    // SCAN may return a key twice; UNLINK of an absent key is harmless and not counted.
    for await (const keys of this.#scan(`${commonStart(prefixes)}*`)) {
      for (const key of keys) if (startsWithAny(key, prefixes)) batch.push(key);
      if (batch.length >= UNLINK_BATCH) {
        const chunk = batch;
        batch = [];
        deleted += await this.run(() => this.driver.unlink(chunk), { command: 'UNLINK', keys: chunk });
      }
    }
    if (batch.length > 0) deleted += await this.run(() => this.driver.unlink(batch), { command: 'UNLINK', keys: batch });
    return deleted;
  }

  async *#scan(pattern: string): AsyncIterable<string[]> {
    const iterator = this.driver.scan(pattern, SCAN_COUNT)[Symbol.asyncIterator]();
    for (;;) {
      const next = await this.run(() => iterator.next(), { command: 'SCAN', keys: [] });
      if (next.done === true) return;
      yield next.value;
    }
  }

  /**
   * What a pub/sub `mode` resolves to on this store: `auto` is `sharded` on a Redis Cluster
   * (unless its servers turned out to predate Redis 7) and `classic` otherwise.
   *
   * @see docs/scaling.md
   */
  pubSubKind(mode: PubSubMode = 'classic'): PubSubKind {
    if (mode === 'auto') return this.driver.cluster && !this.#shardedUnsupported ? 'sharded' : 'classic';
    if (mode !== 'classic' && mode !== 'sharded') throw new InvalidOptionError('mode', "expected 'classic', 'sharded' or 'auto'");
    return mode;
  }

  /** `auto` asked for sharded pub/sub and the server does not know it: classic from now on. */
  #fellBack(mode: PubSubMode | undefined, error: unknown): boolean {
    if (mode !== 'auto' || !isUnknownCommand(error)) return false;
    this.#shardedUnsupported = true;
    return true;
  }

  async publish(channel: string, message: string, options?: PubSubOptions): Promise<void> {
    const kind = this.pubSubKind(options?.mode);
    try {
      await this.#send([kind === 'sharded' ? 'SPUBLISH' : 'PUBLISH', channel, message], channel, false);
    } catch (error) {
      if (kind === 'sharded' && this.#fellBack(options?.mode, error)) return this.publish(channel, message, options);
      throw error;
    }
  }

  async subscribe(channel: string, handlers: SubscribeHandlers, options?: PubSubOptions): Promise<Subscription> {
    if (this.#closed) throw new StoreError('E_STORE_UNAVAILABLE', 'The store is closed');
    const kind = this.pubSubKind(options?.mode);
    try {
      return await this.#subscribe(kind, channel, handlers);
    } catch (error) {
      if (kind === 'sharded' && this.#fellBack(options?.mode, error)) return this.subscribe(channel, handlers, options);
      throw this.#wrap(error);
    }
  }

  /** One connection per kind carries every channel of that kind; one server subscription per channel. */
  async #subscribe(kind: PubSubKind, channel: string, handlers: SubscribeHandlers): Promise<Subscription> {
    const channels = this.#channels[kind];
    let pending = this.#subscribers.get(kind);
    if (pending === undefined) {
      pending = this.driver.subscriber(kind).then((subscriber) => {
        subscriber.onConnection((connected) => {
          for (const entry of channels.values()) for (const h of entry.handlers) h.connection?.(connected);
        });
        return subscriber;
      });
      this.#subscribers.set(kind, pending);
      // A failed connection is not kept: the next subscribe tries again.
      void pending.catch(() => this.#subscribers.get(kind) === pending && this.#subscribers.delete(kind));
    }
    const subscriber = await pending;
    let entry = channels.get(channel);
    if (entry === undefined) {
      const created: ChannelEntry = { handlers: new Set(), ready: Promise.resolve() };
      created.ready = subscriber.subscribe(channel, (message) => {
        for (const h of created.handlers) h.message(message);
      });
      entry = created;
      channels.set(channel, entry);
      void created.ready.catch(() => channels.get(channel) === created && channels.delete(channel));
    }
    // Concurrent subscribers of a new channel all wait for the server's confirmation.
    await entry.ready;
    const subscribed = entry;
    subscribed.handlers.add(handlers);
    return {
      unsubscribe: async () => {
        if (!subscribed.handlers.delete(handlers) || subscribed.handlers.size > 0) return;
        if (channels.get(channel) === subscribed) channels.delete(channel);
        // Bounded: on a hung Redis the connection is dropped at close anyway.
        await settlesWithin(subscriber.unsubscribe(channel));
      },
    };
  }

  status(): StoreStatus {
    const histogram = this.#deadlines.histogram;
    const pool = this.driver.pool?.();
    return {
      ready: this.driver.ready(),
      breaker: this.breakerState,
      breakerOpens: this.breakerOpens,
      pending: this.#deadlines.pending,
      details: this.driver.details(),
      ...(histogram === undefined ? {} : { latency: histogram.snapshot() }),
      ...(pool === undefined ? {} : { pool }),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Commands waiting for the end of the tick go out now, ahead of the client's QUIT.
    this.#reads?.flush();
    this.#leases?.flush();
    this.#writes?.flush();
    // Deadlines keep running: commands still in flight (a dropped connection may never answer
    // them) time out as usual, and the timer stops by itself once none is left.
    const subscribers = [...this.#subscribers.values()];
    this.#subscribers.clear();
    this.#channels.classic.clear();
    this.#channels.sharded.clear();
    // A subscriber still connecting is closed whenever it connects; close() does not wait for it.
    await settlesWithin(Promise.all(subscribers.map((pending) => pending.then((s) => s.close()).catch(() => undefined))));
    await this.driver.close();
  }
}

/** A channel the store is subscribed to: its local handlers, and the server's confirmation. */
interface ChannelEntry {
  readonly handlers: Set<SubscribeHandlers>;
  ready: Promise<void>;
}

/**
 * Redis refusing a command itself, for good: an ACL without it (`NOPERM`), a server or proxy
 * that lacks it, or a sharding proxy that takes multi-key commands of one slot only
 * (`CROSSSLOT`). Unlike a transient error reply (`BUSY`, `LOADING`, …), asking again is no use.
 */
function isRefusal(error: unknown): boolean {
  const cause = error instanceof StoreError ? error.cause : error;
  return (cause instanceof Error && /^(NOPERM|CROSSSLOT)\b/.test(cause.message)) || isUnknownCommand(error);
}

/** `ERR unknown command 'SPUBLISH'` and the like, from a server older than the command. */
function isUnknownCommand(error: unknown): boolean {
  const cause = error instanceof StoreError ? error.cause : error;
  return cause instanceof Error && /unknown command/i.test(cause.message);
}

function isSyntaxError(reply: unknown): boolean {
  return reply instanceof Error && /syntax/i.test(reply.message);
}

function isNoScript(reply: unknown): boolean {
  return reply instanceof Error && reply.message.startsWith('NOSCRIPT');
}

/** The replies of a batch, or its first error reply thrown (inside `run`, so the breaker sees it). */
export function throwFirstError(replies: unknown[]): unknown[] {
  for (const reply of replies) if (reply instanceof Error) throw reply;
  return replies;
}
