/**
 * `node:diagnostics_channel` hooks: the Node ecosystem's zero-cost-when-unused way to observe a
 * library. Every cache event is also published on `larder:cache:<event>` (same payload, plus
 * `cache`: the namespace prefix), and two tracing channels wrap the work worth a span:
 *
 * - `larder:cache:load`: each loader call, context `{ key, cache, background }`;
 * - `larder:store:command`: each Redis command, context `{ command, key, store }`.
 *
 * Publishing is skipped entirely while a channel has no subscribers.
 *
 * @experimental Channel names and payloads may change before 1.0.
 */
import { channel, tracingChannel, type Channel, type TracingChannel } from 'node:diagnostics_channel';
import type { CacheEventName } from './events.js';

export interface LoadTraceContext {
  readonly key: string;
  readonly cache: string;
  readonly background: boolean;
}

export interface CommandTraceContext {
  /** The Redis command (`GET`, `EVALSHA`, …). */
  readonly command: string;
  readonly key: string | undefined;
  /** `redis` or `ioredis`. */
  readonly store: string;
}

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
