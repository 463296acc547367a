import type { Command } from 'commander';
import type { Producer } from 'kafkajs';
import { actorOf } from './actor.js';
import { ConfigError } from '../core/errors.js';
import type { DeadLetterFilter, DeadLetterStatus } from '../state/dead-letters.js';
import { DEAD_LETTER_STATUSES } from '../core/names.js';
import { formatTable } from './format.js';

/** Cellar's database and its dead letters, loaded when a command runs (not for `cellar --help`). */
const load = () => Promise.all([import('../core/config.js'), import('../core/pg.js'), import('../state/dead-letters.js')]).then(([config, pg, letters]) => ({ ...config, ...pg, ...letters }));

interface FilterOpts {
  id?: string[];
  reason?: string;
  supplier?: string;
  stage?: string;
  pending?: boolean;
  status?: string;
  since?: string;
  until?: string;
  limit?: string;
}

/** The filter the flags give; every bad flag is named in one error (exit 2). */
function filterOf(o: FilterOpts): DeadLetterFilter {
  const problems: string[] = [];
  const ids = (o.id ?? []).map((x) => Number(x));
  if (ids.some((n) => !Number.isSafeInteger(n) || n < 1)) problems.push(`--id: ${o.id!.join(' ')}: ids are positive integers`);
  const time = (flag: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const rel = /^(\d+)([smhd])$/.exec(v);
    const t = rel ? new Date(Date.now() - Number(rel[1]) * { s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[rel[2] as 's']) : new Date(v);
    if (Number.isNaN(t.getTime())) problems.push(`${flag}: "${v}" is neither a time (2026-11-29T10:00Z) nor an age (30m, 2h, 7d)`);
    return t;
  };
  const since = time('--since', o.since);
  const until = time('--until', o.until);
  if (o.status && !(DEAD_LETTER_STATUSES as readonly string[]).includes(o.status)) problems.push(`--status: "${o.status}" is not one of ${DEAD_LETTER_STATUSES.join(', ')}`);
  const limit = o.limit === undefined ? undefined : Number(o.limit);
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) problems.push(`--limit: "${o.limit}" is not a positive integer`);
  if (problems.length) throw new ConfigError(`cellar dlq: ${problems.join('; ')}`);
  return {
    ...(ids.length ? { ids } : {}),
    reason: o.reason,
    supplierId: o.supplier,
    stage: o.stage,
    pending: o.pending,
    ...(o.status ? { status: o.status as DeadLetterStatus } : {}),
    ...(since ? { since } : {}),
    ...(until ? { until } : {}),
    limit,
  };
}

function withFilters(c: Command): Command {
  return c
    .option('--id <id...>', 'dead letter ids')
    .option('--reason <code>', 'reason code, e.g. unknown_sku')
    .option('--supplier <id>', 'supplier id')
    .option('--stage <stage>', 'source, normalizer, aggregator, sink-postgres, sink-redis')
    .option('--status <status>', 'pending, replayed or resolved')
    .option('--pending', 'only letters never replayed nor resolved (--status pending)')
    .option('--since <time>', 'filed at or after: a time (2026-11-29T10:00Z) or an age (30m, 2h, 7d)')
    .option('--until <time>', 'filed before: a time or an age')
    .option('--limit <n>', 'at most this many');
}

function preview(buf: Buffer | null): string {
  if (!buf) return '';
  const s = buf.toString('utf8');
  return (/^[\x20-\x7e\s]*$/.test(s.slice(0, 200)) ? s : `<${buf.length} bytes>`).replace(/\s+/g, ' ').slice(0, 80);
}

