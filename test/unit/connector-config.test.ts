import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/local/cellar-process.js';
import { loadRegistry, loadSupplierFile, parseSupplier, type Supplier } from '../../connectors/registry/loader.js';
import {
  connectorlessSuppliers,
  generateConnectorConfigs,
  parseKafkaConnectOptions,
  providerReference,
  renderPlan,
  renderValue,
  secretScrubber,
  planConnectors,
  type GeneratedConnector,
  type KafkaConnectOptions,
} from '../../connectors/kafka-connect/index.js';
import { rawTopics } from '../../pipelines/normalize/worker.js';
import { ConfigError } from '../../pipelines/core/errors.js';

/**
 * Golden files of the generated Debezium configs, one per source kind, from the example suppliers.
 * When generation changes on purpose, rewrite them with `CELLAR_UPDATE_GOLDEN=1 npx vitest run
 * test/unit/connector-config.test.ts` and review the diff in git.
 */
const GOLDEN_DIR = join(REPO_ROOT, 'test/fixtures/connectors');
const EXAMPLES = join(REPO_ROOT, 'connectors/suppliers/examples');
const UPDATE = process.env.CELLAR_UPDATE_GOLDEN === '1';

const options = (over: Record<string, unknown> = {}): KafkaConnectOptions =>
  parseKafkaConnectOptions({ schemaRegistryUrl: 'http://schema-registry:8081', kafkaBootstrapServers: 'kafka:9092', topicPartitions: 12, topicReplication: 3, ...over });

/** The example suppliers, plus a MariaDB one (the MySQL example captured by the MariaDB connector). */
function suppliers(): Supplier[] {
  const all = loadRegistry(EXAMPLES);
  const cascade = loadSupplierFile(join(EXAMPLES, 'cascade-wines.yaml'));
  const text = readFileSync(cascade.file, 'utf8').replace('kind: mysql', 'kind: mariadb').replace('id: cascade-wines', 'id: cascade-wines-maria').replace('topicPrefix: cascade', 'topicPrefix: cascade-maria');
  return [...all, parseSupplier(text, join(EXAMPLES, 'cascade-wines-maria.yaml'))];
}

/** What a golden file holds: the connector with the supplier file relative to the repository. */
function goldenOf(g: GeneratedConnector): string {
  return `${JSON.stringify({ ...g, file: relative(REPO_ROOT, g.file) }, null, 2)}\n`;
}

function checkGolden(name: string, actual: string): void {
  const file = join(GOLDEN_DIR, name);
  if (UPDATE || !existsSync(file)) {
    mkdirSync(GOLDEN_DIR, { recursive: true });
    writeFileSync(file, actual);
    if (!UPDATE) throw new Error(`golden file ${relative(REPO_ROOT, file)} was missing and has been written; review it and run again`);
    return;
  }
  expect(actual, `generated config differs from ${relative(REPO_ROOT, file)} (CELLAR_UPDATE_GOLDEN=1 rewrites it after review)`).toBe(readFileSync(file, 'utf8'));
}

