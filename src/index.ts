/**
 * Larder: typed cache-aside for Node.js, over Redis or memory.
 *
 * The root exports the cache, the memory store, the serializers and the errors. Redis drivers
 * are subpath exports (`larder/redis`, `larder/ioredis`) so that importing Larder never loads a
 * Redis client you do not use. Internals (the entry envelope, flights, the deadline timer) are
 * deliberately not exported: they may change without a major version.
 *
 * @module
 */
export { Cache, createCache, type BatchLoader, type SetManyEntry } from './core/cache.js';
export type {
  CacheOptions,
  EarlyRefreshOptions,
  GetOptions,
  GetOrSetManyOptions,
  GetOrSetOptions,
  LockOptions,
  SetOptions,
  EntryOptions,
  WriteOptions,
} from './core/options.js';
export type { InferringLoader, Loader, LoaderContext, LoaderValue } from './core/loader.js';
export type { CacheStats } from './core/stats.js';
export type {
  BreakerEvent,
  CacheEventMap,
  CacheEventName,
  CorruptEvent,
  HitEvent,
  LoadErrorEvent,
  LoadEvent,
  LockWaitEvent,
  MissEvent,
  RefreshEvent,
  StoreErrorEvent,
  Tier,
  WriteSkippedEvent,
} from './core/events.js';
export type { Clock } from './core/clock.js';
export { memoryStore, type MemoryStoreOptions } from './stores/memory.js';
export type {
  ConditionalWrite,
  LeaseRequest,
  Notice,
  Store,
  StoreStatus,
  StoreWrite,
  SubscribeHandlers,
  Subscription,
  VersionReply,
  VersionRequest,
  Wire,
} from './stores/store.js';
export { jsonSerializer } from './serializers/json.js';
export { msgpackSerializer } from './serializers/msgpack.js';
export type { Payload, Serializer } from './serializers/serializer.js';
export { brotli, gzip, type CompressionOptions, type Compressor } from './serializers/compression.js';
export * from './errors.js';
