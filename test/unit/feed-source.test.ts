import { mkdtempSync, readFileSync, writeFileSync, utimesSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FeedSpec } from '../../connectors/feed/config.js';
import { describeFeedReport, FeedSource, type FeedBatch } from '../../connectors/feed/source.js';
import type { RememberedRow } from '../../connectors/feed/snapshot-diff.js';
import { parseSupplier } from '../../connectors/registry/loader.js';
import { decodeDebeziumJson } from '../../pipelines/normalize/debezium.js';
import { toDebeziumJson } from '../../connectors/debezium/envelope.js';
import { createLogger } from '../../pipelines/core/logger.js';

const log = createLogger('test', 'silent');

/** A feed source on a fresh folder; `rows` is what its last applied file left. */
function feedOn(rows = new Map<string, RememberedRow>(), extra: Partial<ReturnType<typeof FeedSpec.parse>> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'feed-'));
  const feed = FeedSpec.parse({ path: dir, checkEveryMs: 100_000, ...extra });
  const batches: FeedBatch[] = [];
  const src = new FeedSource({ supplierId: 'v', topicPrefix: 'valley', table: 'feed.stock', key: ['sku', 'store'], feed, loadRows: async () => rows }, log);
  return { dir, batches, src, start: (from: Parameters<FeedSource['start']>[1]) => src.start(async (b) => void batches.push(b), from) };
}

const settle = () => new Promise((r) => setTimeout(r, 100));

describe('file feed source', () => {
  it('hands over the first file whole as a snapshot, in the feed format the normalizer reads', async () => {
    const f = feedOn();
    writeFileSync(join(f.dir, 'a.csv'), 'sku,store,bottles\nW-1,s1,12\nW-2,s2,"1,5"\n');
    await f.start({});
    await settle();
    await f.src.stop();
    expect(f.batches).toHaveLength(1);
    const b = f.batches[0]!;
    expect(b.snapshotComplete).toBe(true);
    expect(b.delta!.upserts.map((u) => u.key)).toEqual(['["W-1","s1"]', '["W-2","s2"]']);
    expect(b.report).toMatchObject({ file: 'a.csv', rows: 2, upserts: 2, deletes: 0, rejected: 0 });
    // Through the Debezium JSON capture publishes, back through the normalizer's decoder.
    const { key, value } = toDebeziumJson(b.changes[0]!);
    const e = decodeDebeziumJson(key === null ? null : Buffer.from(key), Buffer.from(value))!;
    expect(e).toMatchObject({ op: 'r', table: 'feed.stock', key: { sku: 'W-1', store: 's1' }, after: { sku: 'W-1', store: 's1', bottles: '12' } });
    expect(e.sourceVersion).toBe(b.changes[0]!.event().sourceVersion);
    expect(Number.isSafeInteger(e.sourceTsMs)).toBe(true);
  });

  it('hands over only what changed since the rows the last file left; a later file gets a higher version', async () => {
    const f = feedOn();
    writeFileSync(join(f.dir, 'a.csv'), 'sku,store,bottles\nW-1,s1,12\nW-2,s2,3\nW-3,s1,4\n');
    await f.start({});
    await settle();
    writeFileSync(join(f.dir, 'b.csv'), 'store,bottles,sku\ns1,12,W-1\ns2,5,W-2\ns3,1,W-9\n');
    utimesSync(join(f.dir, 'b.csv'), new Date(), new Date(Date.now() + 5_000));
    await (f.src as unknown as { check(h: unknown): Promise<void> }).check(async (b: FeedBatch) => void f.batches.push(b));
    await f.src.stop();
    const second = f.batches[1]!;
    expect(second.snapshot).toBe(false);
    expect(second.changes.map((c) => [c.spec.op, c.spec.after?.sku ?? c.spec.before?.sku])).toEqual([['u', 'W-2'], ['c', 'W-9'], ['d', 'W-3']]);
    expect(second.report).toMatchObject({ upserts: 2, deletes: 1, unchanged: 1 });
    expect(second.changes[0]!.event().sourceVersion > f.batches[0]!.changes[0]!.event().sourceVersion).toBe(true);
  });

  it('keeps a row whose line is garbled (cut short, a stray quote) as last applied, and still deletes the rows a file dropped', async () => {
    const rows = new Map<string, RememberedRow>(['W-1', 'W-2', 'W-3', 'W-4', 'W-5', 'W-6', 'W-7', 'W-8'].map((s) => [`["${s}","s1"]`, { hash: 'h', version: 1 }]));
    const f = feedOn(rows);
    // W-2 cut short, W-3 with a stray quote after its key, W-4 dropped, a shifted line naming no row.
    writeFileSync(join(f.dir, 'a.csv'), 'sku,store,bottles\nW-1,s1,12\nW-2,s1\nW-3,s1,"7\nW,X-4,s1,3\nW-5,s1,9\nW-6,s1,1\nW-7,s1,1\nW-8,s1,1\n');
    await f.start({ snapshotDone: true, position: { seq: 1, rows: 8 } });
    await settle();
    await f.src.stop();
    const b = f.batches[0]!;
    expect(b.rejected.map((r) => [r.reason, r.line])).toEqual([['malformed_line', 3], ['malformed_line', 4], ['malformed_line', 5]]);
    expect(b.changes.filter((c) => c.spec.op === 'd').map((c) => c.spec.before?.sku)).toEqual(['W-4']);
    expect(b.delta!.deletes.map((d) => d.key)).toEqual(['["W-4","s1"]']);
    expect(b.report).toMatchObject({ rows: 5, deletes: 1, rejected: 3, kept: 2 });
    expect(describeFeedReport(b.report!)).toBe('last file a.csv: 5 rows, 5 new or changed, 1 deleted, 0 unchanged, 3 dead-lettered; 2 kept as last applied (their lines were refused)');
  });

  it('skips a file already applied, and holds back one that would delete most of the stock', async () => {
    const applied = feedOn(new Map([['["W-1","s1"]', { hash: 'x', version: 1 }], ['["W-2","s1"]', { hash: 'y', version: 1 }], ['["W-3","s1"]', { hash: 'z', version: 1 }]]));
    writeFileSync(join(applied.dir, 'a.csv'), 'sku,store,bottles\nW-1,s1,1\n');
    await applied.start({ snapshotDone: true, position: { seq: 1, rows: 3 } });
    await settle();
    await applied.src.stop();
    expect(applied.batches).toHaveLength(1);
    expect(applied.batches[0]!.changes).toEqual([]);
    expect(applied.batches[0]!.report?.held).toMatch(/1 rows, fewer than 50 % of the 3/);
    expect(applied.batches[0]!.delta).toBeUndefined();
  });

  it('refuses a header without the key columns, holding the file back', async () => {
    const f = feedOn(new Map([['["W-1","s1"]', { hash: 'x', version: 1 }]]));
    writeFileSync(join(f.dir, 'a.csv'), 'sku;depot;bottles\nW-1;s1;1\n');
    await f.start({ snapshotDone: true, position: { seq: 1, rows: 1 } });
    await settle();
    await f.src.stop();
    expect(f.batches[0]!.report?.held).toBe('the header has no key column "store" (header: sku, depot, bottles)');
  });
});

