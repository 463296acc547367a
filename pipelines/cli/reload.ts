import type { Command } from 'commander';
import { ConfigError } from '../core/errors.js';
import type { ControlAnswer } from '../state/control.js';
import { actorOf } from './actor.js';

/**
 * `cellar reload`: checks the supplier files here first (every problem named, exit 2), then asks every
 * running process of this database that reads them (the embedded runtime; in the Kafka runtime each
 * normalizer and each `cellar run capture`) to read them and `cellar.sku_map` again, and reports each
 * answer: what it added, removed and changed (exit 0), or why it rejected them, keeping its configuration
 * (exit 1 if any did); exit 3 when no process answered in time, or one that was taking requests did not
 * (named).
 */
export function registerReloadCommand(program: Command): void {
  program
    .command('reload')
    .description('make the running runtime (embedded, or the Kafka runtime\'s normalizers and captures) read the supplier files and SKU maps again, without a restart (as SIGHUP does); exit 0 applied, 1 rejected, 2 the files have problems, 3 no process answered')
    .option('--wait <seconds>', 'how long to wait for every running process to answer', '30')
    .action(async (o: { wait: string }) => {
      const waitS = Number(o.wait);
      if (!Number.isFinite(waitS) || waitS <= 0) throw new ConfigError(`cellar reload: --wait: "${o.wait}" is not a positive number of seconds`);
      const [{ loadRegistry }, { loadRuntimeConfig }, { createPgPool }, { sleep }, { activeListeners, requestAnswers, requestReload }, { RELOAD_POLL_MS }] = await Promise.all([
        import('../../connectors/registry/loader.js'), import('../core/config.js'), import('../core/pg.js'), import('../core/retry.js'), import('../state/control.js'), import('../runtime/reload.js'),
      ]);
      /** A process that looked for requests this recently is expected to answer, ms (ten of its polls). */
      const LISTENING_MS = 10 * RELOAD_POLL_MS;
      const cfg = loadRuntimeConfig();
      const suppliers = loadRegistry(cfg.suppliersDir); // throws ConfigError naming every problem: nothing is asked
      const pool = createPgPool(cfg.pgUrl, { max: 1 });
      try {
        const id = await requestReload(pool, actorOf());
        // Whom to wait for: every process that looked for requests lately (an idle one looks every second).
        const expected = await activeListeners(pool, LISTENING_MS);
        const until = Date.now() + waitS * 1000;
        let answers: ControlAnswer[] = [];
        const missing = () => expected.filter((n) => !answers.some((a) => a.answeredBy === n));
        while (Date.now() < until) {
          answers = await requestAnswers(pool, id);
          if (answers.length && !missing().length) break;
          await sleep(250);
        }
        if (!answers.length) {
          console.log(`no process answered reload request ${id} within ${waitS} s: is \`cellar run embedded\` (or a Kafka-runtime normalizer or capture) running against this database? Each reads the files when it starts; SIGHUP reloads one directly`);
          process.exitCode = 3;
          return;
        }
        const list = (xs: string[]) => (xs.length ? xs.join(', ') : 'none');
        for (const { answeredBy, outcome: r } of answers) {
          if (!r.ok) {
            console.log(`rejected by ${answeredBy}; it keeps its running configuration:\n${r.error}`);
            process.exitCode = 1;
          } else {
            console.log(`reloaded by ${answeredBy}: ${suppliers.length} supplier files; added ${list(r.added)}; removed ${list(r.removed)}; changed ${list(r.changed)}${r.skipped.length ? `; not read natively ${list(r.skipped)}` : ''}`);
          }
        }
        for (const name of missing()) {
          console.log(`${name} did not answer within ${waitS} s (it was taking requests ${LISTENING_MS / 1000} s before): check its log`);
          process.exitCode ??= 3;
        }
      } finally {
        await pool.end();
      }
    });
}
