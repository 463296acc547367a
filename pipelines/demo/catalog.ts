import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { DemoEngine } from './supplier-db.js';

/**
 * Wines of the demo catalog (at least 2,000 end up stocked), each a canonical SKU of 750 ml bottles;
 * the wines northsea-wines also stocks as magnums have a second canonical SKU of 1500 ml (see
 * {@link demoCatalog}).
 */
export const CANONICAL_SKUS = 2400;

/** The usual bottle size, ml: every row of a supplier without a bottle-size column is this size. */
export const STANDARD_ML = 750;
/** Magnums, ml: a canonical SKU of their own (`<wine>-magnum`), never summed with the 750 ml bottles. */
export const MAGNUM_ML = 1500;

/** One stock row as the demo's generator models it, whatever the supplier calls its columns. */
export interface ModelRow {
  id: number;
  /** The supplier's own SKU code. */
  code: string;
  warehouse: string;
  /** Quantity in the row's unit: cases (rhone, cascade), bottles (pacific, northsea; northsea stores liters). */
  units: number;
  /** Bottles per unit: 12 or 6 for rhone's cases, 1 otherwise. */
  pack: number;
  /** Bottle size in ml (northsea: 750 or 1500; others 750). */
  ml: number;
}

/** One entry of a supplier's SKU map: its code, in one bottle size, is this canonical SKU. */
export interface SkuEntry {
  code: string;
  ml: number;
  sku: string;
}

/**
 * A demo supplier: its own database, table, column names, unit, SKU codes, bottle sizes and warehouses.
 * `sql` says, as SQL over its table (alias `t`), each row's code, bottle size and bottles, so that the
 * demo's check computes the totals independently of Cellar's mapping code.
 */
export interface DemoSupplier {
  id: string;
  name: string;
  /** The database server it runs on. */
  engine: DemoEngine;
  /** Postgres: a database of the private server; MariaDB: the schema its DDL creates. */
  database: string;
  /** `schema.table` (MariaDB: `database.table`) */
  table: string;
  pk: string;
  whCol: string;
  /** Supplier warehouse → region. */
  regions: Record<string, string>;
  ddl: string;
  /** Column → value of a whole row (for INSERT). */
  columns(r: ModelRow): Record<string, string | number>;
  /** Column → value of the quantity columns (for UPDATE). */
  quantity(r: ModelRow): Record<string, string | number>;
  sql: {
    /** The supplier's SKU code. */
    code: string;
    /** The row's bottle size in ml (a column, or a constant for suppliers of one size). */
    size: string;
    /** The row's quantity as bottles of that size. */
    bottles: string;
    /** True when the row is a whole number of bottles (default: always). */
    whole?: string;
  };
  /** Units of a receipt / of a sale, and the range of a stock count. */
  receipt: [number, number];
  sale: [number, number];
  count: [number, number];
  /** Canonical SKU index → supplier code. */
  codeOf(i: number): string;
  /** How the supplier file carries its SKU map. */
  skuMap: 'csv' | 'inline';
  /**
   * Bottle sizes it stocks, ml. With more than one, one code comes in each of these sizes (a bottle-size
   * column tells them apart), and its SKU map is keyed by size: each size of a wine is its own canonical SKU.
   */
  sizes: number[];
  mapping: Record<string, unknown>;
  /** A new row's pack and bottle size. */
  packing(rnd: () => number): { pack: number; ml: number };
  /** The range of canonical SKU indexes it carries (wrapping modulo CANONICAL_SKUS). */
  carries: [number, number];
}

/** Liters of `bottles` bottles of `ml` ml, as an exact decimal string (never a float). */
export function litersText(bottles: number, ml: number): string {
  const total = bottles * ml; // milliliters
  return `${Math.floor(total / 1000)}.${String(total % 1000).padStart(3, '0')}`;
}

const APPELLATIONS = ['bordeaux', 'rioja', 'barolo', 'chianti', 'napa-cab', 'sonoma-pinot', 'mosel-riesling', 'chablis', 'rhone-syrah', 'malbec', 'marlborough-sb', 'douro', 'priorat', 'champagne', 'tokaji', 'barossa-shiraz'];

