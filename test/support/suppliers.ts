import pg from 'pg';
import { createDatabase } from '../../infra/local/postgres.js';
import { rid, services } from './services.js';

/** The columns of the stock table most tests use: a row per (sku, depot) with a quantity in bottles. */
export const STOCK_TABLE = '(id int PRIMARY KEY, sku text NOT NULL, depot text NOT NULL, qty int NOT NULL)';

/**
 * A new supplier database on the run's Postgres (wal_level=logical) with `public.<table>` of
 * {@link STOCK_TABLE}, seeded with `rows` rows spread over `skus` SKUs, depots `d1`/`d2` and quantities
 * below `maxQty`. The client is closed by the caller.
 */
export async function stockSupplier(o: { table?: string; rows?: number; skus?: number; maxQty?: number } = {}): Promise<{ url: string; client: pg.Client }> {
  const url = await createDatabase(services().pgUrl, rid('supplier_'));
  const client = new pg.Client(url);
  await client.connect();
  const table = o.table ?? 'stock';
  await client.query(`CREATE TABLE public.${table} ${STOCK_TABLE}`);
  if (o.rows) {
    await client.query(
      `INSERT INTO public.${table} SELECT g, 'sku-' || (g % $1), 'd' || (1 + g % 2), g % $2 FROM generate_series(1, $3) g`,
      [o.skus ?? 10, o.maxQty ?? 10, o.rows],
    );
  }
  return { url, client };
}

/**
 * The registry file of a Postgres supplier reading `url` (trust authentication on 127.0.0.1), mapping
 * `sku`/`depot`/`qty` of {@link STOCK_TABLE} unless `mapping` says otherwise.
 */
export function postgresSupplierYaml(url: string, o: { id?: string; prefix?: string; tables?: string[]; regions: Record<string, string>; quantity?: string }): string {
  const u = new URL(url);
  const id = o.id ?? 'acme';
  const regions = Object.entries(o.regions).map(([w, r]) => `${w}: ${r}`).join(', ');
  return `id: ${id}
name: ${id}
source:
  kind: postgres
  connection: { host: 127.0.0.1, port: ${u.port}, database: ${u.pathname.slice(1)}, user: postgres }
  topicPrefix: ${o.prefix ?? rid(id)}
  tables: [${(o.tables ?? ['public.stock']).map((t) => `{ name: ${t} }`).join(', ')}]
mapping: { sku: sku, warehouse: depot, quantity: ${o.quantity ?? 'qty'}, regions: { ${regions} } }
`;
}
