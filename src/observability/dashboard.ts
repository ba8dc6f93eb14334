/**
 * A live dashboard for Larder caches: one self-contained HTML page (inline script and styles,
 * hand-drawn SVG charts, nothing fetched from elsewhere) that polls a JSON snapshot of
 * `cache.stats()` and `cache.store.status()` every second and charts the hit rate, the latency of
 * each tier (p50/p99) and the loader calls per second.
 *
 * The handler serves the page at any path except one ending in `/stats.json`, which answers the
 * JSON; the page finds it relative to its own address, so it works wherever it is mounted:
 *
 * @example
 * const dashboard = larderDashboard({ caches: [cache] });
 * app.mount('/dashboard', dashboard.fetch);                 // Hono
 * app.use('/dashboard', dashboard);                         // Express / Connect
 * http.createServer((req, res) => req.url?.startsWith('/dashboard') ? dashboard(req, res) : app(req, res));
 *
 * It shows counters and latencies, never keys or values; still, put it behind your admin
 * authentication, as you would a metrics endpoint.
 *
 * @see docs/observability.md
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Cache } from '../core/cache.js';
import type { HistogramSnapshot } from '../core/metrics.js';
import { Observed, quantile, type Counts, type ObserveOptions } from './shared.js';
import type { PoolStatus } from '../stores/store.js';

export type { ObserveOptions } from './shared.js';

/** A cache to show, with its name and namespaces. */
export interface DashboardCache extends ObserveOptions {
  readonly cache: Cache;
}

/** Options of {@link larderDashboard}. */
export interface DashboardOptions {
  /** The caches to show (a selector switches between them). */
  readonly caches: readonly (Cache | DashboardCache)[];
  /** Page title. @default 'Larder' */
  readonly title?: string;
  /**
   * How often the page polls, in ms (250 to 60,000).
   * @default 1_000
   */
  readonly intervalMs?: number;
  /**
   * How many points each chart keeps (at one per poll: 120 × 1 s = the last two minutes).
   * @default 120
   */
  readonly points?: number;
}

/** A histogram with its estimated quantiles (ms), as the JSON endpoint sends it. */
export interface DashboardHistogram extends HistogramSnapshot {
  /** Median since the process started, in ms (`null` while empty). */
  readonly p50: number | null;
  readonly p99: number | null;
}

/** A histogram's count and quantiles since the process started, in ms (`null` while empty). */
export interface DashboardLatencySummary {
  readonly count: number;
  readonly p50: number | null;
  readonly p99: number | null;
}

/** One namespace row of a cache in the JSON snapshot (`namespace: null`: the rest of the cache). */
export interface DashboardNamespaceRow {
  readonly namespace: string | null;
  readonly counters: Counts;
  /** The row's own latency (reads by tier, loads), since start. */
  readonly latency: {
    readonly l1: DashboardLatencySummary;
    readonly l2: DashboardLatencySummary;
    readonly load: DashboardLatencySummary;
  };
}

/** One cache in the JSON snapshot. */
export interface DashboardCacheSnapshot {
  readonly name: string;
  /** Cumulative counters of the whole cache. */
  readonly counters: Counts;
  /** Counters and latency of each listed namespace, and of the rest (`namespace: null`). */
  readonly namespaces: readonly DashboardNamespaceRow[];
  readonly l1: { readonly entries: number; readonly bytes: number; readonly evictions: number };
  readonly latency: {
    readonly l1: DashboardHistogram;
    readonly l2: DashboardHistogram;
    readonly load: DashboardHistogram;
    /** Store command latency (Redis stores with metrics on). */
    readonly store: DashboardHistogram | null;
  };
  readonly store: {
    readonly name: string;
    readonly ready: boolean;
    readonly breaker: 'closed' | 'open' | 'half-open';
    readonly breakerOpens: number;
    readonly pending: number;
    readonly details: Readonly<Record<string, number | string | boolean>>;
    /** The client pool's figures (node-redis `createClientPool()`), else `null`. */
    readonly pool: PoolStatus | null;
  };
}

/** What `<mount>/stats.json` answers. */
export interface DashboardSnapshot {
  /** `Date.now()` when taken. */
  readonly time: number;
  readonly caches: readonly DashboardCacheSnapshot[];
}

