import { cacheSuite } from './suites/cache-suite.js';

// ioredis with enableAutoPipelining: the commands of one tick share a socket write, and the
// store's batches (setMany, leases, refresh writes) go through that queue instead of a pipeline.
cacheSuite('ioredis-auto');