/** The canonical SKU with index `i`, e.g. `rioja-0017-2019`. */
export function canonicalSku(i: number): string {
  return `${APPELLATIONS[i % APPELLATIONS.length]}-${String(i).padStart(4, '0')}-${2010 + ((i * 7) % 13)}`;
}

/** The Postgres demo suppliers (always there) and a MariaDB one (when MariaDB's binaries are installed). */
export const DEMO_SUPPLIERS: DemoSupplier[] = [
  {
    id: 'rhone-imports', name: 'Rhône Imports (ERP, cases of 12 and 6)', engine: 'postgres', database: 'rhone_erp', table: 'public.stock_positions', pk: 'stock_id', whCol: 'depot',
    regions: { 'LYS-01': 'eu-west', 'BOD-02': 'eu-west', 'JFK-03': 'us-east', 'OAK-04': 'us-west' },
    ddl: `CREATE TABLE public.stock_positions (stock_id bigint PRIMARY KEY, item_code text NOT NULL, depot text NOT NULL,
            case_type text NOT NULL CHECK (case_type IN ('CS12', 'CS6')), cases integer NOT NULL, vintage integer)`,
    columns: (r) => ({ stock_id: r.id, item_code: r.code, depot: r.warehouse, case_type: r.pack === 12 ? 'CS12' : 'CS6', cases: r.units, vintage: 2010 + (r.id % 13) }),
    quantity: (r) => ({ cases: r.units }),
    sql: { code: 't.item_code', size: '750', bottles: "t.cases * CASE t.case_type WHEN 'CS12' THEN 12 WHEN 'CS6' THEN 6 END" },
    receipt: [5, 25], sale: [1, 2], count: [0, 40],
    codeOf: (i) => `RH-${100000 + i}`,
    skuMap: 'csv',
    sizes: [STANDARD_ML],
    mapping: { sku: 'item_code', warehouse: 'depot', quantity: 'cases', unit: { field: 'case_type', values: { CS12: 'case12', CS6: 'case6' } }, vintage: 'vintage' },
    packing: (rnd) => ({ pack: rnd() < 0.25 ? 6 : 12, ml: 750 }),
    carries: [0, 1100],
  },
  {
    id: 'pacific-cellars', name: 'Pacific Cellars (WMS, bottles)', engine: 'postgres', database: 'pacific_wms', table: 'inventory.stock_levels', pk: 'id', whCol: 'warehouse',
    regions: { 'napa-1': 'us-west', 'sea-2': 'us-west', 'bos-3': 'us-east', 'lon-4': 'eu-west' },
    ddl: `CREATE SCHEMA inventory;
          CREATE TABLE inventory.stock_levels (id bigint PRIMARY KEY, sku text NOT NULL, warehouse text NOT NULL, bottles integer NOT NULL)`,
    columns: (r) => ({ id: r.id, sku: r.code, warehouse: r.warehouse, bottles: r.units }),
    quantity: (r) => ({ bottles: r.units }),
    sql: { code: 't.sku', size: '750', bottles: 't.bottles' },
    receipt: [24, 144], sale: [1, 12], count: [0, 300],
    codeOf: (i) => `PC${7000 + i * 3}-75`,
    skuMap: 'inline',
    sizes: [STANDARD_ML],
    mapping: { sku: 'sku', warehouse: 'warehouse', quantity: 'bottles', unit: 'bottles' },
    packing: () => ({ pack: 1, ml: 750 }),
    carries: [900, 2000],
  },
  {
    id: 'northsea-wines', name: 'Northsea Wines (liters, 750 ml and 1500 ml bottles)', engine: 'postgres', database: 'northsea_inv', table: 'public.article_stock', pk: 'line_no', whCol: 'site',
    regions: { RTM: 'eu-west', ATL: 'us-east', LAX: 'us-west' },
    ddl: `CREATE TABLE public.article_stock (line_no bigint PRIMARY KEY, article_no text NOT NULL, site text NOT NULL,
            liters numeric(12,3) NOT NULL, bottle_ml integer NOT NULL)`,
    columns: (r) => ({ line_no: r.id, article_no: r.code, site: r.warehouse, liters: litersText(r.units, r.ml), bottle_ml: r.ml }),
    quantity: (r) => ({ liters: litersText(r.units, r.ml) }),
    sql: { code: 't.article_no', size: 't.bottle_ml', bottles: 't.liters * 1000 / t.bottle_ml', whole: '(t.liters * 1000) % t.bottle_ml = 0' },
    receipt: [12, 60], sale: [1, 6], count: [0, 200],
    codeOf: (i) => `NS-A${50000 + ((i * 37) % 100000)}`,
    skuMap: 'csv',
    sizes: [STANDARD_ML, MAGNUM_ML],
    mapping: { sku: 'article_no', warehouse: 'site', quantity: 'liters', unit: 'liters', bottleSizeMl: 'bottle_ml' },
    packing: (rnd) => ({ pack: 1, ml: rnd() < 0.25 ? MAGNUM_ML : STANDARD_ML }),
    carries: [1700, 2600],
  },
  {
    id: 'cascade-wines', name: 'Cascade Wines (MariaDB, 6-bottle cases)', engine: 'mariadb', database: 'cascade_inv', table: 'cascade_inv.levels', pk: 'line_id', whCol: 'wh_code',
    regions: { PDX: 'us-west', MIA: 'us-east', AMS: 'eu-west' },
    ddl: `CREATE DATABASE cascade_inv;
          CREATE TABLE cascade_inv.levels (line_id bigint PRIMARY KEY, article varchar(32) NOT NULL, wh_code varchar(8) NOT NULL, cases6 int NOT NULL)`,
    columns: (r) => ({ line_id: r.id, article: r.code, wh_code: r.warehouse, cases6: r.units }),
    quantity: (r) => ({ cases6: r.units }),
    sql: { code: 't.article', size: '750', bottles: 't.cases6 * 6' },
    receipt: [2, 20], sale: [1, 2], count: [0, 50],
    codeOf: (i) => `CW/${String(i).padStart(5, '0')}`,
    skuMap: 'inline',
    sizes: [STANDARD_ML],
    mapping: { sku: 'article', warehouse: 'wh_code', quantity: 'cases6', unit: 'case6' },
    packing: () => ({ pack: 6, ml: 750 }),
    carries: [300, 1500],
  },
];

