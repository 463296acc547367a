import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadRegistry, parseSupplier, resolveSecret } from '../../connectors/registry/loader.js';
import { ConfigError } from '../../pipelines/core/errors.js';
import { loadRuntimeConfig } from '../../pipelines/core/config.js';

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.length ? err.problems : [err.message];
    throw err;
  }
  return [];
}

describe('supplier registry', () => {
  it('loads the demo suppliers', () => {
    const s = loadRegistry('connectors/suppliers/demo');
    expect(s.map((x) => [x.id, x.topicPrefix, x.source.tables.map((t) => t.name)])).toEqual([
      ['north-cellars', 'north', ['public.stock']],
      ['south-vines', 'south', ['warehouse.stock_levels']],
    ]);
  });

  it('reports every problem with file and field path', () => {
    const p = problems(() =>
      parseSupplier(
        `id: Bad_Id
name: x
source:
  kind: oracle
  tables: []
mapping:
  sku: sku
  quantity: q
  unit: case
  regions: {}
  colour: red
`,
        'suppliers/bad.yaml',
      ),
    );
    expect(p).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^suppliers\/bad\.yaml: id: lowercase/),
        expect.stringMatching(/^suppliers\/bad\.yaml: source\.kind: /),
        expect.stringMatching(/^suppliers\/bad\.yaml: source\.tables: at least one captured table/),
        expect.stringMatching(/^suppliers\/bad\.yaml: mapping\.warehouse: /),
        expect.stringMatching(/^suppliers\/bad\.yaml: mapping\.regions: at least one/),
        expect.stringMatching(/^suppliers\/bad\.yaml: mapping: .*colour/),
      ]),
    );
  });

  it('refuses inline secrets and never echoes them', () => {
    const p = problems(() =>
      parseSupplier(
        `id: s
name: S
source: { kind: postgres, connection: { host: h, password: hunter2 }, tables: [{ name: public.t }] }
mapping: { sku: a, warehouse: b, quantity: c, regions: { w: r } }
`,
        's.yaml',
      ),
    );
    expect(p.join('\n')).toMatch(/s\.yaml: source\.connection\.password: /);
    expect(p.join('\n')).not.toContain('hunter2');
  });

  it('collects problems across files and duplicate ids', () => {
    const dir = mkdtempSync(join(tmpdir(), 'reg-'));
    const ok = (id: string, prefix: string) => `id: ${id}\nname: N\nsource: { kind: csv, topicPrefix: ${prefix}, tables: [{ name: feed.rows }] }\nmapping: { sku: a, warehouse: b, quantity: c, regions: { w: r } }\n`;
    writeFileSync(join(dir, 'a.yaml'), ok('same', 'p1'));
    writeFileSync(join(dir, 'b.yaml'), ok('same', 'p2'));
    writeFileSync(join(dir, 'c.yaml'), 'id: [unclosed');
    const p = problems(() => loadRegistry(dir));
    expect(p.some((x) => x.includes('b.yaml: id: id "same" is also used by') && x.includes('a.yaml'))).toBe(true);
    expect(p.some((x) => x.startsWith(join(dir, 'c.yaml')))).toBe(true);
  });

  it('resolves ${ENV} and file secrets, naming only the reference when missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sec-'));
    writeFileSync(join(dir, 'pw'), 's3cret\n');
    expect(resolveSecret('${PW_X}', 'f.yaml', { PW_X: 'v' })).toBe('v');
    expect(resolveSecret({ file: 'pw' }, join(dir, 'f.yaml'))).toBe('s3cret');
    expect(() => resolveSecret('${NOPE}', 'f.yaml', {})).toThrow(/f\.yaml: secret \$\{NOPE\} is not set/);
  });
});

describe('runtime config', () => {
  it('names the environment variables that are wrong', () => {
    const p = problems(() => loadRuntimeConfig({ CELLAR_KAFKA_COMPAT: 'x', CELLAR_TOPIC_PARTITIONS: '0', CELLAR_SCHEMA_REGISTRY_URL: 'nope' }));
    expect(p).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^environment: CELLAR_KAFKA_COMPAT: /),
        expect.stringMatching(/^environment: CELLAR_TOPIC_PARTITIONS: /),
        expect.stringMatching(/^environment: CELLAR_SCHEMA_REGISTRY_URL: /),
      ]),
    );
  });

  it('has production defaults', () => {
    const c = loadRuntimeConfig({});
    expect(c).toMatchObject({ kafkaCompat: 'standard', topicPrefix: 'cellar', topicPartitions: 12, kafkaBrokers: ['127.0.0.1:9092'] });
  });
});
