import { cacheSuite } from './suites/cache-suite.js';

// The whole behaviour suite again, with an in-process tier in front of the store.
cacheSuite('redis', { l1: true });
cacheSuite('memory', { l1: true });