/** The handler: node:http / Express style, plus `fetch` for Request/Response frameworks. */
export interface DashboardHandler {
  /** Answers a node:http request (`next` is accepted, and never called: every path is answered). */
  (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void): void;
  /** Answers a WHATWG `Request` (Hono's `app.mount`, Bun, Deno, workers). Needs no `this`. */
  readonly fetch: (request: Request) => Response;
  /** The JSON snapshot, for serving it yourself. Needs no `this`. */
  readonly snapshot: () => DashboardSnapshot;
}

function histogram(snapshot: HistogramSnapshot): DashboardHistogram {
  return {
    bounds: snapshot.bounds,
    counts: snapshot.counts,
    sum: snapshot.sum,
    count: snapshot.count,
    p50: quantile(snapshot, 0.5) ?? null,
    p99: quantile(snapshot, 0.99) ?? null,
  };
}

function summary(snapshot: HistogramSnapshot): DashboardLatencySummary {
  return { count: snapshot.count, p50: quantile(snapshot, 0.5) ?? null, p99: quantile(snapshot, 0.99) ?? null };
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
}

/**
 * The dashboard's request handler. Answers `GET`/`HEAD` only; `<mount>/stats.json` gives the
 * JSON snapshot, every other path the page.
 *
 * @see docs/observability.md
 */
