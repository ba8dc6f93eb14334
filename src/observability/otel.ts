/**
 * OpenTelemetry for Larder, through `@opentelemetry/api` (an optional peer dependency): spans
 * for loader calls and Redis round trips, read from Larder's `node:diagnostics_channel` tracing
 * channels, and metrics (observable counters and gauges over `cache.stats()` and
 * `cache.store.status()`, histograms of read (by tier), load and command durations).
 *
 * Without an OpenTelemetry SDK the API's providers are no-ops, and so is this.
 *
 * @example
 * import { instrumentLarder } from 'larder/otel';
 * const otel = instrumentLarder({ caches: [cache] }); // after the SDK has started
 * // … on shutdown:
 * otel.disable();
 *
 * @see docs/observability.md
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { subscribe, tracingChannel, unsubscribe, type TracingChannelSubscribers } from 'node:diagnostics_channel';
import {
  context,
  createNoopMeter,
  metrics,
  ProxyTracerProvider,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type BatchObservableResult,
  type Context,
  type Meter,
  type MeterProvider,
  type Observable,
  type Span,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import type { Cache } from '../core/cache.js';
import type { CommandTraceContext, LoadTraceContext, ReadMessage } from '../core/diagnostics.js';
import { LATENCY_BOUNDS_MS } from '../core/metrics.js';
import { breakerValue, msToSeconds, Observed, type Counts, type ObserveOptions } from './shared.js';

export type { ObserveOptions } from './shared.js';

/**
 * What span attribute `larder.key` holds:
 * - `'omit'`: no key attribute. Keys often hold user ids, emails or tokens;
 * - `'hash'`: the first 16 hex digits of the key's SHA-256. Correlates spans of one key without
 *   showing it, but is pseudonymous, not anonymous: a guessable key (a numeric id) can be found
 *   by hashing candidates;
 * - `'raw'`: the full key (namespace included). Only where keys hold nothing personal;
 * - a function: your own mapping (an HMAC, a redaction); `undefined` omits the attribute.
 */
export type KeyAttribute = 'omit' | 'hash' | 'raw' | ((key: string) => string | undefined);

/** A cache to read metrics from, with its label options. */
export interface ObservedCache extends ObserveOptions {
  readonly cache: Cache;
}

/** Options of {@link instrumentLarder}. */
export interface OtelOptions {
  /** @default the global tracer provider (`trace.getTracerProvider()`; a no-op without an SDK) */
  readonly tracerProvider?: TracerProvider;
  /** @default the global meter provider (`metrics.getMeterProvider()`; a no-op without an SDK) */
  readonly meterProvider?: MeterProvider;
  /**
   * Record a `larder.load` span around each loader call. When the SDK's context manager is the
   * Node one (AsyncLocalStorage), the loader runs inside that span, so its own spans (a database
   * query) become its children.
   * @default true
   */
  readonly loads?: boolean;
  /**
   * Record a `redis.<COMMAND>` client span for each Redis command Larder sends.
   * @default true
   */
  readonly commands?: boolean;
  /**
   * Export metrics: observable counters and gauges for the caches in `caches` (and those added
   * with `observe()`), and duration histograms of reads by tier, loads and Redis commands.
   * @default true
   */
  readonly metrics?: boolean;
  /**
   * The key attribute of spans (see {@link KeyAttribute}). Never a value: Larder's events and
   * spans carry no cached data.
   * @default 'omit'
   */
  readonly keys?: KeyAttribute;
  /** Caches whose counters and store health are exported as metrics. @default [] */
  readonly caches?: readonly (Cache | ObservedCache)[];
}

/** What {@link instrumentLarder} returns. */
export interface LarderInstrumentation {
  /** Exports the metrics of one more cache; returns a function that stops. */
  observe(cache: Cache, options?: ObserveOptions): () => void;
  /** Unsubscribes from the tracing channels and stops every metric callback. Idempotent. */
  disable(): void;
}

/** Instrumentation scope name of the tracer and the meter. */
export const SCOPE = 'larder';

const SPAN = Symbol('larder.otel.span');
const STARTED = Symbol('larder.otel.started');
type Traced<C> = C & { [SPAN]?: Span; [STARTED]?: number; error?: unknown };

