import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { createDatabase, startLocalPostgres, type LocalPostgres } from '../../infra/local/postgres.js';
import { tempDir } from '../../infra/local/process.js';
import type { Role } from '../../pipelines/api/keys-store.js';
import { startEmbeddedUnderTest, type EmbeddedUnderTest } from '../support/embedded.js';
import { artifactDir, eventually, rid } from '../support/services.js';
import { keysByRole, startTestApi, type TestApi } from './api-support.js';

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const VIEWPORT = { width: 1400, height: 900 };
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/**
 * The dashboard in headless Chromium at 1400×900, fed by the real pipeline: a supplier's private Postgres
 * captured by the embedded runtime (native logical replication) → Postgres and Redis → the change stream →
 * the page. Health comes first (the state line and every supplier within the first viewport), stock is
 * paged, live changes are backfilled on load, a real dead letter shows with its supplier and message, and
 * the supplier's database stopped shows as failing within 30 s. Screenshots are kept in test-artifacts/.
 */
describe('dashboard in a browser', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const shots = artifactDir('dashboard');
  let server: LocalPostgres;
  let supplier: pg.Client;
  let e: EmbeddedUnderTest;
  let api: TestApi;
  let ctx: BrowserContext;
  let page: Page;
  let keys: Record<Role, string>;
  const timings: Record<string, unknown> = {};
  /** Uncaught errors of every tab: the page must have none. */
  const pageErrors: string[] = [];
  const watch = (p: Page) => p.on('pageerror', (err) => pageErrors.push(`${p.url()}: ${err.message}`));

  beforeAll(async () => {
    server = await startLocalPostgres();
    supplier = new pg.Client(await createDatabase(server.url, 'supplier'));
    await supplier.connect();
    supplier.on('error', () => undefined); // the last test stops its server
    // `cases` may be null: such a row is refused (missing_field), a real dead letter.
    await supplier.query('CREATE TABLE public.stock (id int PRIMARY KEY, item_code text NOT NULL, depot text NOT NULL, cases int)');
    await supplier.query(`INSERT INTO public.stock SELECT g, 'wine-' || lpad((g % 160)::text, 3, '0'), 'd' || (1 + g % 3), g % 20 FROM generate_series(1, 400) g`);
    await supplier.query(`INSERT INTO public.stock VALUES (1000, 'live-sku', 'd1', 1)`);
    e = await startEmbeddedUnderTest({ acme: `id: acme
name: Acme
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${server.port}, database: supplier, user: postgres }
  topicPrefix: ${rid('acme')}
  tables: [{ name: public.stock }]
mapping:
  sku: item_code
  warehouse: depot
  quantity: cases
  unit: case6
  regions: { d1: ${R1}, d2: ${R1}, d3: ${R2} }
` }, 'dashboard-test');
    expect(await eventually(async () => (await e.cellar.pool.query("SELECT 1 FROM cellar.regional_stock WHERE sku = 'live-sku'")).rowCount === 1, 60_000)).toBe(true);
    keys = await keysByRole(e.cellar.pool, rid('dash'));
    api = await startTestApi({ pgUrl: e.cellar.url, redisUrl: e.redisUrl, metrics: e.metrics });
    ctx = await chromium.launchPersistentContext(tempDir('chromium'), { executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS, viewport: VIEWPORT });
    page = await ctx.newPage();
    watch(page);
  }, 120_000);

  afterAll(async () => {
    writeFileSync(join(shots, 'timings.json'), JSON.stringify(timings, null, 2));
    await ctx?.close();
    await api?.close();
    await e?.stop();
    await supplier?.end().catch(() => undefined);
    await server?.destroy();
  });

  /** Opens the dashboard in a new tab with `role`'s key and waits for the live stream. */
  const open = async (role: Role): Promise<Page> => {
    const p = await ctx.newPage();
    watch(p);
    await p.goto(`${api.url}/dashboard#key=${keys[role]}`);
    await p.waitForSelector('#status[data-state="live"]');
    return p;
  };

  it('asks for a key, says how to get one, and refuses a wrong one', async () => {
    await page.goto(`${api.url}/dashboard`);
    await page.waitForSelector('#login:not([hidden])');
    expect(await page.textContent('#key-howto')).toContain('cellar keys create --name <you> --role reader');
    await page.fill('#key', 'ck_000000000000_' + 'x'.repeat(43));
    await page.click('#login button[type="submit"]');
    await page.waitForFunction(() => document.querySelector('#login-error')?.textContent?.includes('not valid'));
    await page.screenshot({ path: join(shots, '1-login.png') });
  });

  it('shows health first: the state line, every supplier and the charts within the first 1400×900 viewport', async () => {
    await page.goto(`${api.url}/dashboard#key=${keys.reader}`);
    await page.waitForSelector(`.card[data-region="${R1}"]`);
    expect(page.url()).not.toContain(keys.reader); // the fragment is removed from the address bar
    await page.waitForSelector('#status[data-state="live"]');
    await page.waitForSelector('#suppliers tr.supplier[data-supplier="acme"][data-status="ok"]', { timeout: 30_000 });
    await page.waitForSelector('#pipeline-state[data-state="fresh"]', { timeout: 60_000 });
    expect(await page.textContent('#state-text')).toMatch(/1 of 1 supplier streaming · freshness p99 /);
    const boxes = await page.evaluate(() => {
      const box = (e: Element) => {
        const r = e.getBoundingClientRect();
        return { top: r.top, bottom: r.bottom, left: r.left, right: r.right, height: r.height };
      };
      return {
        scrollY: window.scrollY,
        state: box(document.querySelector('#pipeline-state')!),
        suppliers: [...document.querySelectorAll('#suppliers tr.supplier')].map(box),
        charts: [...document.querySelectorAll('.chart svg')].map(box),
      };
    });
    expect(boxes.scrollY).toBe(0);
    expect(boxes.suppliers).toHaveLength(1);
    for (const b of [boxes.state, ...boxes.suppliers, ...boxes.charts]) {
      expect(b.height, JSON.stringify(b)).toBeGreaterThan(0);
      expect(b.top).toBeGreaterThanOrEqual(0);
      expect(b.bottom, JSON.stringify(boxes)).toBeLessThanOrEqual(VIEWPORT.height);
      expect(b.right).toBeLessThanOrEqual(VIEWPORT.width);
    }
    timings.healthBoxes = boxes;
    // The supplier's row: capture state, last change as an age with the ISO time as its title.
    const row = '#suppliers tr[data-supplier="acme"]';
    expect(await page.textContent(`${row} .capture`)).toBe('streaming (embedded)');
    expect(await page.textContent(`${row} .last-change time`)).toMatch(/^\d+ (s|min) ago$/);
    expect(await page.getAttribute(`${row} .last-change time`, 'title')).toMatch(ISO);
    expect(await page.textContent(`${row} .freshness time`)).toMatch(/^report \d+ s ago$/);
    expect(await page.textContent(`${row} .recon-text`)).toBe('never');
    // Every time shown has an age, with the ISO time as its title.
    const times = await page.$$eval('time[data-ts]:not([data-ts=""])', (ts) => ts.map((t) => ({ text: t.textContent, title: t.getAttribute('title') })));
    expect(times.length).toBeGreaterThan(3);
    for (const t of times) {
      expect(t.text).toMatch(/\d+ (s|min|h|d) ago$/);
      expect(t.title).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    await page.waitForFunction(() => document.querySelectorAll('#chart-throughput polyline').length > 0);
    await page.screenshot({ path: join(shots, '2-health-first.png') });
    await page.screenshot({ path: join(shots, '2-full-page.png'), fullPage: true });
  });

  it('pages a region\'s stock in SKU order (keyset paging) and searches by SKU prefix', async () => {
    await page.selectOption('#region', R1);
    await page.selectOption('#page-size', '50');
    const skus = () => page.$$eval('#stock tbody tr[data-sku]', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.sku!));
    await page.waitForFunction(() => document.querySelectorAll('#stock tbody tr[data-sku]').length === 50 && /^page 1 /.test(document.querySelector('#page-info')?.textContent ?? ''));
    const first = await skus();
    expect([...first].sort()).toEqual(first);
    await page.click('#page-next');
    await page.waitForFunction(() => /^page 2 · SKUs 51–/.test(document.querySelector('#page-info')?.textContent ?? ''));
    const second = await skus();
    expect(second[0]! > first[first.length - 1]!).toBe(true);
    await page.click('#page-prev');
    await page.waitForFunction(() => /^page 1 /.test(document.querySelector('#page-info')?.textContent ?? ''));
    expect(await skus()).toEqual(first);
    await page.fill('#prefix', 'live-');
    await page.waitForFunction(() => document.querySelectorAll('#stock tbody tr[data-sku]').length === 1 && document.querySelector('#stock tbody tr[data-sku="live-sku"] .bottles')?.textContent === '6');
    expect(await page.textContent('#stock tbody tr[data-sku="live-sku"] .size')).toBe('750 ml'); // the mapping's default bottle size
    expect(await page.textContent('#page-info')).toContain('(last page)');
  });

  it('shows a supplier commit on the page within a second, and backfills the live changes on load', async () => {
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
    timings.commitToDomMs = latencies;
    expect(await page.textContent('#stock tbody tr[data-sku="live-sku"] .bottles')).toBe('54');
    await page.waitForFunction(() => document.querySelector('#feed li[data-key]')?.textContent?.includes('live-sku → 54'));
    for (const ms of latencies) expect(ms, `commit → page latencies ${latencies.join(', ')} ms`).toBeLessThan(1000);

    // A tab opened now shows the latest changes at once (the stream's backlog), without a new change.
    const fresh = await open('reader');
    await fresh.waitForFunction(() => document.querySelectorAll('#feed li[data-key]').length > 0, undefined, { timeout: 5_000 });
    const feed = await fresh.$$eval('#feed li[data-key]', (lis) => lis.map((li) => li.textContent ?? ''));
    expect(feed[0]).toContain('live-sku → 54 (v');
    expect(feed.length).toBeGreaterThan(6);
    expect(await fresh.getAttribute('#feed li[data-key] time', 'title')).toMatch(ISO);
    await fresh.screenshot({ path: join(shots, '3-backfilled.png'), fullPage: true });
    await fresh.close();
  });

  it('shows a dead letter with its supplier and message: per supplier for a reader key, listed and replayed with an admin key', async () => {
    await supplier.query('UPDATE public.stock SET cases = NULL WHERE id = 7');
    const row = '#suppliers tr[data-supplier="acme"]';
    await page.waitForFunction((r) => document.querySelector(`${r} .dlq`)?.textContent === '1', row, { timeout: 15_000 });
    // The reader view: the newest pending letters of each supplier, and how to get a key that sees more.
    await page.waitForSelector('#dlq tbody tr td.supplier');
    const letter = await page.$$eval('#dlq tbody tr', (trs) => trs.map((tr) => ({ supplier: tr.querySelector('.supplier')?.textContent, reason: tr.querySelector('.reason')?.textContent, message: tr.querySelector('.message')?.textContent })));
    expect(letter).toEqual([{ supplier: 'acme', reason: 'missing_field', message: expect.stringContaining('cases') }]);
    expect(await page.isVisible('#dlq-hint')).toBe(true);
    expect(await page.textContent('#dlq-hint')).toContain('cellar keys create --name <you> --role operator');
    expect(await page.textContent('#role')).toBe('reader key');
    // The supplier's details: its newest dead-letter messages.
    await page.click(`${row} td.name`);
    await page.waitForSelector('#suppliers tr.detail[data-detail-of="acme"] .letters li');
    expect(await page.textContent('#suppliers tr.detail .letters li')).toContain('missing_field');
    expect(await page.textContent('#suppliers tr.detail .letters li .message')).toContain('cases');
    await page.screenshot({ path: join(shots, '4-dead-letter-reader.png') });

    // An operator key lists them from /v1/ops/dead-letters; replaying needs admin, and the page says so.
    const op = await open('operator');
    await op.waitForSelector('#dlq tbody tr button[data-id]');
    await op.click('#dlq tbody tr button[data-id]');
    await op.waitForFunction(() => /needs admin/.test(document.querySelector('#dlq-result')?.textContent ?? ''));
    expect(await op.isVisible('#dlq-hint')).toBe(true);
    expect(await op.textContent('#dlq-hint')).toContain('--role admin');
    expect(await op.$('#dlq tbody tr button[data-id]')).toBeNull();
    await op.close();

    // An admin key: the letter with supplier, stage, reason and message, and a Replay button that works.
    const admin = await open('admin');
    await admin.waitForSelector('#dlq tbody tr button[data-id]');
    const cells = await admin.$$eval('#dlq tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    expect(cells).toHaveLength(1);
    expect(cells[0]!.slice(1, 4)).toEqual(['acme', 'normalizer', 'missing_field']);
    expect(cells[0]![4]).toContain('cases');
    expect(await admin.isVisible('#dlq-hint')).toBe(false);
    await admin.screenshot({ path: join(shots, '5-dead-letter-admin.png'), fullPage: true });
    await admin.locator('section.split').first().screenshot({ path: join(shots, '5-dead-letters-section.png') });
    await admin.click('#dlq tbody tr button[data-id]');
    // The embedded runtime takes it back and, the row still being null, refuses it again: a new pending letter.
    await admin.waitForFunction(() => /queued 1 for the embedded runtime/.test(document.querySelector('#dlq-result')?.textContent ?? ''));
    await admin.close();
  });

  it('shows the supplier failing within 30 s of its database going down, in the state line and its row', async () => {
    const t0 = Date.now();
    await server.stop();
    await page.waitForSelector('#suppliers tr[data-supplier="acme"][data-status="failing"]', { timeout: 30_000 });
    await page.waitForSelector('#pipeline-state[data-state="failing"]', { timeout: 5_000 });
    const elapsed = Date.now() - t0;
    timings.supplierDownToFailingMs = elapsed;
    expect(elapsed).toBeLessThan(30_000);
    expect(await page.textContent('#state-text')).toMatch(/^acme failing: reader restarting since /);
    expect(await page.textContent('#suppliers tr[data-supplier="acme"] .sup-status')).toBe('failing');
    const bottom = await page.$eval('#suppliers tr[data-supplier="acme"]', (tr) => tr.getBoundingClientRect().bottom);
    expect(bottom).toBeLessThanOrEqual(VIEWPORT.height);
    await page.screenshot({ path: join(shots, '6-supplier-failing.png') });
    expect(pageErrors).toEqual([]);
  });
});
