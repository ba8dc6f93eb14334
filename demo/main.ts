/**
 * `npm start`: the demo service. Configuration comes from the environment (docs/demo.md); with
 * none, it runs on embedded Postgres (PGlite) and on the Redis at 127.0.0.1:6379 if one answers,
 * else on Larder's in-memory store.
 *
 * SIGTERM / SIGINT: stop accepting connections, finish the requests in flight, close Redis and
 * Postgres, exit 0.
 */
import type { Extension } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { observability } from './observability.js';
import { startService } from './service.js';

/** More routes, each `(app, services) => void` (see demo/app.ts): `/metrics` and `/dashboard`. */
const extensions: Extension[] = [observability];

let config;
try {
  config = loadConfig();
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(`[demo] configuration error: ${error.message}`);
  process.exit(2);
}

const started = performance.now();
let service;
try {
  service = await startService(config, { extensions });
} catch (error) {
  console.error(`[demo] could not start: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
console.log(`[demo] listening on ${service.url} (ready in ${Math.round(performance.now() - started)} ms)`);
console.log(
  `[demo] try: curl -c /tmp/larder.jar -H 'content-type: application/json' ` +
    `-d '{"email":"user1@example.com","password":"${config.seedPassword}"}' ${service.url}/login`,
);

let stopping = false;
const stop = (signal: NodeJS.Signals) => {
  if (stopping) return;
  stopping = true;
  console.log(`[demo] ${signal}: draining in-flight requests, then closing Redis and Postgres`);
  // A last resort only: everything below closes on its own, and the process then exits by itself.
  setTimeout(() => {
    console.error('[demo] shutdown is taking too long; exiting');
    process.exit(1);
  }, config.shutdownTimeoutMs + 5_000).unref();
  service.close().then(
    () => {
      console.log('[demo] stopped');
      process.exitCode = 0;
    },
    (error: unknown) => {
      console.error('[demo] error while stopping:', error);
      process.exitCode = 1;
    },
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