export function larderDashboard(options: DashboardOptions): DashboardHandler {
  if (typeof options !== 'object' || options === null || !Array.isArray(options.caches)) {
    throw new TypeError('Larder dashboard: expected { caches: [cache, …] }');
  }
  const observed = options.caches.map((entry) =>
    typeof (entry as Partial<Cache>).stats === 'function'
      ? new Observed(entry as Cache, {})
      : new Observed((entry as DashboardCache).cache, entry as DashboardCache),
  );
  if (observed.length === 0) throw new TypeError('Larder dashboard: `caches` is empty');
  const names = new Set(observed.map((o) => o.name));
  if (names.size !== observed.length) throw new TypeError('Larder dashboard: two caches have the same name (pass `name`)');
  const intervalMs = options.intervalMs ?? 1_000;
  if (!Number.isFinite(intervalMs) || intervalMs < 250 || intervalMs > 60_000) {
    throw new TypeError('Larder dashboard: `intervalMs` must be between 250 and 60000');
  }
  const points = options.points ?? 120;
  if (!Number.isInteger(points) || points < 10 || points > 10_000) {
    throw new TypeError('Larder dashboard: `points` must be an integer between 10 and 10000');
  }
  const title = options.title ?? 'Larder';

  const snapshot = (): DashboardSnapshot => ({
    time: Date.now(),
    caches: observed.map((o): DashboardCacheSnapshot => {
      const reading = o.read();
      const { stats, status } = reading;
      const counters = {} as Record<keyof Counts, number>;
      for (const row of reading.rows) {
        for (const [key, value] of Object.entries(row.counts) as [keyof Counts, number][]) {
          counters[key] = (counters[key] ?? 0) + value;
        }
      }
      return {
        name: reading.name,
        counters,
        namespaces: reading.rows.map((row) => ({
          namespace: row.namespace ?? null,
          counters: row.counts,
          latency: { l1: summary(row.latency.l1), l2: summary(row.latency.l2), load: summary(row.latency.load) },
        })),
        l1: { entries: stats.l1Entries, bytes: stats.l1Bytes, evictions: stats.l1Evictions },
        latency: {
          l1: histogram(stats.latency.l1),
          l2: histogram(stats.latency.l2),
          load: histogram(stats.latency.load),
          store: status.latency === undefined ? null : histogram(status.latency),
        },
        store: {
          name: reading.store,
          ready: status.ready,
          breaker: status.breaker,
          breakerOpens: status.breakerOpens ?? 0,
          pending: status.pending,
          details: status.details ?? {},
          pool: status.pool ?? null,
        },
      };
    }),
  });

  /** Status, headers and body of an answer to `method` on `pathname`. */
  const answer = (method: string, pathname: string): { status: number; headers: Record<string, string>; body: string } => {
    const common = {
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    };
    if (method !== 'GET' && method !== 'HEAD') {
      return {
        status: 405,
        headers: { ...common, allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' },
        body: 'Method Not Allowed\n',
      };
    }
    if (pathname.endsWith('/stats.json') || pathname === 'stats.json') {
      return {
        status: 200,
        headers: { ...common, 'content-type': 'application/json; charset=utf-8' },
        body: JSON.stringify(snapshot()),
      };
    }
    const nonce = randomBytes(16).toString('base64');
    return {
      status: 200,
      headers: {
        ...common,
        'content-type': 'text/html; charset=utf-8',
        'content-security-policy':
          `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; ` +
          `img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'`,
      },
      body: page({ title, intervalMs, points, nonce }),
    };
  };

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    let pathname = '/';
    try {
      pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      // Unparseable URL: serve the page.
    }
    const { status, headers, body } = answer(req.method ?? 'GET', pathname);
    res.statusCode = status;
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
    res.setHeader('content-length', Buffer.byteLength(body));
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  const fetchHandler = (request: Request): Response => {
    const { status, headers, body } = answer(request.method, new URL(request.url).pathname);
    return new Response(request.method === 'HEAD' ? null : body, { status, headers });
  };
  return Object.assign(handler, { fetch: fetchHandler, snapshot });
}

function page({
  title,
  intervalMs,
  points,
  nonce,
}: {
  title: string;
  intervalMs: number;
  points: number;
  nonce: string;
}): string {
  const config = JSON.stringify({ intervalMs, points }).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${escapeHtml(title)}</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<header>
  <h1>${escapeHtml(title)}</h1>
  <label id="cache-picker">cache <select id="cache"></select></label>
  <span id="status" class="muted">connecting…</span>
</header>
<section class="tiles">
  <div class="tile"><div class="label">hit rate</div><div class="value" id="hit-rate">–</div></div>
  <div class="tile"><div class="label">reads / s</div><div class="value" id="reads-rate">–</div></div>
  <div class="tile"><div class="label">loader calls / s</div><div class="value" id="loads-rate">–</div></div>
  <div class="tile"><div class="label">L2 p99</div><div class="value" id="l2-p99">–</div></div>
  <div class="tile"><div class="label">stale served / s</div><div class="value" id="stale-rate">–</div></div>
  <div class="tile"><div class="label">L1 entries</div><div class="value" id="l1-entries">–</div></div>
  <div class="tile"><div class="label">store</div><div class="value" id="store-state">–</div></div>
  <div class="tile"><div class="label">pending commands</div><div class="value" id="pending">–</div></div>
</section>
<section class="charts">
  <figure><figcaption>Hit rate (%)</figcaption><svg id="chart-hit-rate" class="chart" viewBox="0 0 600 220" role="img" aria-label="hit rate"></svg></figure>
  <figure><figcaption>Latency by tier, p50 / p99 (ms, log scale)</figcaption><svg id="chart-latency" class="chart" viewBox="0 0 600 220" role="img" aria-label="latency by tier"></svg></figure>
  <figure><figcaption>Reads per second</figcaption><svg id="chart-reads" class="chart" viewBox="0 0 600 220" role="img" aria-label="reads per second"></svg></figure>
  <figure><figcaption>Loader calls and stale serves per second</figcaption><svg id="chart-loads" class="chart" viewBox="0 0 600 220" role="img" aria-label="loader calls per second"></svg></figure>
</section>
<section>
  <h2>Totals since start</h2>
  <table id="totals"><thead><tr><th>namespace</th><th>hits</th><th>L1</th><th>L2</th><th>stale</th><th>misses</th><th>loads</th><th>load errors</th><th title="early (before expiry) / stale (past fresh)">refreshes e / s</th><th>lock waits</th><th>fail-open</th><th>corrupt</th><th title="reads answered by Redis, since start">L2 p99</th><th title="loader calls, since start">load p99</th></tr></thead><tbody></tbody></table>
  <p class="muted" id="details"></p>
</section>
<script nonce="${nonce}">
const CONFIG = ${config};
${SCRIPT}
</script>
</body>
</html>
`;
}

const STYLE = `
:root { color-scheme: light dark; --bg: #fff; --fg: #1d2330; --muted: #6b7385; --line: #e3e6ee; --card: #f6f7fb; }
@media (prefers-color-scheme: dark) { :root { --bg: #12151c; --fg: #e6e9f0; --muted: #8b93a6; --line: #2a303c; --card: #1a1e27; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 16px 24px; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; align-items: baseline; gap: 16px; flex-wrap: wrap; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 15px; margin: 16px 0 8px; }
.muted { color: var(--muted); }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)); gap: 8px; margin: 8px 0 16px; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; }
.tile .label { color: var(--muted); font-size: 12px; }
.tile .value { font-size: 20px; font-variant-numeric: tabular-nums; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 12px; }
figure { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px; }
figcaption { color: var(--muted); font-size: 12px; margin: 0 0 4px 4px; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart .grid { stroke: var(--line); stroke-width: 1; }
svg.chart text { fill: var(--muted); font-size: 11px; }
svg.chart path.series { fill: none; stroke-width: 2; stroke-linejoin: round; }
svg.chart .dashed { stroke-dasharray: 5 4; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: right; }
th { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
.ok { color: #1a9c5b; } .bad { color: #d64045; } .warn { color: #d98e04; }
`;

/** The page's script: plain ES2020, no build step. */
const SCRIPT = String.raw`
'use strict';
const SVG = 'http://www.w3.org/2000/svg';
const COLORS = { hit: '#2f7ef7', stale: '#d98e04', l1: '#1a9c5b', l2: '#2f7ef7', load: '#9b51e0', store: '#d64045', reads: '#2f7ef7', loads: '#9b51e0' };
const base = location.pathname.endsWith('/') ? location.pathname : location.pathname + '/';
const statsUrl = base + 'stats.json';
const $ = (id) => document.getElementById(id);
const histories = new Map(); // cache name -> { last, series }
let selected = null;

function quantile(h, q) {
  let total = 0;
  for (const c of h.counts) total += c;
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < h.counts.length; i++) {
    const c = h.counts[i];
    if (c > 0 && seen + c >= rank) {
      const upper = h.bounds[i];
      if (upper === undefined) return h.bounds[h.bounds.length - 1];
      const lower = i === 0 ? 0 : h.bounds[i - 1];
      return lower + (upper - lower) * ((rank - seen) / c);
    }
    seen += c;
  }
  return h.bounds[h.bounds.length - 1];
}
function delta(a, b) {
  if (!a) return null;
  if (!b) return a;
  return { bounds: a.bounds, counts: a.counts.map((c, i) => Math.max(0, c - (b.counts[i] || 0))), sum: a.sum - b.sum, count: a.count - b.count };
}
function newSeries() {
  const s = {};
  for (const k of ['hitRate', 'staleRate', 'reads', 'loads', 'l1p50', 'l1p99', 'l2p50', 'l2p99', 'loadp50', 'loadp99', 'storep99']) s[k] = [];
  return s;
}
function push(arr, v) { arr.push(v); if (arr.length > CONFIG.points) arr.shift(); }

function ingest(cache, time) {
  let h = histories.get(cache.name);
  if (!h) { h = { last: null, series: newSeries(), latest: {} }; histories.set(cache.name, h); }
  const last = h.last;
  h.last = { cache, time };
  if (!last) return h;
  const dt = Math.max(0.001, (time - last.time) / 1000);
  const c = cache.counters, p = last.cache.counters;
  const hits = c.hits - p.hits, misses = c.misses - p.misses, loads = c.loads - p.loads, stale = c.staleHits - p.staleHits;
  const reads = hits + misses;
  const v = {
    hitRate: reads > 0 ? (100 * hits) / reads : null,
    staleRate: stale / dt,
    reads: reads / dt,
    loads: loads / dt,
  };
  for (const tier of ['l1', 'l2', 'load']) {
    const d = delta(cache.latency[tier], last.cache.latency[tier]);
    v[tier + 'p50'] = d ? quantile(d, 0.5) : null;
    v[tier + 'p99'] = d ? quantile(d, 0.99) : null;
  }
  const ds = delta(cache.latency.store, last.cache.latency.store);
  v.storep99 = ds ? quantile(ds, 0.99) : null;
  for (const k of Object.keys(h.series)) push(h.series[k], v[k] === undefined ? null : v[k]);
  h.latest = v;
  return h;
}

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function fmt(v, digits) {
  if (v === null || v === undefined || !isFinite(v)) return '–';
  if (Math.abs(v) >= 10000) return (v / 1000).toFixed(0) + 'k';
  if (Math.abs(v) >= 100) return v.toFixed(0);
  return v.toFixed(digits === undefined ? 1 : digits);
}
function fmtMs(v) {
  if (v === null || v === undefined) return '–';
  if (v >= 1000) return (v / 1000).toFixed(2) + ' s';
  if (v >= 10) return v.toFixed(0) + ' ms';
  if (v >= 1) return v.toFixed(1) + ' ms';
  return v.toFixed(3) + ' ms';
}

/** Draws series ({ label, color, values, dashed }) on an SVG: linear (min 0) or log scale. */
function chart(svg, series, opts) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = 600, H = 220, L = 48, R = 8, T = 22, B = 20;
  const all = series.flatMap((s) => s.values.filter((v) => v !== null && isFinite(v) && (!opts.log || v > 0)));
  let lo, hi;
  if (opts.log) {
    lo = all.length ? Math.pow(10, Math.floor(Math.log10(Math.min(...all)))) : 0.01;
    hi = all.length ? Math.pow(10, Math.ceil(Math.log10(Math.max(...all)))) : 100;
    if (hi <= lo) hi = lo * 10;
  } else {
    lo = 0;
    hi = opts.max !== undefined ? opts.max : niceCeil(all.length ? Math.max(...all) * 1.1 : 1);
    if (hi <= 0) hi = 1;
  }
  const y = (v) => {
    const f = opts.log ? (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) : (v - lo) / (hi - lo);
    return T + (H - T - B) * (1 - Math.min(1, Math.max(0, f)));
  };
  // The newest point on the right; until the history fills, a window of at least 30 points.
  const window = Math.min(CONFIG.points, Math.max(30, ...series.map((s) => s.values.length)));
  const x = (i) => L + ((W - L - R) * i) / Math.max(1, window - 1);
  const ticks = [];
  if (opts.log) { for (let v = lo; v <= hi * 1.0001; v *= 10) ticks.push(v); }
  else { for (let i = 0; i <= 4; i++) ticks.push(lo + ((hi - lo) * i) / 4); }
  for (const t of ticks) {
    el('line', { class: 'grid', x1: L, x2: W - R, y1: y(t), y2: y(t) }, svg);
    const label = el('text', { x: L - 6, y: y(t) + 4, 'text-anchor': 'end' }, svg);
    label.textContent = opts.log ? (t >= 1 ? String(t) : String(+t.toPrecision(1))) : fmt(t, opts.digits);
  }
  let lx = L + 4;
  for (const s of series) {
    const offset = window - s.values.length;
    let d = '';
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || !isFinite(v) || (opts.log && v <= 0)) { pen = false; return; }
      d += (pen ? 'L' : 'M') + x(i + offset).toFixed(1) + ' ' + y(v).toFixed(1) + ' ';
      pen = true;
    });
    el('path', { class: 'series' + (s.dashed ? ' dashed' : ''), d: d.trim() || 'M0 0', stroke: s.color, 'data-series': s.label }, svg);
    el('line', { x1: lx, x2: lx + 14, y1: 8, y2: 8, stroke: s.color, 'stroke-width': 2, class: s.dashed ? 'legend dashed' : 'legend' }, svg);
    const t = el('text', { x: lx + 18, y: 12 }, svg);
    t.textContent = s.label;
    lx += 26 + s.label.length * 6.2;
  }
}