/** Bucket bounds of the duration histograms, in seconds (Larder's latency buckets). */
const BOUNDS_S = LATENCY_BOUNDS_MS.map(msToSeconds);

/**
 * Subscribes to Larder's tracing channels and exports its metrics through the OpenTelemetry
 * API. Call it once, after the SDK has started (the loader context binding looks for the SDK's
 * context manager then). Several calls subscribe several times (duplicate spans).
 *
 * @see docs/observability.md
 */
export function instrumentLarder(options: OtelOptions = {}): LarderInstrumentation {
  const keyOf = keyMapper(options.keys ?? 'omit');
  const provider = options.tracerProvider ?? trace.getTracerProvider();
  const tracer: Tracer = provider.getTracer(SCOPE);
  const idle = tracingIdle(provider);
  const meter: Meter | undefined =
    options.metrics === false ? undefined : (options.meterProvider ?? metrics.getMeterProvider()).getMeter(SCOPE);
  // Without a metrics SDK, record no durations at all (the API's meter would drop them).
  const timing: Meter | undefined = meter === undefined || isNoopMeter(meter) ? undefined : meter;
  const cacheNames = new Map<string, string>();
  const cacheName = (prefix: string): string => cacheNames.get(prefix) ?? nameOfPrefix(prefix);
  // The listed namespaces of the observed caches: by root prefix, each child's prefix and label.
  const namespaceLists = new Map<string, (readonly [prefix: string, label: string])[]>();
  /** `larder.cache`, and `larder.namespace` when `prefix` is a listed namespace's (else: the rest). */
  const cacheAttributes = (cache: string, prefix: string): Attributes => {
    const name = cacheName(cache);
    for (const [child, label] of namespaceLists.get(cache) ?? []) {
      if (child === prefix) return { 'larder.cache': name, 'larder.namespace': label };
    }
    return { 'larder.cache': name };
  };
  /** The same for a full key: a namespace's keys start with its prefix (children hang off with `/`). */
  const keyAttributes = (cache: string, key: string): Attributes => {
    for (const [child, label] of namespaceLists.get(cache) ?? []) {
      if (key.startsWith(child)) return { 'larder.cache': cacheName(cache), 'larder.namespace': label };
    }
    return { 'larder.cache': cacheName(cache) };
  };
  // Attributes of the read histogram by prefix and tier, built once (a read costs a map lookup).
  const readAttributes = new Map<string, { readonly l1: Attributes; readonly l2: Attributes }>();
  const undo: (() => void)[] = [];

  // --- loads ---------------------------------------------------------------------------------
  const loadDuration = timing?.createHistogram('larder.load.duration', {
    description: 'Loader calls (foreground and background, batches included).',
    unit: 's',
    advice: { explicitBucketBoundaries: BOUNDS_S },
  });
  if (options.loads !== false || loadDuration !== undefined) {
    const traceLoads = options.loads !== false;
    const channel = tracingChannel<unknown, LoadTraceContext>('larder:cache:load');
    const start = (ctx: Traced<LoadTraceContext>): Span | undefined => {
      if (loadDuration !== undefined && ctx[STARTED] === undefined) ctx[STARTED] = performance.now();
      if (!traceLoads || ctx[SPAN] !== undefined || idle()) return ctx[SPAN];
      const attributes: Attributes = { 'larder.cache': cacheName(ctx.cache), 'larder.background': ctx.background };
      const key = keyOf?.(ctx.key);
      if (key !== undefined) attributes['larder.key'] = key;
      // A batch loader: how many keys it loads (`larder.key` is the first).
      if (ctx.keys.length > 1) attributes['larder.batch.size'] = ctx.keys.length;
      const span = tracer.startSpan('larder.load', { kind: SpanKind.INTERNAL, attributes }, context.active());
      ctx[SPAN] = span;
      return span;
    };
    const finish = (ctx: Traced<LoadTraceContext>): void => {
      const started = ctx[STARTED];
      if (loadDuration !== undefined && started !== undefined) {
        const attributes: Attributes = keyAttributes(ctx.cache, ctx.key);
        if ('error' in ctx) attributes['error.type'] = errorType(ctx.error);
        loadDuration.record((performance.now() - started) / 1_000, attributes);
      }
      ctx[SPAN]?.end();
    };
    const handlers = spanHandlers<LoadTraceContext>(start, finish);
    channel.subscribe(handlers);
    undo.push(() => channel.unsubscribe(handlers));
    // Run the loader inside its span, so the loader's own spans nest under it.
    const storage = traceLoads ? contextStorage() : undefined;
    if (storage !== undefined) {
      channel.start.bindStore(storage, (ctx) => {
        const span = start(ctx);
        return span === undefined ? context.active() : trace.setSpan(context.active(), span);
      });
      undo.push(() => channel.start.unbindStore(storage));
    }
  }

  // --- reads by tier ------------------------------------------------------------------------
  const readDuration = timing?.createHistogram('larder.cache.get.duration', {
    description: 'Reads answered by a tier (larder.tier: l1, sampled one hit in 64; l2: reads of the store).',
    unit: 's',
    advice: { explicitBucketBoundaries: BOUNDS_S },
  });
  if (readDuration !== undefined) {
    const onRead = (message: unknown): void => {
      const read = message as ReadMessage;
      let attributes = readAttributes.get(read.prefix);
      if (attributes === undefined) {
        const base = cacheAttributes(read.cache, read.prefix);
        attributes = { l1: { ...base, 'larder.tier': 'l1' }, l2: { ...base, 'larder.tier': 'l2' } };
        readAttributes.set(read.prefix, attributes);
      }
      readDuration.record(read.durationMs / 1_000, attributes[read.tier]);
    };
    subscribe('larder:cache:read', onRead);
    undo.push(() => unsubscribe('larder:cache:read', onRead));
  }

  // --- Redis commands ------------------------------------------------------------------------
  const commandDuration = timing?.createHistogram('db.client.operation.duration', {
    description: 'Redis commands sent by Larder, round trip included.',
    unit: 's',
    advice: { explicitBucketBoundaries: BOUNDS_S },
  });
  if (options.commands !== false || commandDuration !== undefined) {
    const traceCommands = options.commands !== false;
    const channel = tracingChannel<unknown, CommandTraceContext>('larder:store:command');
    const start = (ctx: Traced<CommandTraceContext>): Span | undefined => {
      if (commandDuration !== undefined) ctx[STARTED] = performance.now();
      if (!traceCommands || idle()) return undefined;
      const attributes: Attributes = {
        'db.system': 'redis',
        'db.system.name': 'redis',
        'db.operation.name': ctx.command,
        'larder.store': ctx.store,
      };
      if (ctx.count !== undefined) attributes['db.operation.batch.size'] = ctx.count;
      const key = ctx.key === undefined ? undefined : keyOf?.(ctx.key);
      if (key !== undefined) attributes['larder.key'] = key;
      const span = tracer.startSpan(`redis.${ctx.command}`, { kind: SpanKind.CLIENT, attributes }, context.active());
      ctx[SPAN] = span;
      return span;
    };
    const finish = (ctx: Traced<CommandTraceContext>): void => {
      const started = ctx[STARTED];
      if (commandDuration !== undefined && started !== undefined) {
        const attributes: Attributes = { 'db.system.name': 'redis', 'db.operation.name': ctx.command, 'larder.store': ctx.store };
        if ('error' in ctx) attributes['error.type'] = errorType(ctx.error);
        commandDuration.record((performance.now() - started) / 1_000, attributes);
      }
      ctx[SPAN]?.end();
    };
    const handlers = spanHandlers<CommandTraceContext>(start, finish);
    channel.subscribe(handlers);
    undo.push(() => channel.unsubscribe(handlers));
  }

  // --- cache metrics -------------------------------------------------------------------------
  const observers = new Set<Observed>();
  let stopMetrics: (() => void) | undefined;
  const startMetrics = (m: Meter): void => {
    const { observables, callback } = cacheInstruments(m, observers);
    m.addBatchObservableCallback(callback, observables);
    stopMetrics = () => m.removeBatchObservableCallback(callback, observables);
  };

  let disabled = false;
  const observe = (cache: Cache, observeOptions: ObserveOptions = {}): (() => void) => {
    const observed = new Observed(cache, observeOptions);
    if (disabled) return () => undefined;
    for (const other of observers) {
      if (other.name === observed.name)
        throw new Error(`Larder OpenTelemetry: a cache named "${observed.name}" is already observed`);
    }
    observers.add(observed);
    // Spans and histograms of this cache carry its name too, and its listed namespaces' labels.
    cacheNames.set(observed.prefix, observed.name);
    namespaceLists.set(
      observed.prefix,
      observed.namespaces.map(([label, child]) => [child.prefix, label] as const),
    );
    readAttributes.clear();
    if (meter !== undefined && stopMetrics === undefined) startMetrics(meter);
    return () => {
      observers.delete(observed);
      if (cacheNames.get(observed.prefix) === observed.name) {
        cacheNames.delete(observed.prefix);
        namespaceLists.delete(observed.prefix);
        readAttributes.clear();
      }
    };
  };
  for (const entry of options.caches ?? []) {
    if (typeof (entry as Partial<Cache>).stats === 'function') observe(entry as Cache);
    else observe((entry as ObservedCache).cache, entry as ObservedCache);
  }

  return {
    observe,
    disable() {
      if (disabled) return;
      disabled = true;
      for (const fn of undo.splice(0)) fn();
      stopMetrics?.();
      stopMetrics = undefined;
      observers.clear();
    },
  };
}

