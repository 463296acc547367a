import { ConfigError } from '../core/errors.js';

/** Where a canonical SKU's bottle size comes from: listed by an operator, or pinned when first seen. */
export type CatalogOrigin = 'import' | 'observed';

/** One canonical SKU of `cellar.catalog`: exactly one bottle size, optionally its vintage and name. */
export interface CatalogEntry {
  sku: string;
  bottleSizeMl: number;
  vintage: number | null;
  name: string | null;
  origin: CatalogOrigin;
  /** For observed entries: the supplier whose change pinned the size. */
  firstSupplier: string | null;
}

/** A size to pin for a SKU the catalog does not list yet. */
export interface CatalogPin {
  sku: string;
  bottleSizeMl: number;
  supplierId: string;
}

interface Known {
  ml: number;
  origin: CatalogOrigin;
  firstSupplier: string | null;
}

/**
 * Every canonical SKU's one bottle size, in memory: the listed entries of `cellar.catalog` (all of them),
 * and sizes pinned for SKUs it does not list (a cache of at most `maxObserved`, see
 * {@link SizeCatalog.trim}). Pure: the first size claimed for an unlisted SKU is pinned here at once and
 * queued ({@link SizeCatalog.takePending}) for the runtime to persist, so that every later row of that SKU
 * must have the same size, whichever supplier sends it. A pin dropped from the cache is claimed again
 * when its SKU comes back, and persisting that claim returns the size already pinned in Postgres (the
 * first writer wins), exactly as when another process pinned the SKU first.
 */
export class SizeCatalog {
  private listed = new Map<string, Known>();
  /** Pinned sizes, oldest first (insertion order): the first dropped by {@link SizeCatalog.trim}. */
  private readonly observed = new Map<string, Known>();
  private readonly pending = new Map<string, CatalogPin>();

  /**
   * @param entries the catalog's rows to start from (listed and pinned).
   * @param maxObserved pinned sizes kept in memory after a {@link SizeCatalog.trim} (default: all).
   */
  constructor(entries: Iterable<Pick<CatalogEntry, 'sku' | 'bottleSizeMl' | 'origin' | 'firstSupplier'>> = [], readonly maxObserved = Infinity) {
    this.replace(entries);
  }

  /** Number of SKUs with a size in memory (listed, and pinned ones still cached). */
  get size(): number {
    return this.listed.size + this.observed.size;
  }

  private lookup(sku: string): Known | undefined {
    return this.listed.get(sku) ?? this.observed.get(sku);
  }

  /** The SKU's bottle size, when listed or pinned (and still cached). */
  sizeOf(sku: string): number | undefined {
    return this.lookup(sku)?.ml;
  }

  /**
   * The bottle size in force for `sku`: its listed or pinned size, or `bottleSizeMl`, which this call
   * pins when the SKU had none in memory.
   */
  claim(sku: string, bottleSizeMl: number, supplierId: string): number {
    const k = this.lookup(sku);
    if (k) return k.ml;
    this.observed.set(sku, { ml: bottleSizeMl, origin: 'observed', firstSupplier: supplierId });
    this.pending.set(sku, { sku, bottleSizeMl, supplierId });
    return bottleSizeMl;
  }

  /** Words for a message: where the SKU's size comes from. */
  describe(sku: string): string {
    const k = this.lookup(sku);
    if (!k) return 'not in the catalog';
    return k.origin === 'import' ? 'in the catalog' : `pinned when first seen${k.firstSupplier ? ` from ${k.firstSupplier}` : ''}; not in the catalog`;
  }

  /** True when sizes were pinned since the last {@link SizeCatalog.takePending}. */
  hasPending(): boolean {
    return this.pending.size > 0;
  }

  /** The pins made since the last call, to persist. */
  takePending(): CatalogPin[] {
    const out = [...this.pending.values()];
    this.pending.clear();
    return out;
  }

  /** Queues pins again whose persisting failed (they are retried with the next flush). */
  requeue(pins: CatalogPin[]): void {
    for (const p of pins) {
      if (this.listed.has(p.sku)) continue;
      if (!this.observed.has(p.sku)) this.observed.set(p.sku, { ml: p.bottleSizeMl, origin: 'observed', firstSupplier: p.supplierId });
      this.pending.set(p.sku, p);
    }
  }

  /** Sets one SKU's size (a persisted pin that another process won, an import). */
  set(sku: string, ml: number, origin: CatalogOrigin, firstSupplier: string | null = null): void {
    if (origin === 'import') {
      this.listed.set(sku, { ml, origin, firstSupplier });
      this.observed.delete(sku);
    } else if (!this.listed.has(sku)) {
      this.observed.set(sku, { ml, origin, firstSupplier });
    }
    this.pending.delete(sku);
  }

