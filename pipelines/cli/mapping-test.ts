import { readFileSync } from 'node:fs';
import { loadSupplierFile } from '../../connectors/registry/loader.js';
import { createPgPool } from '../../sinks/postgres/pool.js';
import { loadRuntimeConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import { runMappingTest } from '../normalize/mapping-test.js';
import { loadSkuMaps, tableMappedSuppliers } from '../normalize/sku-map-store.js';

function readCsvMap(file: string): Map<string, string> {
  const map = new Map<string, string>();
  readFileSync(file, 'utf8').split(/\r?\n/).forEach((l, i) => {
    const [a, b] = l.split(',').map((x) => x.trim());
    if (!a || a.startsWith('#') || (i === 0 && /supplier_?sku/i.test(a))) return;
    if (!b) throw new ConfigError(`${file}:${i + 1}: expected "supplier_sku,canonical_sku"`);
    map.set(a, b);
  });
  return map;
}

/** `cellar mapping test`: prints one JSON line per event and a summary on stderr; returns the exit code. */
export async function mappingTestCommand(opts: { supplier: string; events: string; skuMap?: string }): Promise<number> {
  const supplier = loadSupplierFile(opts.supplier);
  let text: string;
  try {
    text = readFileSync(opts.events, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read events file ${opts.events}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let tableSkus: Map<string, string> | undefined;
  if (tableMappedSuppliers([supplier]).length) {
    if (opts.skuMap) tableSkus = readCsvMap(opts.skuMap);
    else {
      const pool = createPgPool(loadRuntimeConfig().pgUrl);
      try {
        tableSkus = (await loadSkuMaps(pool, [supplier.id])).get(supplier.id);
      } finally {
        await pool.end();
      }
    }
  }
  const results = runMappingTest(supplier, text, tableSkus);
  for (const r of results) process.stdout.write(`${JSON.stringify(r)}\n`);
  const count = (s: string) => results.filter((r) => r.status === s).length;
  const rejected = count('rejected');
  process.stderr.write(`${supplier.id}: ${results.length} events, ${count('accepted')} accepted, ${count('ignored')} ignored (tombstones, stale), ${rejected} rejected\n`);
  return rejected === 0 ? 0 : 1;
}
