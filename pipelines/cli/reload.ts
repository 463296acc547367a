import type { Command } from 'commander';
import { loadRegistry } from '../../connectors/registry/loader.js';
import { loadRuntimeConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import { createPgPool } from '../core/pg.js';
import { sleep } from '../core/retry.js';
import { requestOutcome, requestReload } from '../state/control.js';
import { actorOf } from './actor.js';

/**
 * `cellar reload`: checks the supplier files here first (every problem named, exit 2), then asks the
 * running embedded runtime of this database to read them and `cellar.sku_map` again, and reports what it
 * did: added, removed and changed suppliers (exit 0), or why it rejected them, keeping its configuration
 * (exit 1); exit 3 when no runtime took the request in time.
 */
export function registerReloadCommand(program: Command): void {
  program
    .command('reload')
    .description('make the running embedded runtime read the supplier files and SKU maps again, without a restart (as SIGHUP does); exit 0 applied, 1 rejected, 2 the files have problems, 3 no runtime answered')
    .option('--wait <seconds>', 'how long to wait for the runtime', '30')
    .action(async (o: { wait: string }) => {
      const waitS = Number(o.wait);
      if (!Number.isFinite(waitS) || waitS <= 0) throw new ConfigError(`cellar reload: --wait: "${o.wait}" is not a positive number of seconds`);
      const cfg = loadRuntimeConfig();
      const suppliers = loadRegistry(cfg.suppliersDir); // throws ConfigError naming every problem: nothing is asked
      const pool = createPgPool(cfg.pgUrl, { max: 1 });
      try {
        const id = await requestReload(pool, actorOf());
        const until = Date.now() + waitS * 1000;
        while (Date.now() < until) {
          const done = await requestOutcome(pool, id);
          if (done) {
            const { outcome: r } = done;
            if (!r.ok) {
              console.log(`rejected by ${done.handledBy}; it keeps its running configuration:\n${r.error}`);
              process.exitCode = 1;
              return;
            }
            const list = (xs: string[]) => (xs.length ? xs.join(', ') : 'none');
            console.log(`reloaded by ${done.handledBy}: ${suppliers.length} supplier files; added ${list(r.added)}; removed ${list(r.removed)}; changed ${list(r.changed)}${r.skipped.length ? `; not read natively ${list(r.skipped)}` : ''}`);
            return;
          }
          await sleep(250);
        }
        console.log(`no runtime took reload request ${id} within ${waitS} s: is \`cellar run embedded\` running against this database? (it applies the request when it starts; SIGHUP reloads a runtime directly)`);
        process.exitCode = 3;
      } finally {
        await pool.end();
      }
    });
}