/** The demo's suppliers: the Postgres ones, plus the MariaDB one when a MariaDB server is there. */
export function demoSuppliers(withMariaDb: boolean): DemoSupplier[] {
  return DEMO_SUPPLIERS.filter((s) => s.engine === 'postgres' || withMariaDb);
}

/** A small deterministic PRNG (mulberry32), so every demo run seeds the same catalog. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random integer in [lo, hi]. */
export const between = (rnd: () => number, [lo, hi]: [number, number]) => lo + Math.floor(rnd() * (hi - lo + 1));

/** The canonical SKU of wine `i` in bottles of `ml`: the wine's own SKU for 750 ml, `<wine>-magnum` for 1500 ml. */
export function sizedSku(i: number, ml: number): string {
  if (ml === STANDARD_ML) return canonicalSku(i);
  if (ml === MAGNUM_ML) return `${canonicalSku(i)}-magnum`;
  throw new Error(`the demo catalog has no ${ml} ml bottles`);
}

/** Wine indexes a supplier carries. */
function carried(s: DemoSupplier): number[] {
  const out: number[] = [];
  for (let i = s.carries[0]; i < s.carries[1]; i++) out.push(i % CANONICAL_SKUS);
  return out;
}

/**
 * The supplier's SKU map, built from the catalog (not from the registry files): each code in each bottle
 * size it stocks → the canonical SKU of that wine in that size. A supplier of several sizes has one entry
 * per code and size, so its 750 ml bottles and magnums of one code are two canonical SKUs.
 */
export function skuEntries(s: DemoSupplier): SkuEntry[] {
  return carried(s).flatMap((i) => s.sizes.map((ml) => ({ code: s.codeOf(i), ml, sku: sizedSku(i, ml) })));
}

/** One canonical SKU of the demo catalog, as `cellar catalog import` takes it. */
export interface DemoCatalogEntry {
  sku: string;
  bottleSizeMl: number;
  vintage: number | null;
  name: string | null;
}

