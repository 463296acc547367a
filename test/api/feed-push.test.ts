import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { createApiKey } from '../../pipelines/api/keys-store.js';
import { freshDatabase, rid, services, supplierDir } from '../support/services.js';
import { startTestApi, type TestApi } from './api-support.js';

/**
 * `POST /v1/suppliers/{id}/feed` against a real Postgres: who may push, limits, idempotent retries, and each
 * refused row named by line; what is accepted is queued in `cellar.feed_inbox` for the runtime.
 */
describe('pushing a supplier\'s rows', () => {
  const id = rid('push');
  const other = rid('other');
  let db: { url: string; pool: pg.Pool };
  let api: TestApi;
  const keys: Record<string, string> = {};
  const yaml = (sid: string) => `id: ${sid}
name: ${sid}
source:
  kind: http
  tables: [{ name: push.stock, key: [sku, store] }]
  push: { maxBodyBytes: 4096, maxRows: 20 }
mapping: { sku: sku, warehouse: store, quantity: bottles, unit: bottles, regions: { s1: eu-west } }
`;
  const post = async (key: string | undefined, body: string, opts: { type?: string; mode?: string; idem?: string; supplier?: string } = {}) => {
    const res = await fetch(`${api.url}/v1/suppliers/${opts.supplier ?? id}/feed${opts.mode ? `?mode=${opts.mode}` : ''}`, {
      method: 'POST',
      headers: { 'content-type': opts.type ?? 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}), ...(opts.idem ? { 'idempotency-key': opts.idem } : {}) },
      body,
    });
    return { status: res.status, headers: res.headers, body: (await res.json()) as any };
  };
  const inbox = async () => (await db.pool.query<{ mode: string; rows: unknown[] }>('SELECT mode, rows FROM cellar.feed_inbox WHERE supplier_id = $1 ORDER BY id', [id])).rows;

  beforeAll(async () => {
    db = await freshDatabase();
    api = await startTestApi({ pgUrl: db.url, redisUrl: services().redisUrl, suppliersDir: supplierDir({ [id]: yaml(id), [other]: yaml(other) }) });
    keys.own = (await createApiKey(db.pool, { name: 'own', role: 'supplier', supplierId: id, rateLimitPerS: 0 })).key;
    keys.other = (await createApiKey(db.pool, { name: 'other', role: 'supplier', supplierId: other, rateLimitPerS: 0 })).key;
    keys.reader = (await createApiKey(db.pool, { name: 'reader', role: 'reader', rateLimitPerS: 0 })).key;
    keys.admin = (await createApiKey(db.pool, { name: 'admin', role: 'admin', rateLimitPerS: 0 })).key;
  });
  afterAll(async () => {
    await api?.close();
    await db?.pool.end();
  });

  it('accepts the supplier\'s own rows, naming each refused one by line, and queues the rest once', async () => {
    const body = JSON.stringify([
      { sku: 'W-1', store: 's1', bottles: 12, _version: 5 },
      { sku: 'W-2', store: 's1', bottles: '3', _version: '6' },
      { store: 's1', bottles: 1, _version: 8 },
      { sku: 'W-1', store: 's1', bottles: 99, _version: 9 },
      { sku: 'W-3', store: 's1', _op: 'delete', _version: 7 },
      'not a row',
      { sku: 'W-9', store: 's1', bottles: 1 },
    ]);
    const first = await post(keys.own, body, { idem: 'req-1' });
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ supplier: id, mode: 'changes', rows: 7, accepted: 3, queued: 3 });
    expect(first.body.rejected).toEqual([
      { line: 3, reason: 'missing_key', message: 'key column "sku" is empty or missing', stage: 'source' },
      { line: 4, reason: 'duplicate_key', message: 'key ["W-1","s1"] already on line 1; the first one counts', stage: 'source' },
      { line: 6, reason: 'malformed_line', message: 'a row must be an object of column values', stage: 'source' },
      { line: 7, reason: 'malformed_line', message: '_version missing while other rows of the request have one', stage: 'source' },
    ]);
    // A retry with the same key gets the same answer and queues nothing more.
    const retry = await post(keys.own, body, { idem: 'req-1' });
    expect(retry.status).toBe(202);
    expect(retry.body).toEqual(first.body);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    const queued = await inbox();
    expect(queued).toHaveLength(1);
    expect(queued[0]!.rows).toEqual([
      { line: 1, row: { sku: 'W-1', store: 's1', bottles: '12' }, op: 'upsert', version: 5 },
      { line: 2, row: { sku: 'W-2', store: 's1', bottles: '3' }, op: 'upsert', version: 6 },
      { line: 5, row: { sku: 'W-3', store: 's1' }, op: 'delete', version: 7 },
    ]);
    // Each refused row is a dead letter too, once, named by request and line.
    const letters = await db.pool.query<{ reason: string; source_position: string }>(`SELECT reason, source_position FROM cellar.dead_letters WHERE supplier_id = $1 AND stage = 'source' ORDER BY id`, [id]);
    expect(letters.rows.map((l) => [l.reason, l.source_position.replace(/^request \d+/, 'request N')])).toEqual([
      ['missing_key', 'request N:3'], ['duplicate_key', 'request N:4'], ['malformed_line', 'request N:6'], ['malformed_line', 'request N:7'],
    ]);
    // The same key with another body is refused, not applied.
    expect((await post(keys.own, '[]', { idem: 'req-1' })).status).toBe(422);
  });

  it('names the rows the supplier\'s mapping refuses (they are queued and dead-lettered by the normalizer)', async () => {
    const res = await post(keys.own, JSON.stringify([
      { sku: 'W-20', store: 's1', bottles: 4 },
      { sku: 'W-21', store: 'lyon', bottles: 2 },
      { sku: 'W-22', store: 's1', bottles: 'a dozen' },
      { sku: 'W-23', store: 'lyon', _op: 'delete' },
    ]));
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ rows: 4, accepted: 2, queued: 4 });
    expect(res.body.rejected.map((r: { line: number; reason: string; stage: string }) => [r.line, r.reason, r.stage])).toEqual([[2, 'unknown_warehouse', 'normalizer'], [3, expect.any(String), 'normalizer']]);
    expect(res.body.rejected[0].message).toContain('lyon');
    // Not dead-lettered by the API: the runtime's normalizer will, once, where it can be replayed.
    const letters = await db.pool.query(`SELECT 1 FROM cellar.dead_letters WHERE supplier_id = $1 AND source_position LIKE $2`, [id, `request ${res.body.request}:%`]);
    expect(letters.rowCount).toBe(0);
  });

  it('reads NDJSON and CSV, and a snapshot refuses deletes', async () => {
    const nd = await post(keys.own, '{"sku":"W-4","store":"s1","bottles":1}\n{bad json\n', { type: 'application/x-ndjson' });
    expect(nd.body).toMatchObject({ accepted: 1, rejected: [{ line: 2, reason: 'malformed_line' }] });
    const csv = await post(keys.admin, 'sku,store,bottles,_op\nW-5,s1,2,\nW-6,s1,,delete\n', { type: 'text/csv', mode: 'snapshot' });
    expect(csv.status).toBe(202);
    expect(csv.body).toMatchObject({ mode: 'snapshot', accepted: 1, rejected: [{ line: 3, reason: 'malformed_line', message: '_op delete in a snapshot: rows a snapshot lacks are deleted' }] });
    expect((await inbox()).map((r) => r.mode)).toEqual(['changes', 'changes', 'changes', 'snapshot']);
  });

  it('refuses other suppliers\' keys, readers, unknown suppliers, big bodies, too many rows and other media', async () => {
    const row = JSON.stringify([{ sku: 'W-1', store: 's1', bottles: 1 }]);
    const before = (await inbox()).length;
    expect((await post(keys.other, row)).status).toBe(403);
    expect((await post(keys.other, row)).body.error.message).toContain(`pushes for supplier ${other}, not ${id}`);
    expect((await post(keys.reader, row)).status).toBe(403);
    expect((await post(undefined, row)).status).toBe(401);
    expect((await post(keys.admin, row, { supplier: 'nobody-here' })).status).toBe(404);
    const big = await post(keys.own, JSON.stringify([{ sku: 'x'.repeat(5000), store: 's1', bottles: 1 }]));
    expect(big.status).toBe(413);
    expect(big.body.error.message).toContain('accepts at most 4096');
    const many = await post(keys.own, JSON.stringify(Array.from({ length: 21 }, (_, i) => ({ sku: `W-${i}`, store: 's1', bottles: 1 }))));
    expect(many.status).toBe(413);
    expect(many.body.error.code).toBe('too_many_rows');
    expect((await post(keys.own, row, { type: 'application/xml' })).status).toBe(415);
    expect((await inbox()).length).toBe(before);
  });
});
