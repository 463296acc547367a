import { describe, expect, it } from 'vitest';
import { compileMapping } from '../../pipelines/normalize/mapping.js';
import { contributorIdOf, normalizeChange, normalizeTruncate, type Route } from '../../pipelines/normalize/normalize.js';
import type { ChangeEvent, Row } from '../../pipelines/normalize/debezium.js';
import { northSupplier } from '../support/fixtures.js';

const mapping = compileMapping(northSupplier());
let lsn = 1000;
function change(op: ChangeEvent['op'], after: Row | null, before: Row | null = null, key: Row = { id: 1 }): ChangeEvent {
  lsn += 10;
  return { op, before, after, key, source: {}, table: 'public.stock', sourceVersion: String(lsn).padStart(20, '0'), sourceTsMs: 1, position: `lsn=${lsn}` };
}

function run(events: ChangeEvent[]) {
  let route: Route | undefined;
  const out = [];
  for (const e of events) {
    const r = normalizeChange(e, mapping, contributorIdOf('north-cellars', e), route, 5);
    if (r.kind === 'changed') route = r.route;
    out.push(r);
  }
  return { out, route };
}

describe('normalizeChange', () => {
  it('names the contributor by supplier, table and key', () => {
    expect(contributorIdOf('north-cellars', change('c', { id: 1 }, null, { id: 7, line: 2 }))).toBe('north-cellars/public.stock/id=7,line=2');
  });

  it('emits an UPSERT with canonical fields', () => {
    const { out } = run([change('c', { item_code: 'barolo', depot: 'bdx-1', qty: 5 })]);
    expect(out[0]).toMatchObject({
      kind: 'changed',
      observations: [{ op: 'UPSERT', region: 'eu-west', sku: 'barolo', warehouseId: 'bdx-1', bottles: 5, contributorId: 'north-cellars/public.stock/id=1', supplierId: 'north-cellars' }],
    });
  });

  it('moves a row between regions without a before-image: DELETE at the old key, UPSERT at the new', () => {
    const { out } = run([change('c', { item_code: 'barolo', depot: 'bdx-1', qty: 5 }), change('u', { item_code: 'barolo', depot: 'nyc-1', qty: 5 })]);
    const obs = out[1]!.kind === 'changed' ? out[1]!.observations : [];
    expect(obs.map((o) => [o.op, o.region, o.sku, o.bottles])).toEqual([['DELETE', 'eu-west', 'barolo', 0], ['UPSERT', 'us-east', 'barolo', 5]]);
    expect(new Set(obs.map((o) => o.sourceVersion)).size).toBe(1);
  });

  it('moves on SKU change using only the before-image when no route is known', () => {
    const e = change('u', { item_code: 'rioja', depot: 'bdx-1', qty: 5 }, { item_code: 'barolo', depot: 'bdx-1', qty: 5 });
    const r = normalizeChange(e, mapping, 'c1', undefined, 5);
    expect(r.kind === 'changed' && r.observations.map((o) => [o.op, o.sku])).toEqual([['DELETE', 'barolo'], ['UPSERT', 'rioja']]);
  });

  it('deletes at the routed key when the delete carries only the primary key', () => {
    const { out, route } = run([change('c', { item_code: 'barolo', depot: 'bdx-1', qty: 5 }), change('d', null, { id: 1, item_code: null, depot: null, qty: null })]);
    expect(out[1]!.kind === 'changed' && out[1]!.observations.map((o) => [o.op, o.region, o.sku])).toEqual([['DELETE', 'eu-west', 'barolo']]);
    expect(route?.deleted).toBe(true);
  });

  it('treats equal or older versions as stale, so a late upsert cannot resurrect a deleted row', () => {
    const ins = change('c', { item_code: 'barolo', depot: 'bdx-1', qty: 5 });
    const del = change('d', null, { id: 1 });
    const { out } = run([ins, del, ins, del]);
    expect(out.map((o) => o.kind)).toEqual(['changed', 'changed', 'stale', 'stale']);
  });

  it('rejects an unmappable row and leaves the route alone', () => {
    const { out, route } = run([change('c', { item_code: 'barolo', depot: 'bdx-1', qty: 5 }), change('u', { item_code: 'barolo', depot: 'mars', qty: 5 })]);
    expect(out[1]).toMatchObject({ kind: 'rejected', reason: 'unknown_warehouse' });
    expect(route?.warehouseId).toBe('bdx-1');
  });

  it('truncate deletes every live contributor of the table at the truncate version', () => {
    const live: Route[] = [1, 2].map((i) => ({
      contributorId: `c${i}`, supplierId: 'north-cellars', sourceTable: 'public.stock', region: 'eu-west', sku: `s${i}`,
      supplierSku: `s${i}`, warehouseId: 'bdx-1', vintage: null, bottleSizeMl: 750, sourceVersion: '00000000000000000001', deleted: false,
    }));
    const t = change('t', null);
    const { observations, routes } = normalizeTruncate(t, live, 9);
    expect(observations.map((o) => [o.op, o.sku, o.sourceVersion])).toEqual([['DELETE', 's1', t.sourceVersion], ['DELETE', 's2', t.sourceVersion]]);
    expect(routes.every((r) => r.deleted)).toBe(true);
  });
});