/** The class of the API's no-op meter (what `getMeter` gives without a metrics SDK). */
const NOOP_METER: unknown = createNoopMeter().constructor;

function isNoopMeter(meter: Meter): boolean {
  return (meter as object).constructor === NOOP_METER;
}
/** What a proxy tracer provider delegates to while no SDK is registered. */
const NOOP_TRACER_PROVIDER = new ProxyTracerProvider().getDelegate();

/**
 * Whether spans would be dropped anyway: the global (proxy) provider has no SDK behind it, yet.
 * Checked per call, so an SDK registered later is picked up; meanwhile no span is started.
 */
function tracingIdle(provider: TracerProvider): () => boolean {
  return provider instanceof ProxyTracerProvider ? () => provider.getDelegate() === NOOP_TRACER_PROVIDER : () => false;
}

/** Tracing channel handlers: `start` opens the span, the end of the call (or a sync throw) closes it. */
function spanHandlers<C extends object>(
  start: (ctx: Traced<C>) => unknown,
  finish: (ctx: Traced<C>) => void,
): TracingChannelSubscribers<C> {
  return {
    start: (ctx) => void start(ctx),
    end: (ctx) => {
      // `tracePromise` publishes `end` when the function returns; an error already set then was
      // thrown synchronously, and no `asyncEnd` will follow.
      if ('error' in ctx) finish(ctx);
    },
    asyncStart: () => undefined,
    asyncEnd: (ctx) => finish(ctx),
    error: (ctx) => {
      const span = (ctx as Traced<C>)[SPAN];
      if (span === undefined) return;
      const error = (ctx as Traced<C>).error;
      if (error instanceof Error) span.recordException(error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
      span.setAttribute('error.type', errorType(error));
    },
  };
}

function errorType(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? code : error.name;
  }
  return '_OTHER';
}

