import type { Command } from 'commander';
import { ConfigError } from '../core/errors.js';
import { actorOf } from './actor.js';
import { formatTable } from './format.js';
import { withCellarDb } from './cellar-db.js';

/** Cellar's database and the stock event modules, loaded when a command runs (not for `cellar --help`). */
const load = () => Promise.all([import('../events/thresholds.js'), import('../events/log.js'), import('../events/derive.js'), import('../api/audit.js')])
  .then(([thresholds, log, derive, audit]) => ({ ...thresholds, ...log, ...derive, ...audit }));


const TYPES = ['sold_out', 'back_in_stock', 'low_stock'];

/**
 * `cellar thresholds list|set|remove` (low-stock rules in CELLAR_PG_URL's cellar.stock_thresholds; changes
 * audited) and `cellar events list` (the stock event log, oldest first, after a cursor; `--follow` waits
 * for new ones).
 */
export function registerStockEventCommands(program: Command): void {
  const t = program.command('thresholds').description('low-stock thresholds: a total crossing from above one to at most it is a low_stock event');
  t.command('list').description('every rule, by region and SKU pattern').option('--json', 'one JSON object per line').action(async (o: { json?: boolean }) => {
    await withCellarDb(load, async (m, pool) => {
      const rules = await m.listThresholds(pool);
      if (o.json) for (const r of rules) console.log(JSON.stringify(r));
      else if (!rules.length) console.log('no low-stock thresholds: only sold_out and back_in_stock events are derived');
      else console.log(formatTable(['region', 'sku pattern', 'threshold', 'updated'], rules.map((r) => [r.region, r.skuPattern, String(r.threshold), r.updatedAt])));
    });
  });
  t.command('set').description('create or replace the rule for a region (or * for all) and a SKU glob')
    .requiredOption('--sku <pattern>', 'a SKU or a glob, * matching any run of characters (e.g. "chateau-*-750")')
    .requiredOption('--threshold <bottles>', 'bottles: a total falling to at most this (above 0) is low')
    .option('--region <region>', 'a region, or * for every region', '*')
    .action(async (o: { sku: string; threshold: string; region: string }) => {
      await withCellarDb(load, async (m, pool) => {
        let rule;
        try {
          rule = m.checkThresholdRule({ region: o.region, skuPattern: o.sku, threshold: Number(o.threshold) }, { region: '--region', skuPattern: '--sku', threshold: '--threshold' });
        } catch (err) {
          throw new ConfigError((err as Error).message);
        }
        const created = await m.setThreshold(pool, rule);
        await m.recordAudit(pool, { actor: `cli:${actorOf()}`, action: 'thresholds.set', target: `${rule.region}/${rule.skuPattern}`, params: { threshold: rule.threshold }, outcome: 'ok' });
        console.log(`${created ? 'created' : 'updated'} low-stock threshold ${rule.threshold} for ${rule.skuPattern} in ${rule.region === '*' ? 'every region' : rule.region}; writers apply it within 5 s`);
      });
    });
  t.command('remove').description('remove the rule for a region and SKU pattern')
    .requiredOption('--sku <pattern>', 'the rule\'s SKU pattern, as listed')
    .option('--region <region>', 'the rule\'s region', '*')
    .action(async (o: { sku: string; region: string }) => {
      await withCellarDb(load, async (m, pool) => {
        if (!(await m.removeThreshold(pool, o.region, o.sku))) throw new ConfigError(`no low-stock threshold for region ${o.region} and SKU pattern ${o.sku} (cellar thresholds list shows them)`);
        await m.recordAudit(pool, { actor: `cli:${actorOf()}`, action: 'thresholds.remove', target: `${o.region}/${o.sku}`, params: {}, outcome: 'ok' });
        console.log(`removed the low-stock threshold for ${o.sku} in ${o.region === '*' ? 'every region' : o.region}`);
      });
    });

  program.command('events').description('stock events (sold out, back in stock, low stock)')
    .command('list').description('events of the log after a cursor, oldest first')
    .option('--after <cursor>', 'after this position (an event\'s cursor, as printed); default: the oldest kept')
    .option('--type <types...>', `only these types: ${TYPES.join(', ')}`)
    .option('--region <region>', 'only this region')
    .option('--sku-prefix <prefix>', 'only SKUs starting with this')
    .option('--limit <n>', 'at most this many (without --follow)', '100')
    .option('--follow', 'keep printing new events until interrupted')
    .option('--json', 'one JSON object per line')
    .action(async (o: { after?: string; type?: string[]; region?: string; skuPrefix?: string; limit: string; follow?: boolean; json?: boolean }) => {
      const bad = (o.type ?? []).filter((x) => !TYPES.includes(x));
      if (bad.length) throw new ConfigError(`--type ${bad.join(' ')}: expected ${TYPES.join(', ')}`);
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new ConfigError(`--limit ${o.limit}: expected a whole number above 0`);
      await withCellarDb(load, async (m, pool) => {
        let at = { xid: '0', seq: '-1' };
        try {
          if (o.after) at = m.parseCursor(o.after);
        } catch (err) {
          throw new ConfigError(`--after: ${(err as Error).message}`);
        }
        const filter = { ...(o.type ? { types: o.type as Array<'sold_out'> } : {}), ...(o.region ? { region: o.region } : {}), ...(o.skuPrefix ? { skuPrefix: o.skuPrefix } : {}) };
        let printed = 0;
        let stop = false;
        process.once('SIGINT', () => (stop = true));
        while (!stop) {
          const { events, cursor } = await m.readEventsAfter(pool, at, 500);
          for (const e of events) {
            if (!o.follow && printed >= limit) break;
            at = m.parseCursor(e.cursor);
            if (!m.matchesFilter(e, filter)) continue;
            printed++;
            console.log(o.json ? JSON.stringify({ ...e, sourceTs: new Date(e.sourceTsMs).toISOString() })
              : `${e.cursor}  ${e.type.padEnd(13)}  ${e.region}  ${e.sku}  v${e.version}  ${e.before} → ${e.after}${e.threshold !== null ? ` (threshold ${e.threshold})` : ''}  ${new Date(e.sourceTsMs).toISOString()}`);
          }
          if (!o.follow && printed >= limit) break;
          if (events.length < 500) {
            at = cursor;
            if (!o.follow) break;
            await new Promise((r) => setTimeout(r, 500));
          }
        }
        if (!o.follow && !o.json) console.error(`${printed} event(s); continue with --after ${at.xid}.${at.seq}`);
      });
    });
}
