import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadRegistry, loadSupplierFile } from '../../connectors/registry/loader.js';
import { SkuTable } from '../../pipelines/normalize/sku-table.js';
import { runMappingTest } from '../../pipelines/normalize/mapping-test.js';
import { REPO_ROOT } from '../../infra/local/cellar-process.js';

const EX = join(REPO_ROOT, 'connectors/suppliers/examples');
const run = promisify(execFile);

function summary(lines: ReturnType<typeof runMappingTest>) {
  return lines.map((l) => (l.status === 'accepted' ? l.observations.map((o) => `${o.op} ${o.region}|${o.sku} ${o.bottles}`).join(' + ') : l.status === 'rejected' ? `rejected ${l.reason}` : `ignored ${l.why}`));
}

describe('example suppliers', () => {
  it('all load as one registry and differ in source kind', () => {
    const s = loadRegistry(EX);
    expect(s.map((x) => x.source.kind).sort()).toEqual(['csv', 'mongodb', 'mysql', 'postgres', 'sqlserver']);
  });

  it('rhone-imports: 12-bottle cases, a size-keyed CSV SKU map, magnums as their own SKU, a move between regions and a key-only delete', () => {
    const s = loadSupplierFile(join(EX, 'rhone-imports.yaml'));
    const lines = runMappingTest(s, readFileSync(join(EX, 'events/rhone-imports.jsonl'), 'utf8'));
    expect(summary(lines)).toEqual([
      'UPSERT eu-west|chateauneuf-du-pape-2019 120',
      'UPSERT eu-central|hermitage-2018-magnum 30',
      'UPSERT eu-central|hermitage-2018 72',
      'UPSERT eu-west|chateauneuf-du-pape-2019 102',
      'DELETE eu-central|hermitage-2018-magnum 0 + UPSERT eu-west|hermitage-2018-magnum 30',
      'UPSERT eu-central|hermitage-2018 66',
      'DELETE eu-west|chateauneuf-du-pape-2019 0',
      'ignored tombstone',
    ]);
    // One supplier code in two sizes: two canonical SKUs, each with its one size, never one total.
    const her = lines.flatMap((l) => (l.status === 'accepted' ? l.observations : [])).filter((o) => o.supplierSku === 'RH-HER-2018');
    expect([...new Set(her.map((o) => `${o.sku} ${o.bottleSizeMl} ml ${o.vintage}`))].sort()).toEqual(['hermitage-2018 750 ml 2018', 'hermitage-2018-magnum 1500 ml 2018']);
  });

  it('rhone-imports: a second bottle size under one canonical SKU is rejected (bottle_size_mismatch), never summed', () => {
    // The mistake the example used to make: RH-HER-2018 mapped to hermitage-2018 whatever the bottle size.
    const dir = mkdtempSync(join(tmpdir(), 'mt-'));
    writeFileSync(join(dir, 'rhone-imports.yaml'), readFileSync(join(EX, 'rhone-imports.yaml'), 'utf8'));
    writeFileSync(join(dir, 'rhone-imports-skus.csv'), 'supplier_sku,canonical_sku\nRH-CDP-2019,chateauneuf-du-pape-2019\nRH-HER-2018,hermitage-2018\n');
    const s = loadSupplierFile(join(dir, 'rhone-imports.yaml'));
    const lines = runMappingTest(s, readFileSync(join(EX, 'events/rhone-imports.jsonl'), 'utf8'));
    expect(summary(lines)).toEqual([
      'UPSERT eu-west|chateauneuf-du-pape-2019 120',
      'UPSERT eu-central|hermitage-2018 30', // the magnums come first and pin hermitage-2018 at 1500 ml
      'rejected bottle_size_mismatch', // the 750 ml bottles of the same code
      'UPSERT eu-west|chateauneuf-du-pape-2019 102',
      'DELETE eu-central|hermitage-2018 0 + UPSERT eu-west|hermitage-2018 30',
      'rejected bottle_size_mismatch',
      'DELETE eu-west|chateauneuf-du-pape-2019 0',
      'ignored tombstone',
    ]);
    const rejected = lines[2]!;
    expect(rejected).toMatchObject({ line: 3, status: 'rejected', reason: 'bottle_size_mismatch' });
    if (rejected.status !== 'rejected') throw new Error('unreachable');
    expect(rejected.message).toContain('750 ml of "RH-HER-2018" → "hermitage-2018", a 1500 ml SKU');
    // Every accepted observation says which canonical SKU, bottle size and vintage it counts.
    const accepted = lines.flatMap((l) => (l.status === 'accepted' ? l.observations : []));
    expect(accepted.map((o) => `${o.op} ${o.sku} ${o.bottleSizeMl} ${o.vintage}`)).toEqual([
      'UPSERT chateauneuf-du-pape-2019 750 2019',
      'UPSERT hermitage-2018 1500 2018',
      'UPSERT chateauneuf-du-pape-2019 750 2019',
      'DELETE hermitage-2018 1500 2018',
      'UPSERT hermitage-2018 1500 2018',
      'DELETE chateauneuf-du-pape-2019 750 2019',
    ]);
    // With the size-keyed map of the example, the same events are all accepted.
    const fixed = runMappingTest(loadSupplierFile(join(EX, 'rhone-imports.yaml')), readFileSync(join(EX, 'events/rhone-imports.jsonl'), 'utf8'));
    expect(fixed.filter((l) => l.status === 'rejected')).toEqual([]);
  });

  it.each([
    ['cascade-wines', ['UPSERT us-west|willamette-pinot-noir-2021 60', 'UPSERT us-west|columbia-chardonnay-2022 12', 'UPSERT us-west|willamette-pinot-noir-2021 54', 'DELETE us-west|columbia-chardonnay-2022 0']],
    ['harbor-spirits', ['UPSERT us-east|whisky-islay-12 48', 'UPSERT us-east|barolo-2016 42', 'UPSERT us-east|whisky-islay-12 30', 'DELETE us-east|barolo-2016 0']],
    ['valley-feed', ['UPSERT us-west|napa-cab-2019 24', 'UPSERT us-west|sonoma-zin-2020 -6']],
  ])('%s: units, nested fields and keys', (name, expected) => {
    const s = loadSupplierFile(join(EX, `${name}.yaml`));
    expect(summary(runMappingTest(s, readFileSync(join(EX, `events/${name}.jsonl`), 'utf8')))).toEqual(expected);
  });

  it('meridian-trading: 6-bottle cases with SKUs from cellar.sku_map rows', () => {
    const s = loadSupplierFile(join(EX, 'meridian-trading.yaml'));
    const skus = { skuTable: new SkuTable([{ supplierSku: 'W-CHB-20', sku: 'chambertin-2020' }]) };
    expect(summary(runMappingTest(s, readFileSync(join(EX, 'events/meridian-trading.jsonl'), 'utf8'), skus))).toEqual([
      'UPSERT us-east|chambertin-2020 60',
      'rejected unknown_sku',
      'UPSERT us-east|chambertin-2020 48',
    ]);
  });

  it('every example has sample events that all pass', () => {
    const events = readdirSync(join(EX, 'events')).map((f) => f.replace('.jsonl', ''));
    expect(events.sort()).toEqual(loadRegistry(EX).map((s) => s.id).sort());
  });
});

