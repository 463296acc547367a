import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type { ChildProcess } from 'node:child_process';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { freePort, stopChild } from '../../infra/local/process.js';
import { createApiKey } from '../../pipelines/api/keys-store.js';
import { migrate } from '../../pipelines/state/migrate.js';
import { PipelineUnderTest } from '../support/pipeline.js';
import { artifactDir, eventually, freshDatabase, rid } from '../support/services.js';
import { feedRegions, feedTruth, randomLines, type FeedLine } from '../support/feeds.js';

/**
 * A pushing supplier in the Kafka runtime: `cellar run api` queues its requests, `cellar run capture`
 * publishes them to the raw topic in the feed format for the four workers; capture killed with SIGKILL and
 * restarted while requests wait; the totals equal what was pushed.
 */
describe('HTTP push in the Kafka runtime', () => {
  const R1 = rid('qw');
  const R2 = rid('qe');
  const regions = feedRegions(R1, R2);
  const supplierId = rid('kpush');
  let cellar: { url: string; pool: pg.Pool };
  let p: PipelineUnderTest;
  let api: ChildProcess | undefined;
  let capture: ChildProcess | undefined;
  let apiUrl = '';
  let key = '';
  const logDir = artifactDir('push-kafka');
  let runs = 0;
  const truth = new Map<string, FeedLine>();
  const startCapture = () => (capture = spawnCellar(['run', 'capture', '--supplier', supplierId], p.env, join(logDir, `capture-${++runs}.log`)));
  const converged = () => p.converged(feedTruth([...truth.values()], regions), [R1, R2]);
  const push = async (rows: Array<Record<string, unknown>>, mode = 'changes') => {
    const idem = rid('idem');
    let status = 0;
    await eventually(async () => {
      const res = await fetch(`${apiUrl}/v1/suppliers/${supplierId}/feed?mode=${mode}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': idem }, body: JSON.stringify(rows) });
      status = res.status;
      return status === 202;
    }, 60_000, 200);
    expect(status).toBe(202);
  };

  beforeAll(async () => {
    cellar = await freshDatabase();
    await migrate(cellar.pool);
    key = (await createApiKey(cellar.pool, { name: 'kpush', role: 'supplier', supplierId, rateLimitPerS: 0 })).key;
    p = new PipelineUnderTest(cellar.url, cellar.pool, { [supplierId]: `id: ${supplierId}
name: ${supplierId}
source:
  kind: http
  topicPrefix: ${rid('kq')}
  tables: [{ name: push.stock, key: [sku, store] }]
  push: { checkEveryMs: 100 }
mapping: { sku: sku, warehouse: store, quantity: bottles, unit: bottles, regions: { ${Object.entries(regions).map(([k, v]) => `${k}: ${v}`).join(', ')} } }
` }, logDir);
    const port = await freePort();
    apiUrl = `http://127.0.0.1:${port}`;
    api = p.start('api', 'api', { CELLAR_API_PORT: String(port) });
    for (const role of ['normalizer', 'aggregator', 'sink-postgres', 'sink-redis']) p.start(role);
    startCapture();
  }, 60_000);

  afterAll(async () => {
    if (capture) await stopChild(capture, 'SIGTERM', 15_000);
    await p?.stop();
    await cellar?.pool.end();
  });

  it('applies pushed deltas and a snapshot through the raw topic, and stays exact across a kill of capture', async () => {
    const lines = randomLines(300, 100, 'q');
    for (const l of lines) truth.set(`${l.sku}|${l.store}`, l);
    await push(lines.map((l) => ({ ...l })));
    expect(await converged()).toEqual([]);
    const gone = lines[0]!;
    await push([{ sku: gone.sku, store: gone.store, _op: 'delete' }, { ...lines[1]!, bottles: 500 }]);
    truth.delete(`${gone.sku}|${gone.store}`);
    truth.set(`${lines[1]!.sku}|${lines[1]!.store}`, { ...lines[1]!, bottles: 500 });
    expect(await converged()).toEqual([]);
    // Capture killed while requests wait: they are published once it is back.
    await stopChild(capture!, 'SIGKILL');
    const more = randomLines(200, 100, 'r');
    for (const l of more) truth.set(`${l.sku}|${l.store}`, l);
    await push(more.map((l) => ({ ...l })));
    startCapture();
    expect(await converged()).toEqual([]);
    // A snapshot of most rows (below half it would be held back as truncated): the rest are deleted.
    const keep = [...truth.values()].slice(0, 400);
    truth.clear();
    for (const l of keep) truth.set(`${l.sku}|${l.store}`, l);
    await push(keep.map((l) => ({ ...l })), 'snapshot');
    expect(await converged()).toEqual([]);
    // Every applied request left the inbox with the checkpoint past it.
    expect(await eventually(async () => (await cellar.pool.query('SELECT count(*)::int AS n FROM cellar.feed_inbox WHERE supplier_id = $1', [supplierId])).rows[0].n === 0, 20_000)).toBe(true);
  }, 300_000);
});
