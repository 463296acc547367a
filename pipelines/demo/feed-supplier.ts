import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { between, canonicalSku, STANDARD_ML } from './catalog.js';
import type { Expected, Totals } from './verify.js';

/** One row of the feed supplier's stock: a code in a store, in bottles. */
interface FeedRow {
  code: string;
  store: string;
  bottles: number;
}

/** Wine indexes the feed supplier carries (750 ml bottles only). */
const CARRIES: [number, number] = [2000, 2300];

/**
 * The demo's file-feed supplier, Valley Estate: no database Cellar may read, only a whole-stock CSV export
 * (semicolons, decimal commas off, its own codes) dropped into a folder. The demo keeps its stock in memory,
 * drops a new file now and then (sales, receipts, rows dropped and added), once a truncated export that
 * Cellar must hold back, and computes the expected totals from the last complete file it dropped.
 */
export class DemoFeedSupplier {
  readonly id = 'valley-estate';
  readonly name = 'Valley Estate (no database: a CSV export dropped in a folder)';
  readonly regions: Record<string, string> = { NAPA: 'us-west', SONOMA: 'us-west', REIMS: 'eu-west' };
  readonly folder: string;
  private readonly rows = new Map<string, FeedRow>();
  private files = 0;
  /** Files dropped, complete and truncated. */
  readonly dropped = { complete: 0, truncated: 0 };

  constructor(work: string, private readonly rnd: () => number) {
    this.folder = join(work, 'valley-estate-exports');
    mkdirSync(this.folder, { recursive: true });
    const stores = Object.keys(this.regions);
    for (let i = CARRIES[0]; i < CARRIES[1]; i++) {
      const start = Math.floor(rnd() * stores.length);
      for (let k = 0; k < 1 + Math.floor(rnd() * 2); k++) this.put({ code: this.codeOf(i), store: stores[(start + k) % stores.length]!, bottles: between(rnd, [0, 120]) });
    }
  }

  /** Rows in its current stock. */
  get size(): number {
    return this.rows.size;
  }

  private codeOf(i: number): string {
    return `VE.${String(i).padStart(5, '0')}`;
  }

  private put(r: FeedRow): void {
    this.rows.set(`${r.code}|${r.store}`, r);
  }

  /** Its registry file: a csv source reading the folder every second, keyed by code and store. */
  writeSupplierFile(dir: string): void {
    const skus: Record<string, string> = {};
    for (let i = CARRIES[0]; i < CARRIES[1]; i++) skus[this.codeOf(i)] = canonicalSku(i);
    const doc = {
      id: this.id,
      name: this.name,
      source: { kind: 'csv', topicPrefix: 'valley', tables: [{ name: 'export.stock', key: ['code', 'store'] }], feed: { path: this.folder, pattern: 'stock-*.csv', checkEveryMs: 1000 } },
      mapping: { sku: 'code', warehouse: 'store', quantity: 'bottles', unit: 'bottles', skus: { inline: skus }, regions: this.regions },
    };
    writeFileSync(join(dir, `${this.id}.yaml`), `# Written by \`cellar demo\`: a supplier that only exports a CSV file into ${this.folder}.\n${stringify(doc)}`);
  }

  /** Some rows sold or received, a few dropped and a few new: what changed since the last export. */
  change(): void {
    const stores = Object.keys(this.regions);
    for (const r of this.rows.values()) {
      const roll = this.rnd();
      if (roll < 0.08) r.bottles = Math.max(0, r.bottles - between(this.rnd, [1, 6]));
      else if (roll < 0.12) r.bottles += between(this.rnd, [6, 36]);
      else if (roll < 0.13) this.rows.delete(`${r.code}|${r.store}`);
    }
    for (let k = 0; k < 5; k++) this.put({ code: this.codeOf(between(this.rnd, [CARRIES[0], CARRIES[1] - 1])), store: stores[Math.floor(this.rnd() * stores.length)]!, bottles: between(this.rnd, [1, 60]) });
  }

  /** Drops its whole stock as the next export (written aside, then renamed in). */
  drop(): string {
    return this.write([...this.rows.values()], 'complete');
  }

  /** Drops an export cut short after a few rows: Cellar must hold it back and keep the last complete one. */
  dropTruncated(): string {
    return this.write([...this.rows.values()].slice(0, 12), 'truncated');
  }

  private write(rows: FeedRow[], kind: 'complete' | 'truncated'): string {
    const name = `stock-${String(++this.files).padStart(4, '0')}.csv`;
    const text = ['code;store;bottles', ...rows.map((r) => `${r.code};${r.store};${r.bottles}`)].join('\n') + '\n';
    const tmp = join(this.folder, `.${name}.partial`);
    writeFileSync(tmp, text);
    renameSync(tmp, join(this.folder, name));
    this.dropped[kind]++;
    return name;
  }

  /** Adds its stock (as of the last complete export) to `totals`: region → canonical SKU → bottles. */
  addTo(totals: Totals): void {
    for (const r of this.rows.values()) {
      const region = this.regions[r.store]!;
      const sku = canonicalSku(Number(r.code.slice(3)));
      const m = totals.get(region) ?? new Map<string, Expected>();
      totals.set(region, m);
      m.set(sku, { bottles: (m.get(sku)?.bottles ?? 0) + r.bottles, bottleSizeMl: STANDARD_ML });
    }
  }
}
