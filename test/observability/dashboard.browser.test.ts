/**
 * The dashboard in headless Chromium (Debian's `chromium`, driven by playwright-core; no browser
 * download): served by a real HTTP server over Redis-backed caches under load, the page must
 * draw its charts, and what it shows must change as the load goes on. A screenshot of each
 * chart is decoded and checked for the series' colours.
 *
 * `UPDATE_SCREENSHOT=1` also writes the full page to docs/dashboard.png.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCache, type Cache } from '../../src/index.js';
import { larderDashboard } from '../../src/observability/dashboard.js';
import { redisStore } from '../../src/stores/redis.js';
import { nodeRedis, uniqueNamespace, type NodeRedis } from '../helpers/redis.js';
import { startLoad, type Load } from './load.js';
import { countColor, decodePng } from './png.js';

const CHROMIUM = '/usr/bin/chromium';
const updateScreenshot = process.env.UPDATE_SCREENSHOT === '1';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The few DOM members the page functions below use (they run in the browser; no DOM lib here). */
interface PageDocument {
  readonly body: { readonly dataset: Record<string, string | undefined> };
  getElementById(id: string): { readonly textContent: string | null } | null;
  querySelectorAll(selector: string): Iterable<{ getAttribute(name: string): string | null }>;
}
declare const document: PageDocument;

let client: NodeRedis;
let catalog: Cache;
let products: Cache;
let sessions: Cache;
let server: Server;
let url: string;
let load: Load;
let userDataDir: string;
let browser: BrowserContext;

beforeAll(async () => {
  client = await nodeRedis();
  catalog = createCache({ namespace: uniqueNamespace('dash'), store: redisStore({ client }), l1: { maxEntries: 100 } });
  products = catalog.namespace('products');
  sessions = createCache({ namespace: uniqueNamespace('dash'), store: redisStore({ client }) });
  const dashboard = larderDashboard({
    title: 'Larder: demo caches',
    caches: [
      { cache: catalog, name: 'catalog', namespaces: { products } },
      { cache: sessions, name: 'sessions' },
    ],
  });
  server = createServer((req, res) => {
    if (req.url?.startsWith('/dashboard')) return dashboard(req, res);
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  load = startLoad([catalog, products, sessions], { maxMs: 110_000 });
  userDataDir = await mkdtemp(join(tmpdir(), 'larder-chromium-'));
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 1000 },
    colorScheme: 'light',
  });
});

afterAll(async () => {
  await browser?.close();
  await load?.stop();
  await new Promise((resolve) => server?.close(resolve));
  for (const cache of [catalog, sessions]) await cache?.clear().catch(() => undefined);
  await Promise.all([catalog?.close(), sessions?.close()]);
  await client?.close();
  if (userDataDir !== undefined) await rm(userDataDir, { recursive: true, force: true });
}, 30_000);

/** What the page shows: tile texts, the series paths of each chart, the number of updates. */
async function shown(page: Page) {
  return page.evaluate(() => {
    const text = (id: string) => document.getElementById(id)?.textContent ?? '';
    const paths = (id: string) =>
      Object.fromEntries(
        [...document.querySelectorAll(`#${id} path.series`)].map((p) => [
          p.getAttribute('data-series'),
          p.getAttribute('d') ?? '',
        ]),
      );
    return {
      updates: Number(document.body.dataset.updates ?? 0),
      hitRate: text('hit-rate'),
      reads: text('reads-rate'),
      loads: text('loads-rate'),
      l2p99: text('l2-p99'),
      store: text('store-state'),
      totals: text('totals'),
      charts: {
        hitRate: paths('chart-hit-rate'),
        latency: paths('chart-latency'),
        reads: paths('chart-reads'),
        loads: paths('chart-loads'),
      },
    };
  });
}

/** The plot below a chart's legend (the legend swatches use the series' colours too). */
const plotArea = (image: { height: number }) => ({ fromRow: Math.ceil(image.height * 0.08) });

/** Points drawn in a path (`M`/`L` commands). */
const drawn = (d: string | undefined) => (d?.match(/[ML]/g) ?? []).length - (d === 'M0 0' ? 1 : 0);

