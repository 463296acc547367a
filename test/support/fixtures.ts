import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseSupplier, type Supplier } from '../../connectors/registry/loader.js';
import { Rejection } from '../../pipelines/normalize/reasons.js';

/** A Debezium message fixture (key and value as JSON), as bytes the way Kafka delivers them. */
export function debeziumFixture(name: string): { key: Buffer | null; value: Buffer | null } {
  const text = readFileSync(fileURLToPath(new URL(`../fixtures/debezium/${name}`, import.meta.url)), 'utf8');
  const { key, value } = JSON.parse(text) as { key: unknown; value: unknown };
  return { key: key === null ? null : Buffer.from(JSON.stringify(key)), value: value === null ? null : Buffer.from(JSON.stringify(value)) };
}

/** A supplier parsed from inline YAML (file name for error messages only). */
export function supplierFromYaml(yaml: string, file = 'test-supplier.yaml'): Supplier {
  return parseSupplier(yaml, file);
}

/** A minimal Postgres supplier mapping `item_code`/`depot`/`qty`, with overrides appended to `mapping:`. */
export function northSupplier(mappingExtra = ''): Supplier {
  return supplierFromYaml(`id: north-cellars
name: North Cellars
source:
  kind: postgres
  connection: { host: db, password: "\${PW}" }
  topicPrefix: north
  tables: [{ name: public.stock }]
mapping:
  sku: item_code
  warehouse: depot
  quantity: qty
  regions: { bdx-1: eu-west, lyon-2: eu-west, nyc-1: us-east }
${mappingExtra}`);
}

/** The Rejection `fn` throws (any other error is rethrown); fails when it throws nothing. */
export function rejectionOf(fn: () => unknown): Rejection {
  try {
    fn();
  } catch (err) {
    if (err instanceof Rejection) return err;
    throw err;
  }
  throw new Error('expected a Rejection');
}
