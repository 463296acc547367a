import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FeedSpec } from '../connectors/feed/config.js';
import { FeedSource, type FeedBatch } from '../connectors/feed/source.js';
import type { RememberedRow } from '../connectors/feed/snapshot-diff.js';
import { createLogger } from '../pipelines/core/logger.js';
import { repeat, result, rng, type BenchResult } from './harness.js';

/** Rows of the benchmark's feed file (a large supplier's whole stock). */
const ROWS = 200_000;
/** Share of rows each next file changes (quantities), and drops and adds. */
const CHANGED = 0.05;

/**
 * File feeds (`connectors/feed`): rows/s of reading a supplier's whole-stock CSV file into changes, as the
 * runtimes' feed source does it (decode and split the CSV, key and digest each row, compare with the rows the
 * last file left, build the changes of what differs). Two cases: the first file (every row a change) and a
 * next file in which 5 % of the rows changed, 1 % were dropped and 1 % are new (the daily case: the whole
 * file is read, few changes come out). Times the source's own work, from the bytes on disk to the batch
 * handed over; the pipeline after it (normalize, aggregate, commit) is measured by the embedded suite.
 */
export async function feedBenchmarks(): Promise<BenchResult[]> {
  const rand = rng(11);
  const dir = mkdtempSync(join(tmpdir(), 'cellar-bench-feed-'));
  try {
    const rows = Array.from({ length: ROWS }, (_, i) => ({ sku: `wine-${i % 20_000}-${2010 + (i % 13)}`, store: `store-${Math.floor(i / 20_000)}`, bottles: Math.floor(rand() * 500) }));
    const csv = (rs: typeof rows) => ['sku,store,bottles,updated', ...rs.map((r) => `${r.sku},${r.store},${r.bottles},2026-11-30`)].join('\n') + '\n';
    const first = csv(rows);
    const next = rows.map((r) => (rand() < CHANGED ? { ...r, bottles: r.bottles + 1 } : r)).filter(() => rand() >= 0.01);
    for (let i = 0; i < ROWS / 100; i++) next.push({ sku: `new-${i}`, store: 'store-0', bottles: 3 });
    const nextText = csv(next);
    const log = createLogger('bench-feed', 'silent');
    /** One file read by a fresh source that remembers `remembered`; returns rows/s and the batch. */
    const run = async (text: string, remembered: Map<string, RememberedRow>): Promise<{ perS: number; batch: FeedBatch }> => {
      const sub = mkdtempSync(join(dir, 'f-'));
      writeFileSync(join(sub, 'stock.csv'), text);
      const feed = FeedSpec.parse({ path: sub, checkEveryMs: 3_600_000 });
      let batch: FeedBatch | undefined;
      let done!: () => void;
      const handed = new Promise<void>((r) => (done = r));
      const src = new FeedSource({ supplierId: 'bench', topicPrefix: 'bench', table: 'feed.stock', key: ['sku', 'store'], feed, loadRows: async () => new Map(remembered) }, log);
      const t = process.hrtime.bigint();
      await src.start(async (b) => void ((batch = b), done()), { snapshotDone: remembered.size > 0, ...(remembered.size ? { position: { seq: 1, rows: remembered.size } } : {}) });
      await handed;
      const s = Number(process.hrtime.bigint() - t) / 1e9;
      await src.stop();
      rmSync(sub, { recursive: true, force: true });
      return { perS: text.split('\n').length / s, batch: batch! };
    };
    const { batch: firstBatch } = await run(first, new Map());
    const remembered = new Map(firstBatch.delta!.upserts.map((u) => [u.key, { hash: u.hash, version: u.version }]));
    const firstRuns = await repeat(async () => (await run(first, new Map())).perS, 5, 1);
    let nextBatch: FeedBatch | undefined;
    const nextRuns = await repeat(async () => {
      const r = await run(nextText, remembered);
      nextBatch = r.batch;
      return r.perS;
    }, 5, 1);
    const mb = (t: string) => Math.round(Buffer.byteLength(t) / 1e5) / 10;
    return [
      result('feed: first file, every row a change (read, key, compare, build changes)', 'rows/s', firstRuns, { details: { rows: ROWS, fileMB: mb(first), changes: firstBatch.changes.length } }),
      result('feed: next file, 5 % changed, 1 % dropped, 1 % new', 'rows/s', nextRuns, { details: { rows: next.length, fileMB: mb(nextText), changes: nextBatch!.changes.length, report: nextBatch!.report } }),
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
