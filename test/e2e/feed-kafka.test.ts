import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type { ChildProcess } from 'node:child_process';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { stopChild, tempDir } from '../../infra/local/process.js';
import { PipelineUnderTest } from '../support/pipeline.js';
import { eventDisagreements, historyDisagreements } from '../support/stores.js';
import { artifactDir, eventually, freshDatabase, rid } from '../support/services.js';
import { csvOf, dropFile, expectFeedReconciled, feedDetail, garbledFile, feedLetters, feedRegions, feedSupplierYaml, feedTruth, randomLines, type FeedLine } from '../support/feeds.js';

/**
 * A file-feed supplier in the Kafka runtime: `cellar run capture` reads its folder and publishes each file's
 * changes to the raw topic in the feed format, for the four workers; bad lines are dead-lettered by capture;
 * a truncated file is held back; kill -9 of capture while a large file is published, restart, exact.
 */
describe('file feeds in the Kafka runtime', () => {
  const R1 = rid('kw');
  const R2 = rid('ke');
  const regions = feedRegions(R1, R2);
  const supplierId = rid('kfeed');
  const rawPrefix = rid('kp');
  let cellar: { url: string; pool: pg.Pool };
  let p: PipelineUnderTest;
  let capture: ChildProcess | undefined;
  let feedDir: string;
  const logDir = artifactDir('feed-kafka');
  let runs = 0;
  let current: FeedLine[] = [];
  const startCapture = () => (capture = spawnCellar(['run', 'capture', '--supplier', supplierId], p.env, join(logDir, `capture-${++runs}.log`)));
  const converged = () => p.converged(feedTruth(current, regions), [R1, R2]);

  beforeAll(async () => {
    cellar = await freshDatabase();
    feedDir = tempDir('kfeed');
    mkdirSync(feedDir, { recursive: true });
    p = new PipelineUnderTest(cellar.url, cellar.pool, { [supplierId]: feedSupplierYaml(supplierId, feedDir, rawPrefix, regions) }, logDir);
    for (const role of ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis']) p.start(role);
  }, 60_000);

  afterAll(async () => {
    if (capture) await stopChild(capture, 'SIGTERM', 15_000);
    await p?.stop();
    await cellar?.pool.end();
  });

  it('applies successive files through the raw topic; bad lines are dead-lettered with file and line', async () => {
    current = randomLines(60, 20);
    dropFile(feedDir, 'stock-1.csv', csvOf(current, ['"fsku-x,s1,5', ',s2,7']));
    startCapture();
    expect(await converged()).toEqual([]);
    expect(await feedLetters(cellar.pool, supplierId)).toEqual([
      { reason: 'malformed_line', position: 'stock-1.csv:62' },
      { reason: 'missing_key', position: 'stock-1.csv:63' },
    ]);
    const kept = current.slice(0, 40).map((l, i) => (i % 3 === 0 ? { ...l, bottles: l.bottles + 7 } : l));
    current = [...kept, ...randomLines(15, 20, 'gsku')];
    dropFile(feedDir, 'stock-2.csv', csvOf(current));
    expect(await converged()).toEqual([]);

    // Two rows' lines garbled, a third row dropped: the garbled rows keep their last applied values.
    const garbled = garbledFile(current);
    current = garbled.next;
    dropFile(feedDir, 'stock-2b.csv', garbled.text);
    expect(await converged()).toEqual([]);
    expect((await feedLetters(cellar.pool, supplierId)).slice(2)).toEqual(garbled.lines.map((n) => ({ reason: 'malformed_line', position: `stock-2b.csv:${n}` })));
    expect(await eventually(async () => /last file stock-2b\.csv: 52 rows, .*1 deleted.*; 2 kept as last applied/.test((await feedDetail(cellar.pool, supplierId)) ?? ''), 10_000), `status: ${await feedDetail(cellar.pool, supplierId)}`).toBe(true);
  }, 180_000);

  it('holds back a truncated file, then applies the next full one', async () => {
    dropFile(feedDir, 'stock-3.csv', '');
    expect(await eventually(async () => /held back/.test((await feedDetail(cellar.pool, supplierId)) ?? ''), 20_000), `status: ${await feedDetail(cellar.pool, supplierId)}`).toBe(true);
    current = current.map((l) => ({ ...l, bottles: l.bottles + 2 }));
    dropFile(feedDir, 'stock-4.csv', csvOf(current));
    expect(await converged()).toEqual([]);
  }, 180_000);

  // Files here stay at a few thousand rows: the test broker keeps only about 5 MB per partition, and a file's
  // changes (about 1.5 KB each as Debezium JSON with schemas) published twice around a kill must fit unconsumed.
  it('stays exact when capture is killed with SIGKILL while a large file is published', async () => {
    current = randomLines(2_500, 1_000, 'big');
    dropFile(feedDir, 'big.csv', csvOf(current));
    await new Promise((r) => setTimeout(r, 300 + Math.random() * 800));
    await stopChild(capture!, 'SIGKILL');
    startCapture();
    expect(await converged()).toEqual([]);
    // The aggregator writes the history with its contributions, just after the totals it produced.
    let history: string[] = [];
    await eventually(async () => (history = [...await historyDisagreements(cellar.pool, [R1, R2]), ...await eventDisagreements(cellar.pool, [R1, R2])]).length === 0, 30_000);
    expect(history).toEqual([]);
  }, 300_000);

  it('a file that reverts one published but not checkpointed (capture killed between the two) still wins', async () => {
    // Capture publishes a file's changes, then checkpoints it: killed in between, the next file must undo
    // what was published (changed rows changed back, added rows gone, deleted rows back).
    const trials = Number(process.env.CELLAR_FAULT_TRIALS ?? 3);
    for (let k = 0; k < trials; k++) {
      const base = current;
      const changed = [...base.slice(0, 1_500).map((l) => ({ ...l, bottles: l.bottles + 100 })), ...randomLines(500, 200, `added${k}`)];
      dropFile(feedDir, `revert-${k}-a.csv`, csvOf(changed));
      // Its keys are marked pending just before publishing: kill within a publication that has begun.
      const publishing = await eventually(async () => (await cellar.pool.query(`SELECT 1 FROM cellar.feed_rows WHERE source_id = $1 AND row_hash = 'pending' AND row_key LIKE $2 LIMIT 1`, [`capture:${supplierId}`, `["added${k}-%`])).rowCount! > 0, 60_000, 20);
      expect(publishing, `capture never began publishing revert-${k}-a.csv`).toBe(true);
      await new Promise((r) => setTimeout(r, Math.random() * 300));
      await stopChild(capture!, 'SIGKILL');
      current = base;
      dropFile(feedDir, `revert-${k}-b.csv`, csvOf(current));
      startCapture();
      expect(await converged(), `trial ${k + 1}`).toEqual([]);
      // The revert file equals the last applied one: it is applied all the same (the stores may not yet show
      // what was published before the kill), and leaves no key pending.
      const settled = await eventually(async () => (await cellar.pool.query(`SELECT 1 FROM cellar.feed_rows WHERE source_id = $1 AND row_hash = 'pending' LIMIT 1`, [`capture:${supplierId}`])).rowCount === 0, 60_000, 100);
      expect(settled, `trial ${k + 1}: keys still pending after revert-${k}-b.csv (capture-${runs}.log)`).toBe(true);
      expect(await converged(), `trial ${k + 1}`).toEqual([]);
    }
  }, 600_000);

  it('reconciliation compares the totals with the rows capture last published, and repairs drift through the raw topic', async () => {
    await expectFeedReconciled(cellar.pool, p.env, logDir, supplierId, current.length, converged, () => p.consumed([`${rawPrefix}.feed.stock`]));
  }, 180_000);
});
