import type pg from 'pg';
import type { Supplier } from '../../connectors/registry/loader.js';
import { query } from '../../sinks/postgres/pool.js';

/** Suppliers whose SKU mapping lives in `cellar.sku_map`. */
export function tableMappedSuppliers(suppliers: Supplier[]): string[] {
  return suppliers.filter((s) => typeof s.mapping.skus === 'object' && 'table' in s.mapping.skus).map((s) => s.id);
}

/** Loads `cellar.sku_map` rows of the given suppliers: supplier id → (supplier SKU → canonical SKU). */
export async function loadSkuMaps(pool: pg.Pool, supplierIds: string[]): Promise<Map<string, Map<string, string>>> {
  const out = new Map<string, Map<string, string>>(supplierIds.map((id) => [id, new Map()]));
  if (supplierIds.length === 0) return out;
  const { rows } = await query<{ supplier_id: string; supplier_sku: string; sku: string }>(
    pool,
    'reading cellar.sku_map',
    'SELECT supplier_id, supplier_sku, sku FROM cellar.sku_map WHERE supplier_id = ANY($1::text[])',
    [supplierIds],
  );
  for (const r of rows) out.get(r.supplier_id)!.set(r.supplier_sku, r.sku);
  return out;
}
