/**
 * The load generator of `npm run load`: autocannon, used as a library, in a child process of its
 * own so that generating load does not share an event loop (or a core) with the service.
 *
 * It receives jobs over IPC: targets (a URL and a number of connections each, all run at once),
 * a duration and the traffic to send, and answers each job with autocannon's results.
 */
import autocannon from 'autocannon';

/** What requests look like. */
export type Traffic =
  | {
      /** The product mix: single reads (skewed towards a hot set), bulk reads and profiles. */
      readonly kind: 'mix';
      readonly products: number;
      readonly hotProducts: number;
      /** Session cookies (`sid=...`) to spread `/profile` requests over. */
      readonly cookies: readonly string[];
    }
  | {
      /** One hot product, read by everyone. */
      readonly kind: 'hot';
      readonly productId: number;
    };

export interface LoadJob {
  readonly id: number;
  readonly targets: readonly { readonly url: string; readonly connections: number }[];
  readonly seconds: number;
  readonly traffic: Traffic;
  /** `x-cache-mode` header to send, if any. */
  readonly mode: string | undefined;
}

export interface LoadResult {
  readonly requests: number;
  readonly requestsPerSecond: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly non2xx: number;
  /** Non-2xx answers by status code. */
  readonly statuses: Record<string, number>;
  /** Connection errors and timeouts. */
  readonly errors: number;
  readonly seconds: number;
}

export interface LoadReply {
  readonly id: number;
  readonly results?: LoadResult[];
  readonly error?: string;
}

/** Picks a product id: 80% from the hot set, 20% from the whole catalogue. */
function productId(traffic: Extract<Traffic, { kind: 'mix' }>): number {
  const range = Math.random() < 0.8 ? traffic.hotProducts : traffic.products;
  return 1 + Math.floor(Math.random() * range);
}

function nextPath(traffic: Traffic, headers: Record<string, string>): string {
  if (traffic.kind === 'hot') return `/products/${traffic.productId}`;
  const roll = Math.random();
  if (roll < 0.1 && traffic.cookies.length > 0) {
    headers.cookie = traffic.cookies[Math.floor(Math.random() * traffic.cookies.length)]!;
    return '/profile';
  }
  if (roll < 0.2) return `/products?ids=${Array.from({ length: 10 }, () => productId(traffic)).join(',')}`;
  return `/products/${productId(traffic)}`;
}

async function run(url: string, connections: number, job: LoadJob): Promise<LoadResult> {
  const result = await autocannon({
    url,
    connections,
    duration: job.seconds,
    requests: [
      {
        setupRequest: (request) => {
          const headers: Record<string, string> = job.mode === undefined ? {} : { 'x-cache-mode': job.mode };
          request.path = nextPath(job.traffic, headers);
          request.headers = headers;
          return request;
        },
      },
    ],
  });
  return {
    requests: result.requests.total,
    requestsPerSecond: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    max: result.latency.max,
    non2xx: result.non2xx,
    statuses: Object.fromEntries(
      Object.entries(result.statusCodeStats ?? {})
        .filter(([code]) => !code.startsWith('2'))
        .map(([code, stats]) => [code, stats.count ?? 0]),
    ),
    errors: result.errors,
    seconds: result.duration,
  };
}

process.on('message', (job: LoadJob) => {
  Promise.all(job.targets.map((target) => run(target.url, target.connections, job))).then(
    (results) => process.send!({ id: job.id, results } satisfies LoadReply),
    (error: unknown) => process.send!({ id: job.id, error: String(error) } satisfies LoadReply),
  );
});
process.on('disconnect', () => process.exit(0));