/** The smallest 1, 2 or 5 × 10^k at least v. */
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function render() {
  const h = histories.get(selected);
  if (!h || !h.last) return;
  const cache = h.last.cache;
  const v = h.latest;
  $('hit-rate').textContent = v.hitRate === undefined || v.hitRate === null ? '–' : v.hitRate.toFixed(1) + ' %';
  $('reads-rate').textContent = fmt(v.reads);
  $('loads-rate').textContent = fmt(v.loads);
  $('stale-rate').textContent = fmt(v.staleRate);
  $('l2-p99').textContent = fmtMs(v.l2p99);
  $('l1-entries').textContent = String(cache.l1.entries);
  const st = cache.store;
  const state = $('store-state');
  state.textContent = st.name + (st.ready ? ' ready' : ' down') + (st.breaker === 'closed' ? '' : ', breaker ' + st.breaker);
  state.className = 'value ' + (!st.ready || st.breaker === 'open' ? 'bad' : st.breaker === 'half-open' ? 'warn' : 'ok');
  $('pending').textContent = String(st.pending);
  const s = h.series;
  chart($('chart-hit-rate'), [{ label: 'hit rate', color: COLORS.hit, values: s.hitRate }], { max: 100, digits: 0 });
  chart($('chart-latency'), [
    { label: 'L1 p50', color: COLORS.l1, values: s.l1p50 },
    { label: 'L1 p99', color: COLORS.l1, values: s.l1p99, dashed: true },
    { label: 'L2 p50', color: COLORS.l2, values: s.l2p50 },
    { label: 'L2 p99', color: COLORS.l2, values: s.l2p99, dashed: true },
    { label: 'load p99', color: COLORS.load, values: s.loadp99, dashed: true },
    { label: 'redis p99', color: COLORS.store, values: s.storep99, dashed: true },
  ], { log: true });
  chart($('chart-reads'), [{ label: 'reads/s', color: COLORS.reads, values: s.reads }], { digits: 0 });
  chart($('chart-loads'), [
    { label: 'loader calls/s', color: COLORS.loads, values: s.loads },
    { label: 'stale served/s', color: COLORS.stale, values: s.staleRate },
  ], { digits: 0 });
  const tbody = $('totals').tBodies[0];
  tbody.textContent = '';
  const rows = cache.namespaces.length > 1 ? cache.namespaces.concat([{ namespace: '(total)', counters: cache.counters, latency: cache.latency }]) : [{ namespace: '(all)', counters: cache.counters, latency: cache.latency }];
  for (const row of rows) {
    const tr = document.createElement('tr');
    const c = row.counters;
    for (const cell of [row.namespace === null ? '(rest)' : row.namespace, c.hits, c.l1Hits, c.l2Hits, c.staleHits, c.misses, c.loads, c.loadErrors, c.earlyRefreshes + ' / ' + c.staleRefreshes, c.lockWaits, c.failOpen, c.corrupt, fmtMs(row.latency.l2.p99), fmtMs(row.latency.load.p99)]) {
      const td = document.createElement('td');
      td.textContent = String(cell);
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
  const details = Object.entries(st.details).map(([k, val]) => k + ': ' + val).join(', ') +
    (st.pool ? ', pool: ' + st.pool.total + ' connections (' + st.pool.idle + ' idle, ' + st.pool.inUse + ' in use), ' + st.pool.waiting + ' waiting' : '');
  $('details').textContent = 'L1: ' + cache.l1.entries + ' entries, ' + cache.l1.bytes + ' bytes, ' + cache.l1.evictions + ' evicted. Store ' + st.name + ': breaker ' + st.breaker + ' (opened ' + st.breakerOpens + ' times)' + (details ? ', ' + details : '') + '.';
}

async function poll() {
  try {
    const response = await fetch(statsUrl, { cache: 'no-store' });
    if (!response.ok) throw new Error('HTTP ' + response.status);
    const snap = await response.json();
    const picker = $('cache');
    if (picker.options.length !== snap.caches.length) {
      picker.textContent = '';
      for (const c of snap.caches) { const o = document.createElement('option'); o.value = o.textContent = c.name; picker.appendChild(o); }
      if (selected === null || !snap.caches.some((c) => c.name === selected)) selected = snap.caches[0] ? snap.caches[0].name : null;
      picker.value = selected;
      $('cache-picker').hidden = snap.caches.length < 2;
    }
    for (const c of snap.caches) ingest(c, snap.time);
    render();
    $('status').textContent = 'updated ' + new Date(snap.time).toLocaleTimeString();
    $('status').className = 'muted';
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  } catch (error) {
    $('status').textContent = 'cannot reach ' + statsUrl + ': ' + error.message;
    $('status').className = 'bad';
  } finally {
    setTimeout(poll, CONFIG.intervalMs);
  }
}
$('cache').addEventListener('change', (e) => { selected = e.target.value; render(); });
poll();
`;
