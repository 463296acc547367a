import type { Command } from 'commander';
import { ConfigError } from '../core/errors.js';

/**
 * `cellar feed push --supplier X file.csv`: for operators of a file-feed supplier. The file is read as the
 * runtime will read it (every problem printed with its line), then dropped into the supplier's folder
 * under a name its pattern matches (written aside and renamed, so it is never read half-written). It then
 * waits (`--wait`, through Cellar's database) until the running runtime (embedded, or `cellar run capture`)
 * has applied it, or held it back, and prints what it did. Exit 0 applied, 1 held back or not applied in time,
 * 2 the file or supplier cannot be used.
 */
export function registerFeedCommands(program: Command): void {
  const feed = program.command('feed').description('file-feed suppliers (source.kind csv with source.feed)');
  feed
    .command('push')
    .description('check a CSV file and drop it into a file-feed supplier\'s folder, then wait until the runtime applied it and print the outcome (exit 0 applied, 1 held back or not in time, 2 unusable)')
    .requiredOption('--supplier <id>', 'the file-feed supplier')
    .option('--wait <seconds>', 'how long to wait for the runtime to apply it (0: do not wait)', '60')
    .argument('<file>', 'the CSV file: the supplier\'s whole stock')
    .action(async (file: string, o: { supplier: string; wait: string }) => {
      const waitS = Number(o.wait);
      if (!Number.isFinite(waitS) || waitS < 0) throw new ConfigError(`cellar feed push: --wait: "${o.wait}" is not a number of seconds`);
      const [{ readFileSync, renameSync, writeFileSync }, { basename, join }, { loadRegistry }, { loadRuntimeConfig }, { readFeedFile }, { contentHash }, { matchesPattern }] = await Promise.all([
        import('node:fs'), import('node:path'), import('../../connectors/registry/loader.js'), import('../core/config.js'), import('../../connectors/feed/source.js'), import('../../connectors/feed/fetch.js'), import('../../connectors/feed/config.js'),
      ]);
      const env = loadRuntimeConfig();
      const supplier = loadRegistry(env.suppliersDir).find((s) => s.id === o.supplier);
      if (!supplier) throw new ConfigError(`cellar feed push: no supplier "${o.supplier}" in ${env.suppliersDir}`);
      const f = supplier.source.feed;
      if (supplier.source.kind !== 'csv' || !f) throw new ConfigError(`cellar feed push: ${supplier.file}: ${o.supplier} is not a file feed (source.kind csv with source.feed)`);
      if (f.path === undefined) throw new ConfigError(`cellar feed push: ${o.supplier} reads its file from an address (source.feed.url); publish the file there`);
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch (err) {
        throw new ConfigError(`cellar feed push: ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      const parsed = await readFeedFile(bytes, f).catch((err: unknown) => {
        throw new ConfigError(`cellar feed push: ${file}: not a readable spreadsheet: ${(err as Error).message}`);
      });
      const key = supplier.source.tables[0]!.key ?? [];
      const missing = key.filter((k) => !parsed.header.includes(k));
      if (missing.length) throw new ConfigError(`cellar feed push: ${file}: the header has no key column ${missing.join(', ')} (header: ${parsed.header.join(', ') || 'empty'})`);
      console.log(`${file}: ${parsed.rows.length} rows, ${parsed.delimiter === 'xlsx' ? 'a spreadsheet' : `delimiter ${JSON.stringify(parsed.delimiter)}, ${parsed.encoding}`}${parsed.errors.length ? `; ${parsed.errors.length} lines will be dead-lettered:` : ''}`);
      for (const e of parsed.errors.slice(0, 20)) console.log(`  line ${e.line}: ${e.message}`);
      if (parsed.errors.length > 20) console.log(`  … and ${parsed.errors.length - 20} more`);
      const stamp = new Date().toISOString().replace(/[-:.]/g, '');
      const base = basename(file);
      const name = matchesPattern(`${stamp}-${base}`, f.pattern) ? `${stamp}-${base}` : f.pattern.replace('*', `${stamp}-push`);
      const tmp = join(f.path, `.${name}.partial`);
      writeFileSync(tmp, bytes);
      renameSync(tmp, join(f.path, name));
      if (f.schedule) {
        const { msToNextRun } = await import('../core/cron.js');
        const next = new Date(Math.round((Date.now() + msToNextRun(f.schedule, f.timezone)) / 1000) * 1000).toISOString();
        console.log(`dropped as ${join(f.path, name)}; the runtime reads the folder on ${o.supplier}'s schedule "${f.schedule}" (${f.timezone}): next at ${next}`);
        if (waitS === 0 || Date.now() + waitS * 1000 < Date.parse(next)) {
          if (waitS > 0) console.log('not waiting: the next scheduled check is after --wait; see cellar status then');
          return;
        }
      } else console.log(`dropped as ${join(f.path, name)}; the runtime checks the folder every ${f.checkEveryMs / 1000} s`);
      if (waitS === 0) return;
      const { waitForFeedFile } = await import('./feed-wait.js');
      process.exitCode = await waitForFeedFile(env.pgUrl, o.supplier, contentHash(bytes), name, waitS, (l) => console.log(l));
    });
}