function keyMapper(option: KeyAttribute): ((key: string) => string | undefined) | undefined {
  switch (option) {
    case 'omit':
      return undefined;
    case 'raw':
      return (key) => key;
    case 'hash':
      return (key) => createHash('sha256').update(key).digest('hex').slice(0, 16);
    default:
      if (typeof option === 'function') return option;
      throw new TypeError(`Larder OpenTelemetry: \`keys\` must be 'omit', 'hash', 'raw' or a function`);
  }
}

/** `app:v1:` → `app`. */
function nameOfPrefix(prefix: string): string {
  const end = prefix.indexOf(':');
  return end > 0 ? prefix.slice(0, end) : prefix;
}

/**
 * The AsyncLocalStorage of the SDK's Node context manager, to bind to the load channel. The API
 * offers no public way to it (open-telemetry/opentelemetry-js#6088), so this reads the
 * `AsyncLocalStorageContextManager`'s field, and gives up (no nesting, spans still recorded)
 * when it is not there.
 */
const PRIVATE_GET_MANAGER = '_getContextManager';
const PRIVATE_STORAGE = '_asyncLocalStorage';

function contextStorage(): AsyncLocalStorage<Context> | undefined {
  try {
    const api = context as unknown as Record<string, unknown>;
    const getManager = api[PRIVATE_GET_MANAGER];
    const manager =
      typeof getManager === 'function' ? (getManager.call(context) as Record<string, unknown> | undefined) : undefined;
    const storage = manager?.[PRIVATE_STORAGE];
    return storage instanceof AsyncLocalStorage ? (storage as AsyncLocalStorage<Context>) : undefined;
  } catch {
    return undefined;
  }
}

