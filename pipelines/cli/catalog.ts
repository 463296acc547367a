import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { CatalogOrigin } from '../catalog/catalog.js';
import { ConfigError } from '../core/errors.js';
import { formatTable } from './format.js';

/** What the catalog commands run on, loaded when one runs (not for `cellar --help`). */
const load = () => Promise.all([import('../core/config.js'), import('../core/pg.js'), import('../catalog/store.js')]).then(([config, pg, store]) => ({ ...config, ...pg, ...store }));

const skus = (n: number) => `${n} SKU${n === 1 ? '' : 's'}`;

/** `cellar catalog import|list`: the canonical catalog, each canonical SKU with its one bottle size. */
export function registerCatalogCommands(program: Command): void {
  const catalog = program.command('catalog').description('the canonical catalog (cellar.catalog): every canonical SKU with its one bottle size');
  catalog
    .command('import')
    .description('load canonical SKUs from a CSV with a header row: sku,bottle_size_ml[,vintage][,name]; replaces sizes pinned when first seen')
    .argument('<file>', 'CSV file')
    .option('--dry-run', 'check the file and say what would change, write nothing')
    .option('--force', 'write even where live stock of a SKU has another size (that stock keeps counting until its rows change or a reconciliation repairs them)')
    .action(async (file: string, o: { dryRun?: boolean; force?: boolean }) => {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new ConfigError(`cannot read catalog file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      }
      const [{ parseCatalogCsv }, { migrate }, { loadRuntimeConfig, createPgPool, listCatalog, importCatalog }] = await Promise.all([import('../catalog/catalog.js'), import('../state/migrate.js'), load()]);
      const entries = parseCatalogCsv(text, file);
      const pool = createPgPool(loadRuntimeConfig().pgUrl);
      try {
        await migrate(pool);
        if (o.dryRun) {
          const current = new Map((await listCatalog(pool)).map((e) => [e.sku, e]));
          const changed = entries.filter((e) => current.get(e.sku)?.bottleSizeMl !== undefined && current.get(e.sku)!.bottleSizeMl !== e.bottleSizeMl);
          console.log(`${file}: ${skus(entries.length)}; ${entries.filter((e) => !current.has(e.sku)).length} new, ${changed.length} with another size than now${changed.length ? ` (${changed.slice(0, 20).map((e) => `${e.sku}: ${current.get(e.sku)!.bottleSizeMl} → ${e.bottleSizeMl} ml`).join(', ')})` : ''}; nothing written (--dry-run)`);
          return;
        }
        const r = await importCatalog(pool, entries, { force: o.force });
        if (r.conflicts.length) {
          console.error(`${r.conflicts.length}${r.conflicts.length >= 1000 ? '+' : ''} live contributions have another bottle size than ${file} gives their SKU:`);
          console.error(formatTable(['sku', 'catalog ml', 'counted ml', 'region', 'contributor'], r.conflicts.slice(0, 50).map((c) => [c.sku, c.catalogMl, c.bottleSizeMl, c.region, c.contributorId])));
          if (!r.written) {
            console.error('nothing written: map those rows to a canonical SKU of their own size (supplier mapping or cellar.sku_map), or correct the file; --force writes anyway');
            process.exitCode = 1;
            return;
          }
        }
        console.log(`${file}: ${skus(entries.length)} imported (${r.inserted} new, ${r.updated} changed, ${r.unchanged} unchanged); running pipelines apply it within CELLAR_SKU_MAP_REFRESH_MS`);
      } finally {
        await pool.end();
      }
    });
  catalog
    .command('list')
    .description('list canonical SKUs with their bottle size and where it comes from (import, or observed: pinned when first seen)')
    .addHelpText('after', '\nOrigin "observed": the SKU is not in an imported catalog; its size was pinned by the first row that used it.')
    .option('--origin <origin>', 'import | observed')
    .option('--prefix <sku>', 'only SKUs starting with this')
    .option('--limit <n>', 'at most this many', '1000')
    .option('--json', 'one JSON object per line')
    .action(async (o: { origin?: string; prefix?: string; limit: string; json?: boolean }) => {
      if (o.origin && o.origin !== 'import' && o.origin !== 'observed') throw new ConfigError(`--origin: "${o.origin}" is not one of import, observed`);
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new ConfigError(`--limit: "${o.limit}" is not a positive whole number`);
      const { loadRuntimeConfig, createPgPool, listCatalog } = await load();
      const pool = createPgPool(loadRuntimeConfig().pgUrl);
      try {
        const rows = await listCatalog(pool, { origin: o.origin as CatalogOrigin | undefined, prefix: o.prefix, limit });
        if (o.json) {
          for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
          return;
        }
        console.log(formatTable(['sku', 'bottle ml', 'vintage', 'name', 'origin', 'first seen from'], rows.map((r) => [r.sku, r.bottleSizeMl, r.vintage ?? '-', r.name ?? '-', r.origin, r.firstSupplier ?? '-'])));
        console.log(`${skus(rows.length)}${rows.length === limit ? ` (first ${limit}; --limit for more)` : ''}`);
      } finally {
        await pool.end();
      }
    });
}