describe('spreadsheet feeds', () => {
  const fixture = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../fixtures/feeds/stock.xlsx'));

  it('reads an .xlsx sheet by name: numbers as stored (never through a float), a row without its key refused with its row number', async () => {
    const f = feedOn(new Map(), { pattern: '*.xlsx', sheet: 'Stock' });
    writeFileSync(join(f.dir, 'stock.xlsx'), fixture);
    await f.start({});
    await settle();
    await f.src.stop();
    const b = f.batches[0]!;
    expect(b.changes.map((c) => c.spec.after)).toEqual([{ sku: 'W-1', store: 's1', bottles: '12', note: null }, { sku: 'W-2', store: 's2', bottles: '0.1', note: 'magnum, 1.5 l' }]);
    expect(b.rejected).toEqual([expect.objectContaining({ reason: 'missing_key', line: 5, file: 'stock.xlsx' })]);
  });

  it('on a schedule, checks at its times (and once at start) instead of every checkEveryMs', async () => {
    // Every second: a file dropped after the start is picked up at the next second.
    const often = feedOn(undefined, { schedule: '* * * * * *', checkEveryMs: 3_600_000 });
    writeFileSync(join(often.dir, 'a.csv'), 'sku,store,bottles\nW-1,s1,1\n');
    await often.start({});
    await settle();
    expect(often.batches.map((b) => b.report?.file)).toEqual(['a.csv']);
    writeFileSync(join(often.dir, 'b.csv'), 'sku,store,bottles\nW-1,s1,2\n');
    const t = Date.now();
    while (often.batches.length < 2 && Date.now() - t < 5_000) await settle();
    await often.src.stop();
    expect(often.batches.map((b) => b.report?.file)).toEqual(['a.csv', 'b.csv']);
    // Once a year, on 1 January: the file present at start is applied, a later one waits for the schedule.
    const yearly = feedOn(undefined, { schedule: '0 0 1 1 *', timezone: 'Europe/Paris', checkEveryMs: 100 });
    writeFileSync(join(yearly.dir, 'a.csv'), 'sku,store,bottles\nW-1,s1,1\n');
    await yearly.start({});
    await settle();
    writeFileSync(join(yearly.dir, 'b.csv'), 'sku,store,bottles\nW-1,s1,2\n');
    await new Promise((r) => setTimeout(r, 1_200));
    await yearly.src.stop();
    expect(yearly.batches.map((b) => b.report?.file)).toEqual(['a.csv']);
  });

  it('holds back a workbook that cannot be read, or lacks the sheet, naming why', async () => {
    const broken = feedOn(new Map([['["W-1","s1"]', { hash: 'x', version: 1 }]]), { pattern: '*.xlsx' });
    writeFileSync(join(broken.dir, 'stock.xlsx'), Buffer.concat([fixture.subarray(0, 40), Buffer.alloc(100)]));
    await broken.start({ snapshotDone: true, position: { seq: 1, rows: 1 } });
    await settle();
    await broken.src.stop();
    expect(broken.batches[0]!.report?.held).toMatch(/^not a readable spreadsheet: /);
    const noSheet = feedOn(new Map([['["W-1","s1"]', { hash: 'x', version: 1 }]]), { pattern: '*.xlsx', sheet: 'Inventory' });
    writeFileSync(join(noSheet.dir, 'stock.xlsx'), fixture);
    await noSheet.start({ snapshotDone: true, position: { seq: 1, rows: 1 } });
    await settle();
    await noSheet.src.stop();
    expect(noSheet.batches[0]!.report?.held).toMatch(/^not a readable spreadsheet: .*Inventory/);
  });
});

