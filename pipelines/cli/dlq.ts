import type { Command } from 'commander';
import { createPgPool } from '../core/pg.js';
import { loadRuntimeConfig } from '../core/config.js';
import { createLogger } from '../core/logger.js';
import { connectProducer, createKafka } from '../kafka/client.js';
import type { Producer } from 'kafkajs';
import { deadLetterCounts, listDeadLetters, replayDeadLetters, replayPlan, type DeadLetterFilter } from '../state/dead-letters.js';
import { formatTable } from './format.js';
import { heldSummary, listHeld } from '../state/held.js';

interface FilterOpts {
  id?: string[];
  reason?: string;
  supplier?: string;
  stage?: string;
  pending?: boolean;
  limit?: string;
}

function filterOf(o: FilterOpts): DeadLetterFilter {
  return {
    ids: o.id?.map((x) => Number(x)).filter(Number.isInteger),
    reason: o.reason,
    supplierId: o.supplier,
    stage: o.stage,
    pending: o.pending,
    limit: o.limit ? Number(o.limit) : undefined,
  };
}

function withFilters(c: Command): Command {
  return c
    .option('--id <id...>', 'dead letter ids')
    .option('--reason <code>', 'reason code, e.g. unknown_sku')
    .option('--supplier <id>', 'supplier id')
    .option('--stage <stage>', 'normalizer, aggregator, sink-postgres, sink-redis')
    .option('--pending', 'only letters never replayed')
    .option('--limit <n>', 'at most this many');
}

function preview(buf: Buffer | null): string {
  if (!buf) return '';
  const s = buf.toString('utf8');
  return (/^[\x20-\x7e\s]*$/.test(s.slice(0, 200)) ? s : `<${buf.length} bytes>`).replace(/\s+/g, ' ').slice(0, 80);
}

/** `cellar dlq list|replay`. */
export function registerDlqCommands(program: Command): void {
  const dlq = program.command('dlq').description('inspect and replay dead letters (cellar.dead_letters)');
  withFilters(dlq.command('list').description('list dead letters, newest first, with a count by reason'))
    .option('--json', 'one JSON object per line, with key and value in base64')
    .action(async (o: FilterOpts & { json?: boolean }) => {
      const pool = createPgPool(loadRuntimeConfig().pgUrl);
      try {
        const letters = await listDeadLetters(pool, filterOf(o));
        if (o.json) {
          for (const l of letters) process.stdout.write(`${JSON.stringify({ ...l, key: l.key?.toString('base64') ?? null, value: l.value?.toString('base64') ?? null })}\n`);
          return;
        }
        const counts = await deadLetterCounts(pool);
        console.log(formatTable(['stage', 'reason', 'total', 'pending'], counts.map((c) => [c.stage, c.reason, c.count, c.pending])));
        console.log('');
        console.log(
          formatTable(
            ['id', 'stage', 'reason', 'supplier', 'where', 'message', 'value'],
            letters.map((l) => [l.id, l.stage, l.reason, l.supplierId ?? '-', l.topic ? `${l.topic}[${l.partition}]@${l.offset}` : (l.sourcePosition ?? '-'), l.message.slice(0, 70), preview(l.value)]),
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
  withFilters(dlq.command('replay').description('send dead letters back through the pipeline (after fixing a mapping or the catalog)'))
    .option('--dry-run', 'only say what would be replayed')
    .action(async (o: FilterOpts & { dryRun?: boolean }) => {
      const cfg = loadRuntimeConfig();
      const pool = createPgPool(cfg.pgUrl);
      const filter = filterOf(o);
      let producer: Producer | undefined;
      try {
        if (o.dryRun) {
          const letters = await listDeadLetters(pool, { ...filter, limit: filter.limit ?? 100_000 });
          const plan = replayPlan(letters);
          const ids = (ls: typeof letters, after = '') => (ls.length ? ` (${ls.map((l) => l.id).join(', ')}${after})` : '');
          console.log(`would replay ${plan.kafka.length} dead letters to their Kafka topics${ids(plan.kafka)}, hand ${plan.embedded.length} back to the embedded runtime${ids(plan.embedded)}; ${plan.none.length} cannot be replayed${ids(plan.none, ': repair with cellar reconcile --repair')}`);
          return;
        }
        const r = await replayDeadLetters(pool, async () => (producer = await connectProducer(createKafka(cfg, createLogger('dlq-replay', 'warn'), 'dlq-replay'), cfg)), filter);
        console.log(
          `replayed ${r.replayed.length} dead letters to their Kafka topics; handed ${r.queued.length} back to the embedded runtime (applied within a second while it runs)` +
            (r.skipped.length ? `; ${r.skipped.length} cannot be replayed (${r.skipped.join(', ')}: repair with cellar reconcile --repair)` : ''),
        );
      } finally {
        await producer?.disconnect();
        await pool.end();
      }
    });
}