/**
 * The demo's canonical catalog: every wine as a 750 ml SKU, and a 1500 ml SKU of every wine a supplier
 * stocks in magnums; each canonical SKU with its one bottle size.
 */
export function demoCatalog(suppliers: DemoSupplier[] = DEMO_SUPPLIERS): DemoCatalogEntry[] {
  const entry = (i: number, ml: number): DemoCatalogEntry => {
    const sku = sizedSku(i, ml);
    const [, appellation, n, year] = /^(.*)-(\d{4})-(\d{4})$/.exec(canonicalSku(i))!;
    return { sku, bottleSizeMl: ml, vintage: Number(year), name: `${appellation!.replace(/-/g, ' ')} ${n} ${year}${ml === MAGNUM_ML ? ' (magnum)' : ''}` };
  };
  const out = new Map<string, DemoCatalogEntry>();
  for (let i = 0; i < CANONICAL_SKUS; i++) out.set(sizedSku(i, STANDARD_ML), entry(i, STANDARD_ML));
  for (const s of suppliers) for (const i of carried(s)) for (const ml of s.sizes) out.set(sizedSku(i, ml), entry(i, ml));
  return [...out.values()];
}

/**
 * The supplier's initial rows: each SKU it carries at one to three of its warehouses. A supplier of
 * several bottle sizes also lists, at about a quarter of those warehouses, the code's other size in a
 * second row: one code at one warehouse in two sizes.
 */
export function seedRows(s: DemoSupplier, rnd: () => number): ModelRow[] {
  const whs = Object.keys(s.regions);
  const rows: ModelRow[] = [];
  for (const code of new Set(skuEntries(s).map((e) => e.code))) {
    const n = 1 + Math.floor(rnd() * 3);
    const start = Math.floor(rnd() * whs.length);
    for (let k = 0; k < n && k < whs.length; k++) {
      const row: ModelRow = { id: rows.length + 1, code, warehouse: whs[(start + k) % whs.length]!, units: between(rnd, s.count), ...s.packing(rnd) };
      rows.push(row);
      if (s.sizes.length > 1 && rnd() < 0.25) {
        const ml = s.sizes.find((x) => x !== row.ml)!;
        rows.push({ ...row, id: rows.length + 1, units: between(rnd, s.count), ml });
      }
    }
  }
  return rows;
}

/** Writes the supplier's registry YAML (and SKU CSV) into `dir`; trust auth / root without password, so no password field. */
export function writeSupplierFile(s: DemoSupplier, dir: string, port: number): void {
  const entries = skuEntries(s);
  const sized = s.sizes.length > 1;
  let skus: unknown;
  if (s.skuMap === 'csv') {
    const lines = entries.map((e) => (sized ? `${e.code},${e.sku},${e.ml}` : `${e.code},${e.sku}`));
    writeFileSync(join(dir, `${s.id}-skus.csv`), `supplier_sku,canonical_sku${sized ? ',bottle_size_ml' : ''}\n${lines.join('\n')}\n`);
    skus = { csv: `${s.id}-skus.csv` };
  } else if (sized) {
    skus = { inline: entries.map((e) => ({ supplierSku: e.code, bottleSizeMl: e.ml, sku: e.sku })) };
  } else skus = { inline: Object.fromEntries(entries.map((e) => [e.code, e.sku])) };
  const doc = {
    id: s.id,
    name: s.name,
    source: {
      kind: s.engine,
      connection: s.engine === 'postgres' ? { host: '127.0.0.1', port, database: s.database, user: 'postgres' } : { host: '127.0.0.1', port, user: 'root' },
      topicPrefix: s.id.split('-')[0],
      tables: [{ name: s.table }],
    },
    mapping: { ...s.mapping, skus, regions: s.regions },
  };
  writeFileSync(join(dir, `${s.id}.yaml`), `# Written by \`cellar demo\`: a private ${s.engine === 'postgres' ? 'Postgres on 127.0.0.1 with trust authentication' : 'MariaDB on 127.0.0.1, root without a password'}.\n${stringify(doc)}`);
}

/** The regions of all demo warehouses, sorted. */
export function demoRegions(): string[] {
  return [...new Set(DEMO_SUPPLIERS.flatMap((s) => Object.values(s.regions)))].sort();
}
