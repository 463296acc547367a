import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createDatabase, startLocalPostgres } from '../infra/local/postgres.js';
import { CELLAR_ENTRY, CELLAR_NODE_FLAGS } from '../infra/local/cellar-process.js';
import { freePort, spawnManaged, stopChild } from '../infra/local/process.js';
import { startLocalRedis } from '../infra/local/redis.js';
import { createApiKey } from '../pipelines/api/keys-store.js';
import { createPgPool } from '../pipelines/core/pg.js';
import { migrate } from '../pipelines/state/migrate.js';
import type { RegionalStock } from '../schemas/records.js';
import { upsertRegionalStock } from '../sinks/postgres/sink.js';
import { createRedisSnapshotSink } from '../sinks/redis/sink.js';
import { median, result, rng, type BenchResult } from './harness.js';

const REGIONS = ['ap-south', 'eu-west', 'us-east'];
const SKUS = 2_000;
/** Changes per second published into the change stream. */
const RATE = 5_000;
/** One sink write (one stream entry per region it touches) every TICK_MS: 200 writes/s, 600 stream entries/s. */
const TICK_MS = 5;
const WARMUP_S = 5;
const RUN_S = 10;
const RUNS = 3;
/** Sampled every SAMPLE_MS: the version the page shows against when the API had newer ones. */
const SAMPLE_MS = 100;
/** A SKU of the first region that sorts first, so it is on the page's first stock page; every write changes it. */
const COUNTER = 'aaa-bench-counter';
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
}

/** What the in-page probe collected since its last reset. */
interface ProbeData {
  /** Lateness of a 16 ms setTimeout chain: the page's event-loop delay, ms. */
  lateness: number[];
  /** Intervals between animation frames, ms. */
  frames: number[];
  /** Durations of long tasks (> 50 ms), ms. */
  longTasks: number[];
}

/**
 * Installed before the page's own scripts (as text, so no transpiler helper leaks into the page): a
 * setTimeout chain whose lateness is the main thread's event-loop delay, the interval of every animation
 * frame, and long tasks. `window.benchProbe` holds them; `reset()` starts a new window.
 */
const PROBE = `(() => {
  const p = { lateness: [], frames: [], longTasks: [], reset() { this.lateness = []; this.frames = []; this.longTasks = []; } };
  window.benchProbe = p;
  const every = 16;
  let expected = performance.now() + every;
  const tick = () => {
    const now = performance.now();
    p.lateness.push(Math.max(0, now - expected));
    expected = now + every;
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
  let last = 0;
  const frame = (t) => {
    if (last) p.frames.push(t - last);
    last = t;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  try {
    new PerformanceObserver((l) => { for (const e of l.getEntries()) p.longTasks.push(e.duration); }).observe({ type: 'longtask' });
  } catch {}
})();`;