  /**
   * Replaces the listed entries with a fresh read of the catalog (`entries`: every row, or only the
   * listed ones when pinned sizes are cached). Pinned rows read are cached; pins not yet persisted are kept.
   */
  replace(entries: Iterable<Pick<CatalogEntry, 'sku' | 'bottleSizeMl' | 'origin' | 'firstSupplier'>>): void {
    const next = new Map<string, Known>();
    for (const e of entries) {
      if (e.origin === 'import') next.set(e.sku, { ml: e.bottleSizeMl, origin: e.origin, firstSupplier: e.firstSupplier });
      else this.observed.set(e.sku, { ml: e.bottleSizeMl, origin: e.origin, firstSupplier: e.firstSupplier });
    }
    for (const sku of next.keys()) {
      this.observed.delete(sku);
      this.pending.delete(sku);
    }
    this.listed = next;
  }

  /**
   * Drops the oldest cached pins beyond `maxObserved` (never one waiting to be persisted). Call it only
   * between batches: within a batch every size used stays in memory, so a batch normalized again after
   * its pins were persisted reads the winners. Returns how many were dropped.
   */
  trim(): number {
    let dropped = 0;
    for (const sku of this.observed.keys()) {
      if (this.observed.size <= this.maxObserved) break;
      if (this.pending.has(sku)) continue;
      this.observed.delete(sku);
      dropped++;
    }
    return dropped;
  }
}

/** Splits one CSV line; fields may be double-quoted (`"Château X, Grand Cru"`, `""` for a quote). */
export function splitCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') (cur += '"', i++);
      else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"' && cur.trim() === '') (quoted = true, cur = '');
    else if (c === ',') (out.push(cur.trim()), (cur = ''));
    else cur += c;
  }
  out.push(cur.trim());
  return out;
}

const CATALOG_COLUMNS = ['sku', 'bottle_size_ml', 'vintage', 'name'] as const;

/**
 * Parses a catalog CSV with a header row naming its columns: `sku` and `bottle_size_ml` (required),
 * `vintage` and `name` (optional). Every problem is collected and reported at once, each with the file,
 * line, column and bad value; a SKU listed twice with different sizes is a problem too.
 */
export function parseCatalogCsv(text: string, file: string): Array<Omit<CatalogEntry, 'origin' | 'firstSupplier'>> {
  const problems: string[] = [];
  const out = new Map<string, Omit<CatalogEntry, 'origin' | 'firstSupplier'> & { line: number }>();
  let cols: string[] | undefined;
  text.split(/\r?\n/).forEach((line, i) => {
    const at = `${file}:${i + 1}`;
    if (!line.trim() || line.trimStart().startsWith('#')) return;
    const cells = splitCsvLine(line);
    if (!cols) {
      cols = cells.map((c) => c.toLowerCase());
      const unknown = cols.filter((c) => !(CATALOG_COLUMNS as readonly string[]).includes(c));
      if (unknown.length) problems.push(`${at}: unknown column ${unknown.map((c) => `"${c}"`).join(', ')}; allowed: ${CATALOG_COLUMNS.join(', ')}`);
      for (const need of ['sku', 'bottle_size_ml']) if (!cols.includes(need)) problems.push(`${at}: the header row must name column "${need}" (columns: ${CATALOG_COLUMNS.join(', ')})`);
      return;
    }
    const get = (c: string) => cells[cols!.indexOf(c)] ?? '';
    const sku = get('sku');
    const whole = (v: string) => (/^\d+$/.test(v) ? Number(v) : NaN);
    const size = whole(get('bottle_size_ml'));
    const vraw = get('vintage');
    const vintage = vraw === '' ? null : whole(vraw);
    if (!sku || /[\s|]/.test(sku)) return void problems.push(`${at}: sku "${sku}" must be non-empty, without spaces or "|"`);
    if (!Number.isInteger(size) || size < 1 || size > 30000) return void problems.push(`${at}: bottle_size_ml "${get('bottle_size_ml')}" of ${sku} is not a bottle size in ml (a whole number, 1–30000)`);
    if (vintage !== null && !(Number.isInteger(vintage) && vintage >= 1000 && vintage <= 9999)) return void problems.push(`${at}: vintage "${vraw}" of ${sku} is not a year`);
    const prev = out.get(sku);
    if (prev && prev.bottleSizeMl !== size) return void problems.push(`${at}: ${sku} is listed again with ${size} ml (line ${prev.line} says ${prev.bottleSizeMl} ml); one canonical SKU has one bottle size`);
    out.set(sku, { sku, bottleSizeMl: size, vintage, name: get('name') || null, line: i + 1 });
  });
  if (!cols) problems.push(`${file}: empty; expected a header row "sku,bottle_size_ml,vintage,name" and one row per canonical SKU`);
  if (problems.length) throw new ConfigError(`catalog ${file} has problems`, problems);
  return [...out.values()].map(({ line: _l, ...e }) => e);
}