interface CounterSpec {
  readonly name: string;
  readonly description: string;
  readonly unit: string;
  readonly value: (counts: Counts) => number;
}

const COUNTERS: readonly CounterSpec[] = [
  { name: 'larder.cache.misses', description: 'Reads that found nothing usable.', unit: '{miss}', value: (c) => c.misses },
  {
    name: 'larder.cache.stale_served',
    description: 'Hits served past their fresh period.',
    unit: '{hit}',
    value: (c) => c.staleHits,
  },
  {
    name: 'larder.cache.negative_hits',
    description: 'Hits on a cached "not found".',
    unit: '{hit}',
    value: (c) => c.negativeHits,
  },
  { name: 'larder.cache.loads', description: 'Loader calls.', unit: '{call}', value: (c) => c.loads },
  {
    name: 'larder.cache.load_errors',
    description: 'Loader calls that threw or timed out.',
    unit: '{call}',
    value: (c) => c.loadErrors,
  },
  {
    name: 'larder.cache.load_timeouts',
    description: 'Loader calls stopped by the hard timeout.',
    unit: '{call}',
    value: (c) => c.loadTimeouts,
  },
  {
    name: 'larder.cache.lock_waits',
    description: "Times a caller waited for another process's load.",
    unit: '{wait}',
    value: (c) => c.lockWaits,
  },
  { name: 'larder.cache.fail_open', description: 'Store failures absorbed.', unit: '{failure}', value: (c) => c.failOpen },
  { name: 'larder.cache.corrupt', description: 'Unreadable entries (deleted).', unit: '{entry}', value: (c) => c.corrupt },
  { name: 'larder.cache.write_errors', description: 'Store writes that failed.', unit: '{write}', value: (c) => c.writeErrors },
  {
    name: 'larder.cache.writes_skipped',
    description: 'Loaded values not written because the key was invalidated while loading.',
    unit: '{write}',
    value: (c) => c.writesSkipped,
  },
];