/** The API as its own process: compiled code when this bench runs from dist/, else the sources through tsx. */
function spawnApi(env: Record<string, string>): ChildProcess {
  return spawnManaged(process.execPath, [...CELLAR_NODE_FLAGS, ...CELLAR_ENTRY, 'run', 'api'], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
}

/**
 * The dashboard under load: the read API in its own process over a private Postgres and Redis (3 regions ×
 * 2,000 SKUs), the page in headless Chromium at 1400×900 (first region, first page of 100 SKUs, live changes
 * and health on), and 5,000 changes/s published into the API's change stream through the Redis snapshot
 * sink (the path the pipeline's sinks take), one write every 5 ms. After a warm-up, 3 windows of 10 s:
 * the page's event-loop delay p99 (a 16 ms setTimeout chain inside the page), and how far its displayed
 * numbers trail the API: every write changes one SKU shown on the page, and each 100 ms the version the page
 * shows is compared with when the API had the next one (0 when it shows the newest).
 */
export async function dashboardBenchmarks(): Promise<BenchResult[]> {
  if (!existsSync(CHROMIUM)) throw new Error(`the dashboard benchmark drives ${CHROMIUM} (Debian's chromium)`);
  const [pgServer, redis] = await Promise.all([startLocalPostgres({ walLevel: 'replica' }), startLocalRedis()]);
  let api: ChildProcess | undefined;
  let browser: Browser | undefined;
  const sink = createRedisSnapshotSink({ url: redis.url });
  let publishing: Promise<void> | undefined;
  let stop = false;
  try {
    const url = await createDatabase(pgServer.url, 'bench_dashboard');
    const pool = createPgPool(url, { max: 2 });
    await migrate(pool);
    const now = Date.now();
    const rows: RegionalStock[] = REGIONS.flatMap((region) =>
      Array.from({ length: SKUS }, (_, i) => ({ region, sku: `wine-${String(i).padStart(5, '0')}`, bottleSizeMl: 750, bottles: (i * 7) % 500, contributors: 3, version: 1, sourceTsMs: now, updatedTsMs: now })),
    );
    rows.push({ region: REGIONS[0]!, sku: COUNTER, bottleSizeMl: 750, bottles: 0, contributors: 1, version: 1, sourceTsMs: now, updatedTsMs: now });
    await upsertRegionalStock(pool, rows);
    await sink.connect();
    await sink.writeBatch([]);
    await sink.writeBatch(rows);
    const key = (await createApiKey(pool, { name: 'bench-dashboard', role: 'reader', rateLimitPerS: 0 })).key;
    await pool.end();

    const port = await freePort();
    api = spawnApi({ CELLAR_PG_URL: url, CELLAR_REDIS_URL: redis.url, CELLAR_API_PORT: String(port), CELLAR_API_HOST: '127.0.0.1', CELLAR_API_WORKERS: '1', CELLAR_LOG_LEVEL: 'warn' });
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      if (await fetch(`${base}/readyz`).then((r) => r.ok, () => false)) break;
      if (i > 150 || api.exitCode !== null) throw new Error('the API process did not become ready');
      await sleep(200);
    }

    // The publisher: RATE changes/s in one sink write per TICK_MS; each write moves COUNTER one version on.
    const versions = new Map<string, number>();
    const publishedAt: number[] = [];
    let counter = 1;
    let sent = 0;
    const next = rng(42);
    const t0 = Date.now();
    publishing = (async () => {
      for (let tick = 1; !stop; tick++) {
        const wait = t0 + tick * TICK_MS - Date.now();
        if (wait > 0) await sleep(wait);
        const due = Math.floor(((Date.now() - t0) / 1000) * RATE) - sent;
        if (due <= 0) continue;
        const n = Math.min(due, 2_000);
        const at = Date.now();
        const batch: RegionalStock[] = [{ region: REGIONS[0]!, sku: COUNTER, bottleSizeMl: 750, bottles: ++counter, contributors: 1, version: counter, sourceTsMs: at, updatedTsMs: at }];
        for (let i = 1; i < n; i++) {
          const region = REGIONS[Math.floor(next() * REGIONS.length)]!;
          const sku = `wine-${String(Math.floor(next() * SKUS)).padStart(5, '0')}`;
          const k = `${region}|${sku}`;
          const v = (versions.get(k) ?? 1) + 1;
          versions.set(k, v);
          batch.push({ region, sku, bottleSizeMl: 750, bottles: Math.floor(next() * 500), contributors: 3, version: v, sourceTsMs: at, updatedTsMs: at });
        }
        await sink.writeBatch(batch);
        publishedAt[counter] = Date.now(); // in the stream (the API reads it from there) from now on
        sent += n;
      }
    })();

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    const page: Page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.addInitScript(PROBE);
    await page.goto(`${base}/dashboard#key=${key}`);
    await page.waitForSelector('#status[data-state="live"]');
    await page.waitForSelector(`#stock tbody tr[data-sku="${COUNTER}"]`);
    await sleep(WARMUP_S * 1000);
    // Chromium's own account of the page's main thread (seconds spent in tasks, script, style, layout).
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    const mainThread = async () => {
      const { metrics } = (await cdp.send('Performance.getMetrics')) as { metrics: Array<{ name: string; value: number }> };
      const m = new Map(metrics.map((x) => [x.name, x.value]));
      return { task: m.get('TaskDuration') ?? 0, script: m.get('ScriptDuration') ?? 0, style: m.get('RecalcStyleDuration') ?? 0, layout: m.get('LayoutDuration') ?? 0 };
    };

    const delayP99: number[] = [];
    const behindP99: number[] = [];
    const windows: Array<Record<string, unknown>> = [];
    for (let run = 0; run < RUNS; run++) {
      await page.evaluate(() => (window as unknown as { benchProbe: { reset(): void } }).benchProbe.reset());
      const sentBefore = sent;
      const busyBefore = await mainThread();
      const start = Date.now();
      const behind: number[] = [];
      const versionsBehind: number[] = [];
      while (Date.now() - start < RUN_S * 1000) {
        const shown = await page.evaluate((sku) => ({ v: Number(document.querySelector(`#stock tbody tr[data-sku="${sku}"] .version`)?.textContent), at: Date.now() }), COUNTER);
        // How long the API has had a newer version than the one shown (0 when the page shows the newest).
        const newer = publishedAt[shown.v + 1];
        behind.push(newer !== undefined && newer < shown.at ? shown.at - newer : 0);
        const fromApi = (await (await fetch(`${base}/v1/stock/${REGIONS[0]}/${COUNTER}`, { headers: { authorization: `Bearer ${key}` } })).json()) as { version: number };
        versionsBehind.push(Math.max(0, fromApi.version - shown.v));
        await sleep(SAMPLE_MS);
      }
      const seconds = (Date.now() - start) / 1000;
      const busyAfter = await mainThread();
      const share = (k: keyof typeof busyAfter) => Math.round(((busyAfter[k] - busyBefore[k]) / seconds) * 1000) / 10;
      const probe = await page.evaluate(() => {
        const p = (window as unknown as { benchProbe: ProbeData }).benchProbe;
        return { lateness: p.lateness, frames: p.frames, longTasks: p.longTasks };
      });
      const pageRate = await page.textContent('#feed-rate');
      delayP99.push(percentile(probe.lateness, 99));
      behindP99.push(percentile(behind, 99));
      windows.push({
        publishedChangesPerS: Math.round((sent - sentBefore) / seconds),
        pageStreamRate: pageRate,
        eventLoopDelayMs: { p50: percentile(probe.lateness, 50), p99: percentile(probe.lateness, 99), max: Math.max(...probe.lateness), samples: probe.lateness.length },
        frameIntervalMs: { p50: percentile(probe.frames, 50), p99: percentile(probe.frames, 99), max: Math.max(...probe.frames), frames: probe.frames.length, fps: Math.round(probe.frames.length / seconds) },
        mainThreadBusyPercent: { tasks: share('task'), script: share('script'), style: share('style'), layout: share('layout') },
        longTasks: { count: probe.longTasks.length, totalMs: Math.round(probe.longTasks.reduce((a, b) => a + b, 0)) },
        behindMs: { p50: percentile(behind, 50), p99: percentile(behind, 99), max: Math.max(...behind), samples: behind.length },
        versionsBehindApi: { p50: percentile(versionsBehind, 50), p99: percentile(versionsBehind, 99), max: Math.max(...versionsBehind) },
      });
    }
    const details = {
      changesPerS: RATE,
      sinkWritesPerS: 1000 / TICK_MS,
      streamEntriesPerS: (1000 / TICK_MS) * REGIONS.length,
      regions: REGIONS.length,
      skusPerRegion: SKUS,
      viewport: '1400x900',
      browser: (await browser.version()) || 'chromium',
      windowSeconds: RUN_S,
      windows,
    };
    return [
      result('dashboard event-loop delay p99 at 5k changes/s', 'ms', delayP99, { target: 100, higherIsBetter: false, details }),
      result('dashboard display behind the API p99 at 5k changes/s', 'ms', behindP99, { target: 1000, higherIsBetter: false, details: { medianOfWindows: median(behindP99) } }),
    ];
  } finally {
    stop = true;
    await publishing?.catch(() => undefined);
    await browser?.close().catch(() => undefined);
    if (api) await stopChild(api, 'SIGTERM');
    await sink.close().catch(() => undefined);
    await redis.destroy();
    await pgServer.destroy();
  }
}
