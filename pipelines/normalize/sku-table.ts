import type { SkuMapEntry } from '../../connectors/registry/schema.js';
import { ConfigError } from '../core/errors.js';

export type { SkuMapEntry };

/** Finds the canonical SKU of a supplier SKU, given the row's vintage and bottle size. */
export interface SkuResolver {
  /** The canonical SKU, or undefined when nothing maps this (supplier SKU, vintage, size). */
  resolve(supplierSku: string, vintage: number | null, bottleSizeMl: number): string | undefined;
  /** What a row must carry to be mapped, for messages: e.g. `supplier SKU, bottle size`. */
  readonly keyedBy: string;
}

const SEP = '\u0000';
const keyOf = (supplierSku: string, vintage: number | null | undefined, size: number | null | undefined) =>
  `${supplierSku}${SEP}${vintage ?? ''}${SEP}${size ?? ''}`;

/**
 * SKU map entries keyed by supplier SKU and optionally vintage and bottle size. The most specific entry
 * that matches wins: (sku, vintage, size), then (sku, size), then (sku, vintage), then (sku). Entries can
 * be replaced in place (`cellar.sku_map` rows re-read while running).
 */
export class SkuTable implements SkuResolver {
  /** Entries keyed by supplier SKU, vintage and size (see keyOf), but those keyed by supplier SKU alone. */
  private entries = new Map<string, string>();
  /** Entries keyed by supplier SKU alone: looked up with the row's own string, no key to build. */
  private plain = new Map<string, string>();
  private sized = false;
  private vintaged = false;

  constructor(entries: Iterable<SkuMapEntry> = []) {
    this.replace(entries);
  }

  get keyedBy(): string {
    return ['supplier SKU', ...(this.vintaged ? ['vintage'] : []), ...(this.sized ? ['bottle size'] : [])].join(', ');
  }

  /** Number of entries. */
  get size(): number {
    return this.entries.size + this.plain.size;
  }

  /** Replaces every entry. A later duplicate of the same (sku, vintage, size) wins. */
  replace(entries: Iterable<SkuMapEntry>): void {
    const next = new Map<string, string>();
    const plain = new Map<string, string>();
    let sized = false;
    let vintaged = false;
    for (const e of entries) {
      if ((e.vintage ?? null) === null && (e.bottleSizeMl ?? null) === null) plain.set(e.supplierSku, e.sku);
      else next.set(keyOf(e.supplierSku, e.vintage, e.bottleSizeMl), e.sku);
      sized ||= e.bottleSizeMl !== undefined;
      vintaged ||= e.vintage !== undefined;
    }
    this.entries = next;
    this.plain = plain;
    this.sized = sized;
    this.vintaged = vintaged;
  }

  resolve(supplierSku: string, vintage: number | null, bottleSizeMl: number): string | undefined {
    if (!this.sized && !this.vintaged) return this.plain.get(supplierSku);
    return (
      (vintage !== null && this.sized && this.vintaged ? this.entries.get(keyOf(supplierSku, vintage, bottleSizeMl)) : undefined) ??
      (this.sized ? this.entries.get(keyOf(supplierSku, null, bottleSizeMl)) : undefined) ??
      (vintage !== null && this.vintaged ? this.entries.get(keyOf(supplierSku, vintage, null)) : undefined) ??
      this.plain.get(supplierSku)
    );
  }
}

/**
 * Builds canonical SKUs from a template over the row's mapped fields: `{sku}` (the supplier SKU),
 * `{vintage}` and `{bottleSizeMl}`, e.g. `{sku}-{vintage}-{bottleSizeMl}`. A row without a vintage maps
 * to nothing when the template needs one.
 */
export class SkuTemplate implements SkuResolver {
  readonly keyedBy: string;
  private readonly parts: Array<string | 'sku' | 'vintage' | 'bottleSizeMl'>;
  private readonly literal: boolean[];