describe('cellar mapping test (CLI)', () => {
  const cli = (...args: string[]) => run(process.execPath, ['--import', 'tsx', 'pipelines/cli/main.ts', 'mapping', 'test', ...args], { cwd: REPO_ROOT }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );

  it('exits 0 when every event is accepted and prints one JSON line per event', async () => {
    const r = await cli('--file', join(EX, 'cascade-wines.yaml'), '--events', join(EX, 'events/cascade-wines.jsonl'));
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').map((l) => JSON.parse(l).status)).toEqual(['accepted', 'accepted', 'accepted', 'accepted']);
    expect(r.stderr).toContain('cascade-wines: 4 events, 4 accepted');
  });

  it('exits 1 and names the reason of each rejected event', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mt-'));
    const good = readFileSync(join(EX, 'events/cascade-wines.jsonl'), 'utf8').split('\n')[0]!;
    const bad = good.replaceAll('"CW-PN-21"', '"CW-UNKNOWN"').replace('mysql-bin.000007', 'mysql-bin.000008');
    writeFileSync(join(dir, 'e.jsonl'), `${good}\nnot json\n${bad}\n`);
    const r = await cli('--file', join(EX, 'cascade-wines.yaml'), '--events', join(dir, 'e.jsonl'));
    expect(r.code).toBe(1);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.reason ?? l.status)).toEqual(['accepted', 'bad_line', 'unknown_sku']);
    expect(lines[2].message).toContain('CW-UNKNOWN');
  });

  it('prints a bottle_size_mismatch line, naming both sizes, when two sizes map to one canonical SKU (exit 1)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mt-'));
    writeFileSync(join(dir, 'rhone-imports.yaml'), readFileSync(join(EX, 'rhone-imports.yaml'), 'utf8'));
    writeFileSync(join(dir, 'rhone-imports-skus.csv'), 'supplier_sku,canonical_sku\nRH-CDP-2019,chateauneuf-du-pape-2019\nRH-HER-2018,hermitage-2018\n');
    const r = await cli('--file', join(dir, 'rhone-imports.yaml'), '--events', join(EX, 'events/rhone-imports.jsonl'));
    expect(r.code, r.stderr).toBe(1);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines[2]).toMatchObject({ line: 3, status: 'rejected', reason: 'bottle_size_mismatch' });
    expect(lines[2].message).toMatch(/750 ml of "RH-HER-2018" → "hermitage-2018", a 1500 ml SKU/);
    expect(lines[1].observations).toEqual([expect.objectContaining({ sku: 'hermitage-2018', bottleSizeMl: 1500, vintage: 2018, bottles: 30 })]);
    // The example's own size-keyed map: magnums and bottles under two canonical SKUs, nothing rejected.
    const ok = await cli('--file', join(EX, 'rhone-imports.yaml'), '--events', join(EX, 'events/rhone-imports.jsonl'));
    expect(ok.code, ok.stderr).toBe(0);
    const obs = ok.stdout.trim().split('\n').map((l) => JSON.parse(l)).flatMap((l) => l.observations ?? []);
    expect(obs.slice(1, 3)).toEqual([
      expect.objectContaining({ op: 'UPSERT', supplierSku: 'RH-HER-2018', sku: 'hermitage-2018-magnum', bottleSizeMl: 1500, vintage: 2018, bottles: 30 }),
      expect.objectContaining({ op: 'UPSERT', supplierSku: 'RH-HER-2018', sku: 'hermitage-2018', bottleSizeMl: 750, vintage: 2018, bottles: 72 }),
    ]);
  });

  it('exits 2 with the file and field when the supplier file is invalid', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mt-'));
    writeFileSync(join(dir, 's.yaml'), 'id: x\nname: X\nsource: { kind: csv, tables: [{ name: a.b }] }\nmapping: { sku: s, warehouse: w, quantity: q, unit: gallons, regions: { w: r } }\n');
    const r = await cli('--file', join(dir, 's.yaml'), '--events', join(EX, 'events/cascade-wines.jsonl'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/s\.yaml: mapping\.unit/);
  });
});
