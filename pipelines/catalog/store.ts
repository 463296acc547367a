import type pg from 'pg';
import { inTransaction, query } from '../core/pg.js';
import { CellarError } from '../core/errors.js';
import type { CatalogEntry, CatalogOrigin, CatalogPin, SizeCatalog } from './catalog.js';

interface Row {
  sku: string;
  bottle_size_ml: number;
  vintage: number | null;
  name: string | null;
  origin: CatalogOrigin;
  first_supplier: string | null;
}

const toEntry = (r: Row): CatalogEntry => ({
  sku: r.sku, bottleSizeMl: r.bottle_size_ml, vintage: r.vintage, name: r.name, origin: r.origin, firstSupplier: r.first_supplier,
});

/** Every row of `cellar.catalog`, optionally only one origin or SKUs starting with a prefix, by SKU. */
export async function listCatalog(pool: pg.Pool, f: { origin?: CatalogOrigin; prefix?: string; limit?: number } = {}): Promise<CatalogEntry[]> {
  const { rows } = await query<Row>(
    pool,
    'reading cellar.catalog',
    `SELECT sku, bottle_size_ml, vintage, name, origin, first_supplier FROM cellar.catalog
      WHERE ($1::text IS NULL OR origin = $1) AND ($2::text IS NULL OR starts_with(sku, $2))
      ORDER BY sku ${f.limit ? `LIMIT ${Math.max(1, Math.floor(f.limit))}` : ''}`,
    [f.origin ?? null, f.prefix ?? null],
  );
  return rows.map(toEntry);
}

/**
 * Persists pinned sizes of SKUs the catalog did not list; the first writer wins. Returns the size in
 * force for each pinned SKU (another process may have pinned a different one first).
 */
export async function persistPins(pool: pg.Pool, pins: CatalogPin[]): Promise<Map<string, { ml: number; origin: CatalogOrigin; firstSupplier: string | null }>> {
  const out = new Map<string, { ml: number; origin: CatalogOrigin; firstSupplier: string | null }>();
  if (pins.length === 0) return out;
  const { rows: inserted } = await query<Row>(
    pool,
    'pinning bottle sizes in cellar.catalog',
    `INSERT INTO cellar.catalog (sku, bottle_size_ml, origin, first_supplier)
     SELECT u.sku, u.ml, 'observed', u.sup FROM unnest($1::text[], $2::integer[], $3::text[]) AS u(sku, ml, sup)
     ORDER BY u.sku
     ON CONFLICT (sku) DO NOTHING
     RETURNING sku, bottle_size_ml, vintage, name, origin, first_supplier`,
    [pins.map((p) => p.sku), pins.map((p) => p.bottleSizeMl), pins.map((p) => p.supplierId)],
  );
  for (const r of inserted) out.set(r.sku, { ml: r.bottle_size_ml, origin: r.origin, firstSupplier: r.first_supplier });
  const others = pins.filter((p) => !out.has(p.sku)).map((p) => p.sku);
  if (others.length) {
    // A separate statement: its snapshot sees the rows that won a conflict with the insert above, which
    // may have committed after that statement's snapshot was taken.
    const { rows } = await query<Row>(pool, 'reading pinned bottle sizes', 'SELECT sku, bottle_size_ml, vintage, name, origin, first_supplier FROM cellar.catalog WHERE sku = ANY($1::text[])', [others]);
    for (const r of rows) out.set(r.sku, { ml: r.bottle_size_ml, origin: r.origin, firstSupplier: r.first_supplier });
  }
  return out;
}

/** A live contribution whose bottle size disagrees with the size an import would set. */
export interface CatalogConflict {
  sku: string;
  region: string;
  contributorId: string;
  bottleSizeMl: number;
  catalogMl: number;
}

/**
 * Imports catalog entries (origin `import`, replacing pinned sizes). A SKU whose live contributions have
 * another size than the import says is a conflict: nothing is written unless `force`, and the conflicts
 * are returned either way (forced, those contributions keep counting until their rows change or a
 * reconciliation repairs them).
 */
