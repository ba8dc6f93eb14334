import { cacheSuite } from './suites/cache-suite.js';

cacheSuite('ioredis');
