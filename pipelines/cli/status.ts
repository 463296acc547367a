import type { Command } from 'commander';
import { loadRegistry } from '../../connectors/registry/loader.js';
import { loadRuntimeConfig } from '../core/config.js';
import { createPgPool } from '../core/pg.js';
import { supplierHealth, type SupplierHealth } from '../state/supplier-health.js';
import { formatTable } from './format.js';

/** `12 s ago`, `3 min ago`, `2 h ago`, or `never`. */
export function age(d: Date | null | undefined, now = Date.now()): string {
  if (!d) return 'never';
  const s = Math.max(0, Math.round((now - d.getTime()) / 1000));
  return s < 90 ? `${s} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : s < 172_800 ? `${Math.round(s / 3600)} h ago` : `${Math.round(s / 86_400)} d ago`;
}

const bytes = (n: number | null | undefined) => (n === null || n === undefined ? '-' : n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : n < 1 << 30 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / (1 << 30)).toFixed(2)} GiB`);

/** The terminal view of {@link supplierHealth}. */
export function formatStatus(list: SupplierHealth[], now = Date.now()): string {
  if (!list.length) return 'no suppliers: none in the registry and none reported';
  const lines = [formatTable(
    ['supplier', 'status', 'runtime', 'last change', 'source lag', 'dead letters', 'held', 'last reconciliation'],
    list.map((h) => [
      h.supplierId,
      h.status,
      h.capture?.runtime ?? '-',
      age(h.capture?.lastChangeAt, now),
      bytes(h.capture?.lagBytes),
      h.deadLetters.pending ? `${h.deadLetters.pending} pending` : '0',
      h.held,
      h.lastReconciliation ? `${h.lastReconciliation.outcome} ${age(h.lastReconciliation.at, now)}` : 'never',
    ]),
  )];
  for (const h of list.filter((x) => x.detail || x.deadLetters.newest.length)) {
    lines.push('', `${h.supplierId}: ${h.status}${h.detail ? `: ${h.detail}` : ''}`);
    if (h.capture?.lagDetail) lines.push(`  source: ${h.capture.lagDetail}`);
    for (const r of h.deadLetters.byReason.filter((x) => x.pending)) lines.push(`  dead letters ${r.reason}: ${r.pending} pending of ${r.total}`);
    for (const l of h.deadLetters.newest) lines.push(`  newest letter ${l.id} (${l.reason}, ${age(l.createdAt, now)}): ${l.message.slice(0, 120)}`);
  }
  return lines.join('\n');
}

/** `cellar status`: every supplier's health; exit 1 when any is failing or unknown. */
export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('per-supplier health: capture state, last change, source lag, dead letters, held rows, last reconciliation; exit 1 when a supplier is failing or nothing reports on it')
    .option('--supplier <id>', 'one supplier')
    .option('--json', 'one JSON object per supplier and line')
    .action(async (o: { supplier?: string; json?: boolean }) => {
      const cfg = loadRuntimeConfig();
      let ids: string[] = [];
      try {
        ids = loadRegistry(cfg.suppliersDir).map((s) => s.id);
      } catch {
        // The view still works from Cellar's tables; the registry only adds suppliers nothing reported on.
      }
      const pool = createPgPool(cfg.pgUrl, { max: 2 });
      try {
        const list = await supplierHealth(pool, o.supplier ? { only: o.supplier } : { supplierIds: ids });
        if (o.json) for (const h of list) process.stdout.write(`${JSON.stringify(h)}\n`);
        else console.log(formatStatus(list));
        process.exitCode = list.some((h) => h.status === 'failing' || h.status === 'unknown') ? 1 : 0;
      } finally {
        await pool.end();
      }
    });
}
