import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { createDatabase } from '../../infra/local/postgres.js';
import { tempDir } from '../../infra/local/process.js';
import { startLocalRedis, type LocalRedis } from '../../infra/local/redis.js';
import { loadRuntimeConfig } from '../../pipelines/core/config.js';
import { CellarMetrics } from '../../pipelines/core/metrics.js';
import { startEmbedded, type EmbeddedRuntime } from '../../pipelines/runtime/embedded-runtime.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { createApiKey } from '../../pipelines/api/keys-store.js';
import { artifactDir, cellarEnv, eventually, rid, services, supplierDir } from '../support/services.js';
import { memoryLogger, startTestApi, type TestApi } from './api-support.js';

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * The dashboard in headless Chromium, fed by the real pipeline: a supplier's Postgres rows captured by the
 * embedded runtime (native logical replication) → Postgres and Redis → the change stream → the page's
 * live connection. A supplier commit must show on the page within a second; screenshots are kept.
 */
describe('dashboard in a browser', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const shots = artifactDir('dashboard');
  let supplier: pg.Client;
  let redis: LocalRedis;
  let rt: EmbeddedRuntime;
  let api: TestApi;
  let ctx: BrowserContext;
  let page: Page;
  let key: string;
  const metrics = new CellarMetrics(false);

  beforeAll(async () => {
    const supplierUrl = await createDatabase(services().pgUrl, rid('supplier_'));
    const cellarUrl = await createDatabase(services().pgUrl, rid('cellar_'));
    supplier = new pg.Client(supplierUrl);
    await supplier.connect();
    await supplier.query('CREATE TABLE public.stock (id int PRIMARY KEY, item_code text NOT NULL, depot text NOT NULL, cases int NOT NULL)');
    await supplier.query(`INSERT INTO public.stock SELECT g, 'wine-' || lpad((g % 40)::text, 3, '0'), 'd' || (1 + g % 3), g % 20 FROM generate_series(1, 400) g`);
    await supplier.query(`INSERT INTO public.stock VALUES (1000, 'live-sku', 'd1', 1)`);
    redis = await startLocalRedis();
    const u = new URL(supplierUrl);
    const dir = supplierDir({ acme: `id: acme
name: Acme
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${u.port}, database: ${u.pathname.slice(1)}, user: postgres }
  topicPrefix: ${rid('acme')}
  tables: [{ name: public.stock }]
mapping:
  sku: item_code
  warehouse: depot
  quantity: cases
  unit: case6
  regions: { d1: ${R1}, d2: ${R1}, d3: ${R2} }
` });
    const cfg = loadRuntimeConfig(cellarEnv({ CELLAR_PG_URL: cellarUrl, CELLAR_REDIS_URL: redis.url, CELLAR_SUPPLIERS_DIR: dir }));
    rt = await startEmbedded(cfg, memoryLogger().log, metrics);
    const pool = createPgPool(cellarUrl, { max: 1 });
    key = (await createApiKey(pool, { name: 'dashboard', role: 'reader' })).key;
    expect(await eventually(async () => (await pool.query("SELECT 1 FROM cellar.regional_stock WHERE sku = 'live-sku'")).rowCount === 1, 60_000)).toBe(true);
    await pool.end();
    api = await startTestApi({ pgUrl: cellarUrl, redisUrl: redis.url, metrics });
    ctx = await chromium.launchPersistentContext(tempDir('chromium'), { executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS, viewport: { width: 1400, height: 1000 } });
    page = await ctx.newPage();
  });

  afterAll(async () => {
    await ctx?.close();
    await api?.close();
    await rt?.stop();
    await supplier?.end();
    await redis?.destroy();
  });

  it('asks for a key, then shows regions, stock and pipeline health', async () => {
    await page.goto(`${api.url}/dashboard`);
    await page.waitForSelector('#login:not([hidden])');
    await page.fill('#key', 'ck_000000000000_' + 'x'.repeat(43));
    await page.click('#login button');
    await page.waitForFunction(() => document.querySelector('#login-error')?.textContent?.includes('not valid'));
    await page.screenshot({ path: join(shots, '1-refused-key.png') });

    await page.goto(`${api.url}/dashboard#key=${key}`);
    await page.waitForSelector(`.card[data-region="${R1}"]`);
    expect(page.url()).not.toContain(key); // the fragment is removed from the address bar
    await page.waitForSelector('#status[data-state="live"]');
    await page.selectOption('#region', R1);
    await page.fill('#prefix', 'live-');
    await page.waitForFunction(() => document.querySelectorAll('#stock tbody tr').length === 1 && document.querySelector('#stock tbody tr[data-sku="live-sku"] .bottles')?.textContent === '6');
    expect(await page.textContent('#stock tbody tr[data-sku="live-sku"] .size')).toBe('750 ml'); // the mapping's default bottle size
    await page.waitForFunction(() => [...document.querySelectorAll('#stages tbody td')].some((td) => td.textContent === 'embedded'));
    // Per supplier: its capture state, as the embedded runtime reports it.
    await page.waitForFunction(() => document.querySelector('#suppliers tbody tr[data-supplier="acme"] .status')?.textContent === 'ok');
    await page.screenshot({ path: join(shots, '2-dashboard.png'), fullPage: true });
  });

  it('shows a supplier commit on the page within a second', async () => {
    // Timestamps of the cell changing, taken in the page as the DOM changes.
    await page.evaluate(() => {
      const w = window as unknown as { seen: Array<{ text: string; at: number }> };
      w.seen = [];
      const cell = document.querySelector('#stock tbody tr[data-sku="live-sku"] .bottles')!;
      new MutationObserver(() => w.seen.push({ text: cell.textContent ?? '', at: Date.now() })).observe(cell, { childList: true, characterData: true, subtree: true });
    });
    const latencies: number[] = [];
    for (const cases of [3, 7, 2, 11, 5, 9]) {
      const committedAt = Date.now(); // taken before the statement is sent: the measure can only be longer
      await supplier.query('UPDATE public.stock SET cases = $1 WHERE id = 1000', [cases]);
      const text = String(cases * 6);
      await page.waitForFunction((t) => (window as unknown as { seen: Array<{ text: string }> }).seen.some((s) => s.text === t), text, { timeout: 10_000 });
      const seen = await page.evaluate((t) => (window as unknown as { seen: Array<{ text: string; at: number }> }).seen.find((s) => s.text === t)!.at, text);
      latencies.push(seen - committedAt);
    }
    // The pipeline panel picks the changes up from the metrics within a sampling period (2 s).
    await page.waitForFunction(() => /\d+ ms/.test(document.querySelector('#fresh-p99')?.textContent ?? ''), undefined, { timeout: 10_000 });
    await page.screenshot({ path: join(shots, '3-after-changes.png'), fullPage: true });
    writeFileSync(join(shots, 'latencies.json'), JSON.stringify({ commitToDomMs: latencies }, null, 2));
    expect(await page.textContent('#stock tbody tr[data-sku="live-sku"] .bottles')).toBe('54');
    expect(await page.textContent('#stock tbody tr[data-sku="live-sku"] .size')).toBe('750 ml');
    expect(await page.textContent('#feed li[data-key]')).toContain('live-sku → 54');
    for (const ms of latencies) expect(ms, `commit → page latencies ${latencies.join(', ')} ms`).toBeLessThan(1000);
  });
});