export async function importCatalog(
  pool: pg.Pool,
  entries: Array<Omit<CatalogEntry, 'origin' | 'firstSupplier'>>,
  opts: { force?: boolean } = {},
): Promise<{ inserted: number; updated: number; unchanged: number; conflicts: CatalogConflict[]; written: boolean }> {
  return inTransaction(pool, 'importing cellar.catalog', async (tx) => {
    const skus = entries.map((e) => e.sku);
    const sizes = entries.map((e) => e.bottleSizeMl);
    const { rows: conflicts } = await tx.query<{ sku: string; region: string; contributor_id: string; bottle_size_ml: number; want: number }>(
      `SELECT c.sku, c.region, c.contributor_id, c.bottle_size_ml, u.ml AS want
         FROM unnest($1::text[], $2::integer[]) AS u(sku, ml)
         JOIN cellar.stock_contributions c ON c.sku = u.sku AND NOT c.deleted AND c.bottle_size_ml IS NOT NULL AND c.bottle_size_ml <> u.ml
        ORDER BY c.sku, c.region, c.contributor_id LIMIT 1000`,
      [skus, sizes],
    );
    const { rows: before } = await tx.query<Row>('SELECT sku, bottle_size_ml, vintage, name, origin, first_supplier FROM cellar.catalog WHERE sku = ANY($1::text[])', [skus]);
    const old = new Map(before.map((r) => [r.sku, r]));
    let inserted = 0;
    let updated = 0;
    let unchanged = 0;
    for (const e of entries) {
      const o = old.get(e.sku);
      if (!o) inserted++;
      else if (o.bottle_size_ml === e.bottleSizeMl && o.vintage === e.vintage && o.name === e.name && o.origin === 'import') unchanged++;
      else updated++;
    }
    const out = {
      inserted, updated, unchanged, written: false,
      conflicts: conflicts.map((c) => ({ sku: c.sku, region: c.region, contributorId: c.contributor_id, bottleSizeMl: c.bottle_size_ml, catalogMl: c.want })),
    };
    if (conflicts.length && !opts.force) return out;
    await tx.query(
      `INSERT INTO cellar.catalog AS t (sku, bottle_size_ml, vintage, name, origin, first_supplier, updated_at)
       SELECT u.sku, u.ml, u.vintage, u.name, 'import', NULL, now()
         FROM unnest($1::text[], $2::integer[], $3::integer[], $4::text[]) AS u(sku, ml, vintage, name) ORDER BY u.sku
       ON CONFLICT (sku) DO UPDATE SET bottle_size_ml = excluded.bottle_size_ml, vintage = excluded.vintage, name = excluded.name,
         origin = 'import', first_supplier = NULL, updated_at = now()
       WHERE (t.bottle_size_ml, t.vintage, t.name, t.origin) IS DISTINCT FROM (excluded.bottle_size_ml, excluded.vintage, excluded.name, 'import')`,
      [skus, sizes, entries.map((e) => e.vintage), entries.map((e) => e.name)],
    );
    return { ...out, written: true };
  });
}

/**
 * Keeps a {@link SizeCatalog} in step with `cellar.catalog`: loads it, persists the sizes it pinned
 * (first writer wins across processes), and re-reads it (imports made while running). A catalog that
 * caches pinned sizes (a finite `maxObserved`) reads only the listed entries; pinned sizes come back
 * from Postgres when a flush persists a pin for a SKU that was pinned before.
 */
export class CatalogStore {
  constructor(private readonly pool: pg.Pool, readonly catalog: SizeCatalog) {}

  async load(): Promise<void> {
    const listedOnly = Number.isFinite(this.catalog.maxObserved);
    this.catalog.replace(await listCatalog(this.pool, listedOnly ? { origin: 'import' } : {}));
  }

  /**
   * Persists pending pins. Returns how many lost to a different size pinned by another process (the
   * catalog now holds the winners): work that used the losing sizes must be done again.
   */
  async flush(): Promise<number> {
    const pins = this.catalog.takePending();
    if (pins.length === 0) return 0;
    let won: Awaited<ReturnType<typeof persistPins>>;
    try {
      won = await persistPins(this.pool, pins);
    } catch (err) {
      this.catalog.requeue(pins);
      throw err;
    }
    const missing = pins.filter((p) => !won.has(p.sku));
    if (missing.length) {
      // Pinned by another process, then removed from the catalog before we could read it: pin again.
      this.catalog.requeue(pins);
      throw new CellarError('catalog_pin', `the bottle size of ${missing[0]!.sku} was pinned and removed at once; pinning again`, { retriable: true });
    }
    let lost = 0;
    for (const p of pins) {
      const w = won.get(p.sku)!;
      if (w.ml !== p.bottleSizeMl) lost++;
      this.catalog.set(p.sku, w.ml, w.origin, w.firstSupplier);
    }
    return lost;
  }
}
