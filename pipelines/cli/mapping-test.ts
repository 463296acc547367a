import { readFileSync } from 'node:fs';
import { loadSupplierFile, type Supplier } from '../../connectors/registry/loader.js';
import { SizeCatalog, parseCatalogCsv } from '../catalog/catalog.js';
import { ConfigError } from '../core/errors.js';
import type { MappingInputs } from '../normalize/mapping.js';
import { runMappingTest } from '../normalize/mapping-test.js';
import { parseSkuMapCsv, SkuTable } from '../normalize/sku-table.js';

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/**
 * The SKU map rows and catalog a mapping test uses: from `--sku-map` and `--catalog` files when given;
 * otherwise, when the supplier needs `cellar.sku_map` rows or `CELLAR_PG_URL` is set, from Cellar's
 * database; otherwise none (each unlisted SKU's first size is pinned in memory, as the pipeline does).
 */
async function inputsOf(opts: { skuMap?: string; catalog?: string }, supplier: Supplier): Promise<MappingInputs> {
  const fromFiles: MappingInputs = {
    ...(opts.skuMap ? { skuTable: new SkuTable(parseSkuMapCsv(readText(opts.skuMap, 'SKU map'), opts.skuMap)) } : {}),
    ...(opts.catalog ? { catalog: new SizeCatalog(parseCatalogCsv(readText(opts.catalog, 'catalog'), opts.catalog).map((e) => ({ ...e, origin: 'import' as const, firstSupplier: null }))) } : {}),
  };
  // tableMappedSuppliers' test (normalize/sku-map-store.ts), without loading the database client for it.
  const tableMapped = typeof supplier.mapping.skus === 'object' && 'table' in supplier.mapping.skus;
  const needDb = (tableMapped && !opts.skuMap) || (!opts.catalog && process.env.CELLAR_PG_URL);
  if (!needDb) return fromFiles;
  // Only now the database client: a test from files alone starts without it.
  const [{ createPgPool }, { loadRuntimeConfig }, { MappingInputsStore }] = await Promise.all([import('../core/pg.js'), import('../core/config.js'), import('../normalize/sku-map-store.js')]);
  const pool = createPgPool(loadRuntimeConfig().pgUrl);
  try {
    const store = new MappingInputsStore(pool, [supplier]);
    await store.load();
    const db = store.inputsFor(supplier.id);
    return { skuTable: fromFiles.skuTable ?? db.skuTable, catalog: fromFiles.catalog ?? db.catalog };
  } finally {
    await pool.end();
  }
}

/** `cellar mapping test --file`: prints one JSON line per event and a summary on stderr; returns the exit code. */
export async function mappingTestCommand(opts: { file: string; events: string; skuMap?: string; catalog?: string }): Promise<number> {
  const supplier = loadSupplierFile(opts.file);
  const text = readText(opts.events, 'events file');
  const inputs = await inputsOf(opts, supplier);
  const results = runMappingTest(supplier, text, inputs);
  for (const r of results) process.stdout.write(`${JSON.stringify(r)}\n`);
  const count = (s: string) => results.filter((r) => r.status === s).length;
  const rejected = count('rejected');
  process.stderr.write(`${supplier.id}: ${results.length} events, ${count('accepted')} accepted, ${count('ignored')} ignored (tombstones, stale), ${rejected} rejected\n`);
  return rejected === 0 ? 0 : 1;
}
