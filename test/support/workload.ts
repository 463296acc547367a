import { SimulatedTable, type RawMessage } from '../../pipelines/demo/simulated-table.js';
import type { Totals } from './pipeline.js';
import { rid } from './services.js';

/**
 * Two simulated suppliers (a Postgres one keyed by id, a MySQL one keyed by sku+warehouse) over two
 * random regions, with a random change generator and the truth computed from their rows.
 */
export class TwoSupplierWorkload {
  readonly R1 = rid('west');
  readonly R2 = rid('east');
  readonly aPrefix = rid('a');
  readonly bPrefix = rid('b');
  readonly acme = new SimulatedTable(
    { connector: 'postgresql', name: this.aPrefix, db: 'inv', schema: 'public', table: 'stock' },
    [{ name: 'id', type: 'int32', optional: false }, { name: 'item_code', type: 'string' }, { name: 'depot', type: 'string' }, { name: 'qty', type: 'int32' }],
    ['id'],
  );
  readonly bodega = new SimulatedTable(
    { connector: 'mysql', name: this.bPrefix, db: 'shop', table: 'levels' },
    [{ name: 'sku', type: 'string', optional: false }, { name: 'wh', type: 'string', optional: false }, { name: 'bottles', type: 'int64' }],
    ['sku', 'wh'],
  );
  readonly acmeRegions: Record<string, string> = { d1: this.R1, d2: this.R1, d3: this.R2 };
  readonly bodegaRegions: Record<string, string> = { w1: this.R1, w2: this.R2 };
  private nextId = 1000;

  get regions(): string[] {
    return [this.R1, this.R2];
  }

  get rawTopics(): string[] {
    return [this.acme.topic, this.bodega.topic];
  }

  /** Supplier registry files for the two suppliers. */
  suppliers(): Record<string, string> {
    return {
      acme: `id: acme
name: Acme Wines
source:
  kind: postgres
  connection: { host: acme.internal, database: inv, user: cdc, password: "\${ACME_PASSWORD}" }
  topicPrefix: ${this.aPrefix}
  tables: [{ name: public.stock }]
mapping:
  sku: item_code
  warehouse: depot
  quantity: qty
  regions: { d1: ${this.R1}, d2: ${this.R1}, d3: ${this.R2} }
`,
      bodega: `id: bodega
name: Bodega
source:
  kind: mysql
  connection: { host: bodega.internal, database: shop, user: cdc, password: "\${BODEGA_PASSWORD}" }
  topicPrefix: ${this.bPrefix}
  tables: [{ name: shop.levels }]
mapping:
  sku: sku
  warehouse: wh
  quantity: bottles
  regions: { w1: ${this.R1}, w2: ${this.R2} }
`,
    };
  }

  /** Totals straight from the simulated suppliers' rows (the source of truth). */
  truth(): Totals {
    const out: Totals = new Map();
    const add = (region: string, sku: string, bottles: number) => {
      const k = `${region}|${sku}`;
      const cur = out.get(k) ?? { bottles: 0, contributors: 0 };
      out.set(k, { bottles: cur.bottles + bottles, contributors: cur.contributors + 1 });
    };
    for (const r of this.acme.rows.values()) add(this.acmeRegions[r.depot as string]!, r.item_code as string, r.qty as number);
    for (const r of this.bodega.rows.values()) add(this.bodegaRegions[r.wh as string]!, r.sku as string, r.bottles as number);
    return out;
  }

  /** `n` random changes: inserts, sales, moves between warehouses and SKUs, deletes, redeliveries. */
  randomChanges(n: number): RawMessage[] {
    const skus = ['X', 'Y', 'Z', 'W'];
    const pick = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)]!;
    const out: RawMessage[] = [];
    for (let i = 0; i < n; i++) {
      const roll = Math.random();
      if (Math.random() < 0.6) {
        const ids = [...this.acme.rows.values()].map((r) => r.id as number);
        if (ids.length < 20 || roll < 0.2) out.push(...this.acme.insert({ id: this.nextId++, item_code: pick(skus), depot: pick(['d1', 'd2', 'd3']), qty: Math.floor(Math.random() * 100) }));
        else if (roll < 0.3) out.push(...this.acme.delete({ id: pick(ids) }));
        else if (roll < 0.45) out.push(...this.acme.update({ id: pick(ids) }, { depot: pick(['d1', 'd2', 'd3']), item_code: pick(skus) }));
        else out.push(...this.acme.update({ id: pick(ids) }, { qty: Math.floor(Math.random() * 100) }));
      } else {
        const sku = pick(skus);
        const wh = pick(['w1', 'w2']);
        if (!this.bodega.rows.has(`${sku}|${wh}`)) out.push(...this.bodega.insert({ sku, wh, bottles: Math.floor(Math.random() * 50) }));
        else if (roll < 0.2) out.push(...this.bodega.delete({ sku, wh }));
        else out.push(...this.bodega.update({ sku, wh }, { bottles: Math.floor(Math.random() * 50) }));
      }
      if (Math.random() < 0.05 && out.length) out.push(out[out.length - 1]!); // connector redelivery
    }
    return out;
  }
}