  constructor(readonly template: string) {
    this.parts = [];
    this.literal = [];
    let last = 0;
    for (const m of template.matchAll(/\{(sku|vintage|bottleSizeMl)\}/g)) {
      if (m.index > last) (this.parts.push(template.slice(last, m.index)), this.literal.push(true));
      this.parts.push(m[1]!);
      this.literal.push(false);
      last = m.index + m[0].length;
    }
    if (last < template.length) (this.parts.push(template.slice(last)), this.literal.push(true));
    this.keyedBy = `template ${template}`;
  }

  resolve(supplierSku: string, vintage: number | null, bottleSizeMl: number): string | undefined {
    let out = '';
    for (let i = 0; i < this.parts.length; i++) {
      const p = this.parts[i]!;
      if (this.literal[i]) out += p;
      else if (p === 'sku') out += supplierSku;
      else if (p === 'bottleSizeMl') out += String(bottleSizeMl);
      else if (vintage === null) return undefined;
      else out += String(vintage);
    }
    return /[\s|]/.test(out) ? undefined : out;
  }
}

const COLUMNS: Record<string, keyof SkuMapEntry> = {
  supplier_sku: 'supplierSku', suppliersku: 'supplierSku', canonical_sku: 'sku', canonicalsku: 'sku', sku: 'sku',
  vintage: 'vintage', bottle_size_ml: 'bottleSizeMl', bottlesizeml: 'bottleSizeMl', bottle_ml: 'bottleSizeMl',
};

/**
 * Parses a SKU map CSV: `supplier_sku,canonical_sku` per line, or with a header row naming the columns,
 * which may add `vintage` and `bottle_size_ml` (an empty cell: any). `#` lines are comments. Errors name
 * the file, line, column and bad value.
 */
export function parseSkuMapCsv(text: string, file: string): SkuMapEntry[] {
  const out: SkuMapEntry[] = [];
  let cols: Array<keyof SkuMapEntry> = ['supplierSku', 'sku'];
  const problems: string[] = [];
  let first = true;
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (!t || t.startsWith('#')) return;
    const cells = t.split(',').map((x) => x.trim());
    // The first line is a header when it names columns: all of them known, supplier SKU and canonical SKU among them.
    if (first) {
      first = false;
      const named = cells.map((c) => COLUMNS[c.toLowerCase()]);
      if (named.some((c) => c)) {
        const unknown = cells.filter((c) => !COLUMNS[c.toLowerCase()]);
        if (unknown.length) problems.push(`${file}:${i + 1}: unknown column ${unknown.map((c) => `"${c}"`).join(', ')}; allowed: supplier_sku, canonical_sku, vintage, bottle_size_ml`);
        else if (!named.includes('supplierSku') || !named.includes('sku')) problems.push(`${file}:${i + 1}: the header row must name supplier_sku and canonical_sku`);
        else cols = named as Array<keyof SkuMapEntry>;
        return;
      }
    }
    const e: Partial<SkuMapEntry> = {};
    cols.forEach((c, j) => {
      const v = cells[j] ?? '';
      if (c === 'vintage' || c === 'bottleSizeMl') {
        if (v === '') return;
        const n = /^\d+$/.test(v) ? Number(v) : NaN;
        const ok = Number.isInteger(n) && (c === 'vintage' ? n >= 1000 && n <= 9999 : n >= 1 && n <= 30000);
        if (!ok) problems.push(`${file}:${i + 1}: ${c === 'vintage' ? 'vintage' : 'bottle_size_ml'} "${v}" is not ${c === 'vintage' ? 'a year' : 'a bottle size in ml (1–30000)'}`);
        else e[c] = n;
      } else if (v) e[c] = v;
    });
    if (!e.supplierSku || !e.sku) problems.push(`${file}:${i + 1}: expected ${cols.join(',')} (supplier SKU and canonical SKU required)`);
    else if (/[\s|]/.test(e.sku)) problems.push(`${file}:${i + 1}: canonical SKU "${e.sku}" has a space or "|"`);
    else out.push(e as SkuMapEntry);
  });
  if (problems.length) throw new ConfigError(`SKU map ${file} has problems`, problems);
  return out;
}