describe('file feed settings', () => {
  const supplier = (feed: string, tables = '[{ name: feed.stock, key: [sku] }]') => `id: v
name: V
source:
  kind: csv
  tables: ${tables}
  feed: ${feed}
mapping: { sku: sku, warehouse: store, quantity: n, regions: { s1: eu } }
`;
  it('names the problems: both path and url, a bad delimiter and a fraction above 1, no key, an address that is not http', () => {
    expect(() => parseSupplier(supplier('{ path: /x, url: "https://e.com/a.csv" }'), 'v.yaml')).toThrow(/v\.yaml: source\.feed\.path: give exactly one of path/);
    expect(() => parseSupplier(supplier('{ path: /x, delimiter: ":", minRowsFraction: 2 }'), 'v.yaml')).toThrow(/source\.feed\.delimiter[\s\S]*source\.feed\.minRowsFraction/);
    expect(() => parseSupplier(supplier('{ path: /x }', '[{ name: feed.stock }]'), 'v.yaml')).toThrow(/source\.tables\[0\]\.key: required for a file feed/);
    expect(() => parseSupplier(supplier('{ url: "ftp://e.com/a" }'), 'v.yaml')).toThrow(/source\.feed\.url: an http:\/\/ or https:\/\/ address/);
    expect(() => parseSupplier(supplier('{ path: /x, schedule: "nightly at two", timezone: Mars/Olympus }'), 'v.yaml')).toThrow(/source\.feed\.schedule: a cron expression[\s\S]*source\.feed\.timezone: an IANA time zone/);
  });

  it('fills the defaults', () => {
    expect(FeedSpec.parse({ path: '/x' })).toMatchObject({ pattern: '*.csv', checkEveryMs: 60_000, decimalComma: false, minRowsFraction: 0.5 });
  });
});

describe('source times', () => {
  it.each([[1732190000123.75, 1732190000123], ['abc', 0], [1e300, 0], [-5, 0]])('ts_ms %s is read as %s whole ms', (ts, want) => {
    const value = JSON.stringify({ op: 'c', source: { connector: 'postgresql', lsn: 1, ts_ms: ts, table: 't', schema: 'public' }, after: { id: 1 } });
    expect(decodeDebeziumJson(Buffer.from('{"id":1}'), Buffer.from(value))!.sourceTsMs).toBe(want);
  });
});
