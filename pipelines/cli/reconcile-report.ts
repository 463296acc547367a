// The terminal report of `cellar reconcile`, loaded with the reconciler when the command runs.
import { ORPHANS_RUN } from '../reconcile/orphans.js';
import type { Drift } from '../reconcile/compare.js';
import type { ReconcileReport } from '../reconcile/reconcile.js';
import { formatTable } from './format.js';

/** A whole number for people: 1,234,567. */
export const num = (n: number) => Math.round(n).toLocaleString('en-US');
const show = (v: unknown) => (v === null || v === undefined ? 'none' : typeof v === 'object' ? `${(v as { region: string }).region}/${(v as { sku: string }).sku} ${num((v as { bottles: number }).bottles)} bottles` : `${num(Number(v))} bottles`);

/** One line per drift for the terminal. */
function driftLine(d: Drift & { repaired: boolean }): string[] {
  const where = d.kind === 'contribution' ? d.contributorId ?? '' : `${d.region}/${d.sku}`;
  return [d.kind, where, show(d.expected), show(d.actual), d.repaired ? 'yes' : 'no', d.likelyCause];
}

/** The summary of one run, as printed by `cellar reconcile`. */
export function formatReport(r: ReconcileReport): string {
  const rate = r.durationMs > 0 ? (r.rowsCompared * 1000) / r.durationMs : 0;
  const verdict = r.outcome === 'clean' ? 'clean' : r.outcome === 'repaired' ? 'drift found and repaired' : 'DRIFT';
  const lines = r.supplierId === ORPHANS_RUN ? [`keys without any contributor: ${num(r.rowsCompared)} totals and Redis fields checked; ${r.drift.length} orphaned, ${r.repaired} removed, ${r.unsettled} still changing — ${verdict} (run ${r.runId})`] : [`${r.supplierId}: ${num(r.rowsCompared)} source rows compared in ${(r.durationMs / 1000).toFixed(1)} s (${num(rate)} rows/s); ${r.drift.length} drifted, ${r.repaired} repaired${r.refusedCorrections ? ` (${r.refusedCorrections} corrections dead-lettered by the running pipeline: see each drift's cause, then cellar dlq list)` : ''}${r.corrections - r.repaired - (r.refusedCorrections ?? 0) > 0 ? ` (${r.corrections - r.repaired - (r.refusedCorrections ?? 0)} corrections sent but not seen applied within the re-checks: run again to verify)` : ''}, ${r.unsettled} still changing (not drift), ${r.rejectedRows} rejected by the mapping${r.heldRows ? ` (${r.heldRows} of them still counted at their last valid state: cellar dlq held)` : ''} — ${verdict} (run ${r.runId})`];
  if (r.drift.length) {
    const shown = r.drift.slice(0, 50);
    lines.push(formatTable(['where', 'key', 'expected', 'actual', 'repaired', 'likely cause'], shown.map(driftLine)).replace(/^/gm, '  '));
    if (r.drift.length > shown.length) lines.push(`  … and ${r.drift.length - shown.length} more in cellar.reconciliation_drift (run_id ${r.runId})`);
  }
  return lines.join('\n');
}
