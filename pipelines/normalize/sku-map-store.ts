import type pg from 'pg';
import type { Supplier } from '../../connectors/registry/loader.js';
import { query } from '../core/pg.js';
import { SizeCatalog } from '../catalog/catalog.js';
import { CatalogStore } from '../catalog/store.js';
import type { Logger } from '../core/logger.js';
import { compileMapping, type CompiledMapping, type MappingInputs } from './mapping.js';
import { SkuTable, type SkuMapEntry } from './sku-table.js';

/** Suppliers whose SKU mapping lives in `cellar.sku_map`. */
export function tableMappedSuppliers(suppliers: Supplier[]): string[] {
  return suppliers.filter((s) => typeof s.mapping.skus === 'object' && 'table' in s.mapping.skus).map((s) => s.id);
}

/** Loads `cellar.sku_map` rows of the given suppliers: supplier id → entries. */
export async function loadSkuMaps(pool: pg.Pool, supplierIds: string[]): Promise<Map<string, SkuMapEntry[]>> {
  const out = new Map<string, SkuMapEntry[]>(supplierIds.map((id) => [id, []]));
  if (supplierIds.length === 0) return out;
  const { rows } = await query<{ supplier_id: string; supplier_sku: string; sku: string; vintage: number | null; bottle_size_ml: number | null }>(
    pool,
    'reading cellar.sku_map',
    'SELECT supplier_id, supplier_sku, sku, vintage, bottle_size_ml FROM cellar.sku_map WHERE supplier_id = ANY($1::text[])',
    [supplierIds],
  );
  for (const r of rows) {
    out.get(r.supplier_id)!.push({ supplierSku: r.supplier_sku, sku: r.sku, ...(r.vintage === null ? {} : { vintage: r.vintage }), ...(r.bottle_size_ml === null ? {} : { bottleSizeMl: r.bottle_size_ml }) });
  }
  return out;
}

/**
 * What every runtime's mappings read from Cellar's database, kept in step with it: the `cellar.sku_map`
 * rows of the suppliers that use it and the catalog of bottle sizes, re-read every `refreshMs`. The
 * compiled mappings hold these objects, so refreshed rows apply without a restart.
 */
export class MappingInputsStore {
  readonly catalog: SizeCatalog;
  private readonly catalogStore: CatalogStore;
  private readonly tables = new Map<string, SkuTable>();
  private tableMapped: string[] = [];

  /**
   * @param opts.cachedSizes pinned bottle sizes kept in memory (a runtime's normalizer: its
   *   `CELLAR_STATE_CACHE_CONTRIBUTORS`); without it every pinned size is read and kept.
   */
  constructor(private readonly pool: pg.Pool, suppliers: Supplier[], opts: { cachedSizes?: number } = {}) {
    this.catalog = new SizeCatalog([], opts.cachedSizes ?? Infinity);
    this.catalogStore = new CatalogStore(pool, this.catalog);
    this.track(suppliers);
  }

  /** Follows a reloaded registry: suppliers newly mapped by `cellar.sku_map` get their table (read by the next load). */
  track(suppliers: Supplier[]): void {
    this.tableMapped = tableMappedSuppliers(suppliers);
    for (const id of this.tableMapped) if (!this.tables.has(id)) this.tables.set(id, new SkuTable());
  }

  /** Reads the SKU map rows and the catalog (again). */
  async load(): Promise<void> {
    const maps = await loadSkuMaps(this.pool, this.tableMapped);
    for (const [id, entries] of maps) this.tables.get(id)!.replace(entries);
    await this.catalogStore.load();
  }

  /** The inputs of one supplier's mapping. */
  inputsFor(supplierId: string): MappingInputs {
    return { skuTable: this.tables.get(supplierId), catalog: this.catalog };
  }

  /** Compiles a supplier's mapping over these inputs. */
  compile(supplier: Supplier): CompiledMapping {
    return compileMapping(supplier, this.inputsFor(supplier.id));
  }

  /** Persists sizes pinned since the last call; returns how many lost to another process's pin. */
  flushPins(): Promise<number> {
    return this.catalogStore.flush();
  }

  /** Re-reads everything every `ms`; a failed read keeps the previous rows. Returns a stop function. */
  refreshEvery(ms: number, log: Logger): () => void {
    const timer = setInterval(() => {
      this.load().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'refreshing cellar.sku_map and cellar.catalog failed; keeping the previous rows'));
    }, ms);
    timer.unref();
    return () => clearInterval(timer);
  }
}