describe('Debezium connector configs generated from the registry', () => {
  const generated = generateConnectorConfigs(suppliers(), options());
  const byKind = (kind: string) => generated.find((g) => g.kind === kind)!;

  for (const kind of ['postgres', 'mysql', 'mariadb', 'mongodb', 'sqlserver'] as const) {
    it(`${kind}: matches the golden file`, () => {
      expect(byKind(kind), `no ${kind} connector generated`).toBeDefined();
      checkGolden(`${kind}.json`, goldenOf(byKind(kind)));
    });
  }

  it('postgres with the JSON converter: matches the golden file', () => {
    const g = generateConnectorConfigs(suppliers(), options({ converter: 'json' })).find((x) => x.kind === 'postgres')!;
    checkGolden('postgres-json.json', goldenOf(g));
    expect(g.config['value.converter.schemas.enable']).toBe('true');
    expect(Object.keys(g.config).some((k) => k.includes('schema.registry'))).toBe(false);
  });

  it('writes exactly the raw topics the normalizer subscribes to', () => {
    const subscribed = rawTopics(suppliers().filter((s) => s.source.kind !== 'csv' && s.source.kind !== 'http')).map((t) => t.topic).sort();
    expect(generated.flatMap((g) => g.topics).sort()).toEqual(subscribed);
    for (const g of generated) for (const t of g.topics) expect(t.startsWith(`${g.config['topic.prefix']}.`)).toBe(true);
  });

  it('gives decimals in a form the normalizer decodes exactly, and keeps the full envelope', () => {
    expect(byKind('postgres').config['decimal.handling.mode']).toBe('precise');
    expect(byKind('sqlserver').config['decimal.handling.mode']).toBe('precise');
    expect(byKind('mysql').config['decimal.handling.mode']).toBe('string');
    expect(byKind('mariadb').config['decimal.handling.mode']).toBe('string');
    for (const g of generated) expect(Object.keys(g.config).some((k) => k.startsWith('transforms'))).toBe(false);
  });

  it('puts secrets in as Connect config-provider references, never as values', () => {
    expect(byKind('postgres').config['database.password']).toBe('${env:RHONE_PG_PASSWORD}');
    expect(byKind('mysql').config['database.password']).toBe('${dir:/run/secrets:cascade-mysql-password}');
    expect(byKind('mongodb').config['mongodb.password']).toBe('${env:HARBOR_MONGO_PASSWORD}');
    expect(byKind('mongodb').config['mongodb.connection.string']).toBe('mongodb://mongo.harbor.example:27017/?replicaSet=rs0');
    expect(providerReference({ file: 'secrets/pg' }, '/etc/cellar/suppliers/a.yaml')).toBe('${dir:/etc/cellar/suppliers/secrets:pg}');
    expect(() => providerReference({ file: '/run/sec:rets/x' }, '/a.yaml')).toThrow(ConfigError);
  });

  it('renders values for plans without secrets: references shown, inline credentials hidden', () => {
    expect(renderValue('database.password', '${env:PG_PW}')).toBe('"${env:PG_PW}"');
    expect(renderValue('database.password', 'hunter2')).toBe('(sensitive value hidden)');
    expect(renderValue('mongodb.connection.string', 'mongodb://u:hunter2@h:27017/?replicaSet=rs0')).toBe('"mongodb://u:***@h:27017/?replicaSet=rs0"');
    expect(renderValue('mongodb.connection.string', 'mongodb://u:${env:PW}@h:27017/')).toBe('"mongodb://u:${env:PW}@h:27017/"');
    expect(renderValue('database.hostname', 'pg.example')).toBe('"pg.example"');
    const scrub = secretScrubber(suppliers(), { RHONE_PG_PASSWORD: 'p@ss word!' });
    expect(scrub('auth failed for p@ss word! and p%40ss%20word!')).toBe('auth failed for *** and ***');
  });

  it('gives each MySQL/MariaDB connector its own stable server id', () => {
    const again = generateConnectorConfigs(suppliers(), options());
    const ids = generated.filter((g) => g.kind === 'mysql' || g.kind === 'mariadb').map((g) => g.config['database.server.id']);
    expect(new Set(ids).size).toBe(ids.length);
    expect(again.map((g) => g.config['database.server.id'])).toEqual(generated.map((g) => g.config['database.server.id']));
  });

  it('generates no connector for csv and http suppliers and says why', () => {
    const http = parseSupplier(
      ['id: web-feed', 'name: Web', 'source:', '  kind: http', '  tables: [{ name: feed.stock }]', 'mapping:', '  sku: sku', '  warehouse: w', '  quantity: q', '  regions: { a: eu }'].join('\n'),
      '/x/web-feed.yaml',
    );
    const all = [...suppliers(), http];
    expect(generateConnectorConfigs(all, options()).map((g) => g.supplierId)).not.toContain('valley-feed');
    const none = connectorlessSuppliers(all);
    expect(none.map((s) => `${s.supplierId}:${s.kind}`).sort()).toEqual(['valley-feed:csv', 'web-feed:http']);
    const text = renderPlan(planConnectors(generateConnectorConfigs(all, options()), {}, 'cellar-', none), { prune: false, connectUrl: 'http://connect:8083' });
    expect(text).toMatch(/valley-feed \(.*valley-feed\.yaml\): csv source: no Debezium connector/);
    expect(text).toMatch(/web-feed .*http source: no Debezium connector/);
  });

  it('names the supplier file and field when a table name does not fit the source kind', () => {
    const s = parseSupplier(readFileSync(join(EXAMPLES, 'meridian-trading.yaml'), 'utf8').replace('Inventory.dbo.StockOnHand', 'dbo.StockOnHand'), '/x/meridian.yaml');
    expect(() => generateConnectorConfigs([s], options())).toThrow(/\/x\/meridian\.yaml: source\.tables\[0\]\.name: a sqlserver table is named database\.schema\.table/);
  });
});