/** The observable instruments over the observed caches, and one callback reading them all. */
function cacheInstruments(
  meter: Meter,
  observers: ReadonlySet<Observed>,
): { observables: Observable[]; callback: (result: BatchObservableResult) => void } {
  const hits = meter.createObservableCounter('larder.cache.hits', {
    description: 'Reads answered from the cache (fresh or stale), by tier.',
    unit: '{hit}',
  });
  const refreshes = meter.createObservableCounter('larder.cache.refreshes', {
    description: 'Background refreshes started, by reason (larder.refresh.reason): early (before expiry) or stale (past fresh).',
    unit: '{refresh}',
  });
  const counters = COUNTERS.map(
    (spec) => [spec, meter.createObservableCounter(spec.name, { description: spec.description, unit: spec.unit })] as const,
  );
  const evictions = meter.createObservableCounter('larder.cache.evictions', {
    description: 'Entries the in-process tier (L1) evicted.',
    unit: '{entry}',
  });
  const l1Entries = meter.createObservableGauge('larder.cache.l1.entries', {
    description: 'Entries in the in-process tier (L1).',
    unit: '{entry}',
  });
  const l1Bytes = meter.createObservableGauge('larder.cache.l1.size', {
    description: 'Bytes held by the in-process tier (L1), serialized size.',
    unit: 'By',
  });
  const ready = meter.createObservableGauge('larder.store.ready', { description: '1 when the store can send commands now.' });
  const breaker = meter.createObservableGauge('larder.store.breaker.state', {
    description: 'Circuit breaker: 0 closed, 1 half-open, 2 open.',
  });
  const opens = meter.createObservableCounter('larder.store.breaker.opens', {
    description: 'Times the circuit breaker opened.',
    unit: '{open}',
  });
  const pending = meter.createObservableUpDownCounter('larder.store.pending_commands', {
    description: 'Commands sent and not answered yet.',
    unit: '{command}',
  });
  const poolConnections = meter.createObservableUpDownCounter('db.client.connection.count', {
    description: 'Connections of the store client pool, by state (db.client.connection.state: idle, used).',
    unit: '{connection}',
  });
  const poolPending = meter.createObservableUpDownCounter('db.client.connection.pending_requests', {
    description: 'Commands waiting for a connection of the store client pool.',
    unit: '{request}',
  });
  const detail = meter.createObservableGauge('larder.store.detail', {
    description: 'Numeric and boolean (0/1) connection details the store client reports.',
  });
  const info = meter.createObservableGauge('larder.store.info', {
    description: 'Textual connection details the store client reports (attribute larder.store.detail.value), always 1.',
  });
  const observables: Observable[] = [
    hits,
    refreshes,
    ...counters.map(([, c]) => c),
    evictions,
    l1Entries,
    l1Bytes,
    ready,
    breaker,
    opens,
    pending,
    poolConnections,
    poolPending,
    detail,
    info,
  ];
  const callback = (result: BatchObservableResult): void => {
    for (const observed of observers) {
      const reading = observed.read();
      const cacheAttrs: Attributes = { 'larder.cache': reading.name };
      for (const row of reading.rows) {
        const attrs: Attributes =
          row.namespace === undefined ? cacheAttrs : { 'larder.cache': reading.name, 'larder.namespace': row.namespace };
        result.observe(hits, row.counts.l1Hits, { ...attrs, 'larder.tier': 'l1' });
        result.observe(hits, row.counts.l2Hits, { ...attrs, 'larder.tier': 'l2' });
        result.observe(refreshes, row.counts.earlyRefreshes, { ...attrs, 'larder.refresh.reason': 'early' });
        result.observe(refreshes, row.counts.staleRefreshes, { ...attrs, 'larder.refresh.reason': 'stale' });
        for (const [spec, instrument] of counters) result.observe(instrument, spec.value(row.counts), attrs);
      }
      result.observe(evictions, reading.stats.l1Evictions, cacheAttrs);
      result.observe(l1Entries, reading.stats.l1Entries, cacheAttrs);
      result.observe(l1Bytes, reading.stats.l1Bytes, cacheAttrs);
      const storeAttrs: Attributes = { 'larder.cache': reading.name, 'larder.store': reading.store };
      const status = reading.status;
      result.observe(ready, status.ready ? 1 : 0, storeAttrs);
      result.observe(breaker, breakerValue(status.breaker), storeAttrs);
      result.observe(opens, status.breakerOpens ?? 0, storeAttrs);
      result.observe(pending, status.pending, storeAttrs);
      if (status.pool !== undefined) {
        const poolAttrs: Attributes = { ...storeAttrs, 'db.client.connection.pool.name': reading.name };
        result.observe(poolConnections, status.pool.idle, { ...poolAttrs, 'db.client.connection.state': 'idle' });
        result.observe(poolConnections, status.pool.inUse, { ...poolAttrs, 'db.client.connection.state': 'used' });
        result.observe(poolPending, status.pool.waiting, poolAttrs);
      }
      for (const [name, value] of Object.entries(status.details ?? {})) {
        if (typeof value === 'string') {
          result.observe(info, 1, { ...storeAttrs, 'larder.store.detail': name, 'larder.store.detail.value': value });
        } else {
          result.observe(detail, Number(value), { ...storeAttrs, 'larder.store.detail': name });
        }
      }
    }
  };
  return { observables, callback };
}
