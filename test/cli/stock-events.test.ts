import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { stockEventId, type StockLevelEvent } from '../../pipelines/events/derive.js';
import { saveEvents } from '../../pipelines/events/log.js';
import { runCellar } from '../support/cli.js';
import { artifactDir, cellarEnv, freshDatabase, rid } from '../support/services.js';

/** `cellar thresholds` and `cellar events list` against a real Cellar database, as an operator runs them. */
describe('cellar thresholds and cellar events', () => {
  let db: { url: string; pool: pg.Pool };
  let env: Record<string, string>;
  const logDir = artifactDir('cli-stock-events');
  const region = rid('r');
  const ev = (sku: string, version: number, type: StockLevelEvent['type'], before: number, after: number): StockLevelEvent =>
    ({ id: stockEventId(region, sku, version, type), type, region, sku, version, before, after, threshold: type === 'low_stock' ? 5 : null, sourceTsMs: Date.UTC(2026, 10, 30, 10, 0, version) });

  beforeAll(async () => {
    db = await freshDatabase();
    env = cellarEnv({ CELLAR_PG_URL: db.url });
  });
  afterAll(async () => {
    await db?.pool.end();
  });

  it('sets, lists and removes thresholds, audited; bad input names the option and changes nothing', async () => {
    const set = await runCellar(['thresholds', 'set', '--region', region, '--sku', 'chateau-*', '--threshold', '12'], env, logDir);
    expect(set.code, set.out).toBe(0);
    expect(set.out).toMatch(/created low-stock threshold 12 for chateau-\* in /);
    expect((await runCellar(['thresholds', 'set', '--sku', 'chateau-*', '--threshold', '7'], env, logDir)).out).toMatch(/every region/);
    const again = await runCellar(['thresholds', 'set', '--region', region, '--sku', 'chateau-*', '--threshold', '20'], env, logDir);
    expect(again.out).toMatch(/updated low-stock threshold 20/);
    const bad = await runCellar(['thresholds', 'set', '--sku', 'x', '--threshold', '-3'], env, logDir);
    expect(bad.code).toBe(2);
    expect(bad.out).toMatch(/--threshold: expected a whole number of bottles above 0/);
    const list = await runCellar(['thresholds', 'list', '--json'], env, logDir);
    expect(list.out.trim().split('\n').map((l) => JSON.parse(l) as { region: string; threshold: number }).map((r) => [r.region, r.threshold])).toEqual([['*', 7], [region, 20]]);
    expect((await runCellar(['thresholds', 'remove', '--region', region, '--sku', 'chateau-*'], env, logDir)).code).toBe(0);
    const gone = await runCellar(['thresholds', 'remove', '--region', region, '--sku', 'chateau-*'], env, logDir);
    expect(gone.code).toBe(2);
    expect(gone.out).toMatch(/no low-stock threshold for region .* and SKU pattern chateau-\*/);
    const audit = await db.pool.query<{ action: string }>("SELECT action FROM cellar.api_audit WHERE action LIKE 'thresholds.%' ORDER BY id");
    expect(audit.rows.map((r) => r.action)).toEqual(['thresholds.set', 'thresholds.set', 'thresholds.set', 'thresholds.remove']);
  }, 120_000);

  it('lists events oldest first, filtered, and continues after the cursor it prints', async () => {
    await saveEvents(db.pool, [ev('a', 1, 'back_in_stock', 0, 9), ev('a', 2, 'low_stock', 9, 4), ev('b', 1, 'back_in_stock', 0, 3)]);
    await saveEvents(db.pool, [ev('a', 3, 'sold_out', 4, 0)]);
    const all = await runCellar(['events', 'list', '--region', region, '--json'], env, logDir);
    expect(all.code, all.out).toBe(0);
    const rows = all.out.trim().split('\n').map((l) => JSON.parse(l) as { sku: string; type: string; cursor: string });
    expect(rows.map((r) => `${r.sku} ${r.type}`)).toEqual(['a back_in_stock', 'a low_stock', 'b back_in_stock', 'a sold_out']);
    const sold = await runCellar(['events', 'list', '--region', region, '--type', 'sold_out', 'low_stock'], env, logDir);
    expect(sold.out).toMatch(/low_stock\s+\S+\s+a\s+v2\s+9 → 4 \(threshold 5\)/);
    expect(sold.out).toMatch(/sold_out\s+\S+\s+a\s+v3\s+4 → 0/);
    expect(sold.out).not.toMatch(/back_in_stock/);
    const page = await runCellar(['events', 'list', '--region', region, '--limit', '2'], env, logDir);
    const next = /continue with --after (\S+)/.exec(page.out)?.[1];
    expect(next, page.out).toBe(rows[1]!.cursor);
    const rest = await runCellar(['events', 'list', '--region', region, '--after', next!, '--json'], env, logDir);
    expect(rest.out.trim().split('\n').map((l) => (JSON.parse(l) as { sku: string }).sku)).toEqual(['b', 'a']);
    const badCursor = await runCellar(['events', 'list', '--after', 'yesterday'], env, logDir);
    expect(badCursor.code).toBe(2);
    expect(badCursor.out).toMatch(/stock event cursor "yesterday": expected <xid>\.<seq>/);
  }, 120_000);
});