describe('dashboard in headless Chromium', () => {
  it('draws live charts whose values change under load, with no script or CSP error', async () => {
    const page = browser.pages()[0] ?? (await browser.newPage());
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') problems.push(`console: ${message.text()}`);
    });
    const response = await page.goto(`${url}/dashboard`);
    expect(response?.status()).toBe(200);
    expect(response?.headers()['content-security-policy']).toContain("script-src 'nonce-");
    expect(await page.title()).toBe('Larder: demo caches');

    // Three polls: two intervals of rates drawn.
    await page.waitForFunction(() => Number(document.body.dataset.updates) >= 4, null, { timeout: 20_000 });
    const first = await shown(page);
    for (const chart of ['chart-hit-rate', 'chart-latency', 'chart-reads', 'chart-loads']) {
      expect(await page.locator(`svg#${chart} path.series`).count()).toBeGreaterThan(0);
    }
    expect(drawn(first.charts.hitRate['hit rate'])).toBeGreaterThanOrEqual(2);
    expect(drawn(first.charts.reads['reads/s'])).toBeGreaterThanOrEqual(2);
    expect(drawn(first.charts.loads['loader calls/s'])).toBeGreaterThanOrEqual(2);
    expect(drawn(first.charts.latency['L2 p50'])).toBeGreaterThanOrEqual(2);
    expect(first.hitRate).toMatch(/^\d+(\.\d)? %$/);
    expect(Number(first.reads.replace('k', '000'))).toBeGreaterThan(0);
    expect(first.l2p99).toMatch(/ms$/);
    expect(first.store).toBe('redis ready');
    expect(first.totals).toContain('products');

    // Later: more points, other numbers. (For the docs screenshot, a longer history.)
    const polls = updateScreenshot ? 45 : 3;
    await page.waitForFunction((target) => Number(document.body.dataset.updates) >= target, first.updates + polls, {
      timeout: 20_000 + polls * 1_500,
    });
    const later = await shown(page);
    expect(later.charts.reads['reads/s']).not.toBe(first.charts.reads['reads/s']);
    expect(drawn(later.charts.reads['reads/s'])).toBeGreaterThan(drawn(first.charts.reads['reads/s']));
    // L1 reads are timed one in 64: by now some intervals have L1 samples.
    expect(drawn(later.charts.latency['L1 p50'])).toBeGreaterThanOrEqual(1);
    expect(later.totals).not.toBe(first.totals);
    expect([later.reads, later.hitRate, later.loads, later.l2p99]).not.toEqual([
      first.reads,
      first.hitRate,
      first.loads,
      first.l2p99,
    ]);

    const full = await page.screenshot({ fullPage: true });
    expect(decodePng(full).width).toBe(1280);
    if (updateScreenshot) await writeFile(new URL('../../docs/dashboard.png', import.meta.url), full);

    // The screenshot shows the series: the colours of the lines are there in each chart.
    const colors = { blue: '#2f7ef7', purple: '#9b51e0', green: '#1a9c5b' };
    const reads = decodePng(await page.locator('#chart-reads').screenshot());
    expect(countColor(reads, colors.blue, plotArea(reads))).toBeGreaterThan(60);
    const loads = decodePng(await page.locator('#chart-loads').screenshot());
    expect(countColor(loads, colors.purple, plotArea(loads))).toBeGreaterThan(60);
    const latency = decodePng(await page.locator('#chart-latency').screenshot());
    expect(countColor(latency, colors.green, plotArea(latency))).toBeGreaterThan(60);
    expect(countColor(latency, colors.blue, plotArea(latency))).toBeGreaterThan(60);
    const hitRate = decodePng(await page.locator('#chart-hit-rate').screenshot());
    expect(countColor(hitRate, colors.blue, plotArea(hitRate))).toBeGreaterThan(60);
    // The other cache, through the selector.
    await page.selectOption('#cache', 'sessions');
    await page.waitForFunction(() => !(document.getElementById('totals')?.textContent ?? '').includes('products'), null, {
      timeout: 5_000,
    });
    expect(problems).toEqual([]);
    expect(load.operations()).toBeGreaterThan(100);
  }, 120_000);
});
