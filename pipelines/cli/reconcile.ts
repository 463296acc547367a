import { Option, type Command } from 'commander';
import { ConfigError } from '../core/errors.js';
import { formatTable } from './format.js';

/** `cellar reconcile` and `cellar reconcile runs`. */
export function registerReconcileCommands(program: Command): void {
  const cmd = program
    .command('reconcile')
    .description('compare suppliers\' rows with what Cellar materialized (contributions, regional totals, Redis); exit 0 clean or repaired, 1 drift left, 2 bad flags or configuration, 3 a supplier could not be reconciled')
    .option('--supplier <id>', 'one supplier (default: every Postgres, MySQL and MariaDB supplier)')
    .option('--repair', 'correct the drift through the pipeline, then check each correction took effect')
    .option('--orphans', 'with --supplier, also look for totals and Redis fields at keys no contributor of any supplier was counted under (always done without --supplier)')
    .addOption(new Option('--settle <ms>', 'wait before each re-check of a difference; longer than the pipeline\'s lag').default('3000'))
    .addOption(new Option('--rounds <n>', 're-checks before a difference counts as drift').default('3'))
    .addOption(new Option('--verify-timeout <ms>', 'with --repair: how long to wait for the corrections to show before reporting them as not applied').default('30000'))
    .addOption(new Option('--via <path>', 'how corrections enter the pipeline: the embedded runtime\'s queue, the raw topics, or a Debezium incremental snapshot through the signal table').choices(['auto', 'queue', 'kafka', 'signal']).default('auto'))
    .action(async (opts: { supplier?: string; orphans?: boolean; repair?: boolean; settle: string; rounds: string; verifyTimeout: string; via: 'auto' | 'queue' | 'kafka' | 'signal' }) => {
      const settleMs = Number(opts.settle);
      const rounds = Number(opts.rounds);
      const verifyMs = Number(opts.verifyTimeout);
      if (!(verifyMs >= 0 && verifyMs <= 3_600_000)) throw new ConfigError(`--verify-timeout ${opts.verifyTimeout}: expected milliseconds between 0 and 3600000`);
      if (!(settleMs >= 0 && settleMs <= 600_000)) throw new ConfigError(`--settle ${opts.settle}: expected milliseconds between 0 and 600000`);
      if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 20)) throw new ConfigError(`--rounds ${opts.rounds}: expected 1 to 20`);
      const [{ loadRuntimeConfig }, { createLogger }, { logLevelOr }, { Reconciler }, { formatReport, num }] = await Promise.all([
        import('../core/config.js'), import('../core/logger.js'), import('../core/process-env.js'), import('../reconcile/runner.js'), import('./reconcile-report.js'),
      ]);
      const cfg = loadRuntimeConfig();
      const reconciler = new Reconciler(cfg, createLogger('reconcile', logLevelOr('warn')));
      let last = 0;
      const failures: Array<{ supplierId: string; error: Error }> = [];
      try {
        await reconciler.prepare().catch((err: unknown) => failures.push({ supplierId: '(Cellar\'s stores)', error: err as Error }));
        const reports = failures.length ? [] : await reconciler.run({
          failures,
          ...(opts.supplier ? { supplierId: opts.supplier } : {}), orphans: Boolean(opts.orphans), repair: Boolean(opts.repair), settleMs, rounds, verifyMs, via: opts.via,
          onProgress: (p) => {
            if (Date.now() - last < (process.stderr.isTTY ? 500 : 5000)) return;
            last = Date.now();
            process.stderr.write(`${process.stderr.isTTY ? '\r' : ''}${p.supplierId}: ${p.phase}, ${num(p.rowsCompared)} rows compared${process.stderr.isTTY ? '\x1b[K' : '\n'}`);
          },
        });
        if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
        for (const r of reports) console.log(formatReport(r));
        for (const f of failures) console.error(`${f.supplierId}: could not reconcile: ${f.error.message}`);
        if (!reports.length && !failures.length) console.log('no supplier Cellar can read (Postgres, MySQL, MariaDB) in the registry');
        // Not being able to look is worse than what a look found: 3 wins over 1.
        process.exitCode = failures.length ? 3 : reports.some((r) => r.outcome === 'drift') ? 1 : 0;
      } finally {
        await reconciler.close();
      }
    });
  cmd
    .command('runs')
    .description('recent reconciliation runs')
    .option('--supplier <id>', 'one supplier')
    .option('--limit <n>', 'rows', '20')
    .action(async (opts: { supplier?: string; limit: string }, runs: Command) => {
      // `reconcile` has its own --supplier, and commander gives a parent's option to the parent even when it
      // comes after `runs`: take it from there too, or the filter would be silently dropped.
      const supplier = opts.supplier ?? runs.parent?.opts<{ supplier?: string }>().supplier;
      const limit = Number(opts.limit);
      if (!/^\d+$/.test(opts.limit.trim()) || limit < 1 || limit > 10_000) throw new ConfigError(`--limit ${JSON.stringify(opts.limit)}: expected a number of runs from 1 to 10000`);
      const [{ loadRuntimeConfig }, { createPgPool }, { listRuns }] = await Promise.all([import('../core/config.js'), import('../core/pg.js'), import('../state/runs.js')]);
      const pool = createPgPool(loadRuntimeConfig().pgUrl, { max: 1 });
      try {
        const rows = await listRuns(pool, { ...(supplier !== undefined ? { supplierId: supplier } : {}), limit });
        if (!rows.length) {
          console.log(supplier !== undefined ? `no reconciliation runs for supplier ${supplier}` : 'no reconciliation runs yet');
          return;
        }
        console.log(formatTable(['run', 'supplier', 'started', 'seconds', 'rows', 'drifted', 'repaired', 'unsettled', 'outcome'], rows.map((r) => [
          r.id, r.supplierId, r.startedAt.toISOString(), r.finishedAt ? ((r.finishedAt.getTime() - r.startedAt.getTime()) / 1000).toFixed(1) : '-', r.rowsCompared, r.driftedKeys, r.repaired, r.unsettled, r.outcome,
        ])));
      } finally {
        await pool.end();
      }
    });
}
