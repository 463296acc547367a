import { RegionalAggregator, type Contribution, type HistoryEntry } from '../../pipelines/aggregate/aggregator.js';
import type { StockObservation } from '../../schemas/records.js';

/**
 * Applies `list` in batches of `size`, draining after each as the runtimes do (what a drain returns is
 * "persisted"); returns every history entry drained, in order. With `restartAt`, the process dies after
 * that batch: a new aggregator restores the persisted contributions, the last batch is delivered again
 * (at-least-once), and the rest follows.
 */
export function historyOfBatches(list: StockObservation[], size: number, restartAt?: number): HistoryEntry[] {
  let a = new RegionalAggregator();
  const saved = new Map<string, Contribution>();
  const out: HistoryEntry[] = [];
  const drain = () => {
    const d = a.drain(0);
    for (const c of d.contributions) saved.set(`${c.region}|${c.sku}|${c.contributorId}`, c);
    out.push(...d.history);
  };
  for (let i = 0, batch = 0; i < list.length; i += size, batch++) {
    for (const o of list.slice(i, i + size)) a.apply(o);
    drain();
    if (batch === restartAt) {
      a = new RegionalAggregator();
      a.restore([...saved.values()]);
      for (const o of list.slice(i, i + size)) a.apply(o);
      drain();
    }
  }
  return out;
}
