/**
 * `node:diagnostics_channel` hooks: the Node ecosystem's zero-cost-when-unused way to observe a
 * library. Every cache event is also published on `larder:cache:<event>` (same payload, plus
 * `cache`: the namespace prefix), and two tracing channels wrap the work worth a span:
 *
 * - `larder:cache:load`: each loader call, context `{ key, keys, cache, background }`;
 * - `larder:store:command`: each Redis command or pipeline, context `{ command, key, count?, store }`.
 *
 * And `larder:cache:read` carries each timed read (`{ cache, prefix, tier, durationMs }`, see
 * {@link ReadMessage}): what the `l1` and `l2` latency histograms record.
 *
 * Publishing is skipped entirely while a channel has no subscribers.
 *
 * @experimental Channel names and payloads may change before 1.0.
 */
import { channel, tracingChannel, type Channel, type TracingChannel } from 'node:diagnostics_channel';
import type { CacheEventName } from './events.js';

export interface LoadTraceContext {
  /** The key loaded; for a batch loader, its first key. */
  readonly key: string;
  /** Every key the call loads: one for `getOrSet`, the missing keys for `getOrSetMany`. */
  readonly keys: readonly string[];
  readonly cache: string;
  readonly background: boolean;
}

export interface CommandTraceContext {
  /** The Redis command (`GET`, `EVALSHA`, …); for a pipeline, the command it repeats. */
  readonly command: string;
  /** The command's key; for a multi-key command or a pipeline, its first key. */
  readonly key: string | undefined;
  /** For a multi-key command or a pipeline: how many keys (or commands) it carries. */
  readonly count?: number;
  /** `redis` or `ioredis`. */
  readonly store: string;
}

/** A read timed for the latency histograms, published on `larder:cache:read`. */
export interface ReadMessage {
  /** The root cache's key prefix (as `cache` in the other channels' messages). */
  readonly cache: string;
  /** The key prefix of the cache or namespace (`cache.namespace()`) that read. */
  readonly prefix: string;
  /** `l1`: answered by the in-process tier (one hit in 64 is timed); `l2`: a read of the store. */
  readonly tier: 'l1' | 'l2';
  readonly durationMs: number;
}

/** Timed reads (see {@link ReadMessage}). */
export const readChannel: Channel = channel('larder:cache:read');

const EVENT_NAMES: readonly CacheEventName[] = [
  'hit',
  'miss',
  'load',
  'load-error',
  'refresh',
  'corrupt',
  'store-error',
  'write-skipped',
  'lock-wait',
  'breaker',
  'bus',
];

const eventChannels = Object.fromEntries(EVENT_NAMES.map((name) => [name, channel(`larder:cache:${name}`)])) as Record<
  CacheEventName,
  Channel
>;

/** The channel mirroring a cache event. */
export function eventChannel(name: CacheEventName): Channel {
  return eventChannels[name];
}

export const loadTrace: TracingChannel<unknown, LoadTraceContext> = tracingChannel('larder:cache:load');
export const commandTrace: TracingChannel<unknown, CommandTraceContext> = tracingChannel('larder:store:command');