/** `cellar dlq list|held|replay|resolve`. */
export function registerDlqCommands(program: Command): void {
  const dlq = program.command('dlq').description('inspect and replay dead letters (cellar.dead_letters)');
  withFilters(dlq.command('list').description('list dead letters, newest first, with a count by reason'))
    .option('--json', 'one JSON object per line, with key and value in base64')
    .action(async (o: FilterOpts & { json?: boolean }) => {
      const { loadRuntimeConfig, createPgPool, listDeadLetters, deadLetterCounts } = await load();
      const pool = createPgPool(loadRuntimeConfig().pgUrl);
      try {
        const letters = await listDeadLetters(pool, filterOf(o));
        if (o.json) {
          for (const l of letters) process.stdout.write(`${JSON.stringify({ ...l, key: l.key?.toString('base64') ?? null, value: l.value?.toString('base64') ?? null })}\n`);
          return;
        }
        const counts = await deadLetterCounts(pool, filterOf(o));
        if (!counts.length) {
          console.log('no dead letters match');
          return;
        }
        console.log(formatTable(['stage', 'reason', 'total', 'pending', 'replayed', 'resolved'], counts.map((c) => [c.stage, c.reason, c.count, c.pending, c.replayed, c.resolved])));
        console.log('');
        console.log(
          formatTable(
            ['id', 'stage', 'reason', 'supplier', 'status', 'where', 'message', 'value'],
            letters.map((l) => [l.id, l.stage, l.reason, l.supplierId ?? '-', l.status + (l.replayOf ? ` (replay of ${l.replayOf})` : ''), l.topic ? `${l.topic}[${l.partition}]@${l.offset}` : (l.sourcePosition ?? '-'), l.message.slice(0, 70), preview(l.value)]),
          ),
        );
      } finally {
        await pool.end();
      }
    });
  dlq
    .command('held')
    .description('rows still counted at their last valid state because a newer change of theirs was dead-lettered')
    .option('--supplier <id>', 'only this supplier')
    .option('--limit <n>', 'rows to list', '50')
    .option('--json', 'one JSON object per line')
    .action(async (o: { supplier?: string; limit: string; json?: boolean }) => {
      const [{ loadRuntimeConfig, createPgPool }, { heldSummary, listHeld }] = await Promise.all([load(), import('../state/held.js')]);
      const pool = createPgPool(loadRuntimeConfig().pgUrl);
      try {
        const items = await listHeld(pool, { ...(o.supplier ? { supplierId: o.supplier } : {}), limit: Number(o.limit) || 50 });
        if (o.json) {
          for (const h of items) process.stdout.write(`${JSON.stringify(h)}\n`);
          return;
        }
        const summary = (await heldSummary(pool)).filter((h) => !o.supplier || h.supplierId === o.supplier);
        if (!summary.length) {
          console.log(`no held rows${o.supplier ? ` for ${o.supplier}` : ''}: every counted row is at its latest change`);
          return;
        }
        console.log(formatTable(['supplier', 'reason', 'rows', 'oldest since'], summary.map((h) => [h.supplierId, h.reason, h.count, new Date(h.oldestMs).toISOString()])));
        console.log('');
        console.log(formatTable(['contributor', 'counted at', 'reason', 'message'], items.map((h) => [h.contributorId, `${h.region}|${h.sku}`, h.reason, h.message.slice(0, 80)])));
        console.log('');
        console.log('Fix the mapping or the row, then `cellar dlq replay --supplier <id>` (or the next valid change of the row) releases them.');
      } finally {
        await pool.end();
      }
    });
  withFilters(dlq.command('replay').description('send dead letters back through the pipeline (after fixing a mapping or the catalog), wait for the outcome; exit 1 if any is refused again or not applied in time'))
    .option('--dry-run', 'only say what would be replayed')
    .option('--wait <seconds>', 'how long to wait for the pipeline to apply the replayed changes (0: do not wait)', '30')
    .option('--by <name>', 'who replays, kept with each letter (default: CELLAR_ACTOR or the user name)')
    .action(async (o: FilterOpts & { dryRun?: boolean; wait: string; by?: string }) => {
      const filter = filterOf(o);
      const [{ loadRuntimeConfig, createPgPool, listDeadLetters, replayPlan, replayDeadLetters }, { createLogger }, { connectProducer, createKafka }, { replayOutcome }] = await Promise.all([
        load(), import('../core/logger.js'), import('../kafka/client.js'), import('./dlq-outcome.js'),
      ]);
      const cfg = loadRuntimeConfig();
      const pool = createPgPool(cfg.pgUrl);
      let producer: Producer | undefined;
      try {
        if (o.dryRun) {
          const letters = await listDeadLetters(pool, { ...filter, limit: filter.limit ?? 100_000 });
          const plan = replayPlan(letters);
          const ids = (ls: typeof letters, after = '') => (ls.length ? ` (${ls.map((l) => l.id).join(', ')}${after})` : '');
          console.log(`would replay ${plan.kafka.length} dead letters to their Kafka topics${ids(plan.kafka)}, hand ${plan.embedded.length} back to the embedded runtime${ids(plan.embedded)}; ${plan.none.length} cannot be replayed${ids(plan.none, ': repair with cellar reconcile --repair')}`);
          return;
        }
        const waitS = Number(o.wait);
        if (!Number.isFinite(waitS) || waitS < 0) throw new ConfigError(`cellar dlq replay: --wait: "${o.wait}" is not a number of seconds`);
        const actor = actorOf(o.by);
        const kafka = createKafka(cfg, createLogger('dlq-replay', 'warn'), 'dlq-replay');
        const r = await replayDeadLetters(pool, async () => (producer = await connectProducer(kafka, cfg)), filter, actor);
        console.log(
          `replayed ${r.replayed.length} dead letters to their Kafka topics; handed ${r.queued.length} back to the embedded runtime` +
            (r.skipped.length ? `; ${r.skipped.length} cannot be replayed (${r.skipped.map((l) => l.id).join(', ')}: repair with cellar reconcile --repair)` : ''),
        );
        if (!r.replayed.length && !r.queued.length) return;
        if (waitS === 0) {
          console.log('not waiting: `cellar dlq list --status replayed` shows them until they are resolved');
          return;
        }
        const out = await replayOutcome({ pool, kafka, cfg, replayed: r.replayed, queued: r.queued, sent: r.sent, waitMs: waitS * 1000, actor, afterId: r.afterId });
        for (const line of out.lines) console.log(line);
        process.exitCode = out.ok ? 0 : 1;
      } finally {
        await producer?.disconnect();
        await pool.end();
      }
    });
  withFilters(dlq.command('resolve').description('close dead letters without a replay (e.g. repaired by reconciliation, or a row deleted since), with who and why'))
    .requiredOption('--note <text>', 'why they are closed, kept with each letter')
    .option('--by <name>', 'who closes them (default: CELLAR_ACTOR or the user name)')
    .action(async (o: FilterOpts & { note: string; by?: string }) => {
      const filter = filterOf(o);
      if (!filter.ids && !filter.reason && !filter.supplierId && !filter.stage && !filter.since && !filter.until) {
        throw new ConfigError('cellar dlq resolve: name the letters: --id, --reason, --supplier, --stage, --since or --until');
      }
      const { loadRuntimeConfig, createPgPool, listDeadLetters, resolveDeadLetters } = await load();
      const pool = createPgPool(loadRuntimeConfig().pgUrl);
      try {
        const letters = (await listDeadLetters(pool, { ...filter, limit: filter.limit ?? 100_000 })).filter((l) => l.status !== 'resolved');
        const n = await resolveDeadLetters(pool, letters.map((l) => l.id), actorOf(o.by), o.note);
        console.log(`resolved ${n} dead letters${n ? ` (${letters.map((l) => l.id).join(', ')})` : ''}`);
      } finally {
        await pool.end();
      }
    });
}
