import { cacheSuite } from './suites/cache-suite.js';

// node-redis through a client pool: each command borrows a pooled connection; pub/sub (the bus,
// lease waits) runs on a connection duplicated from one.
cacheSuite('redis-pool');
cacheSuite('redis-pool', { l1: true });
