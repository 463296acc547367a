import type pg from 'pg';
import { NATIVE_SOURCES, type NativeKind } from '../../connectors/native-source.js';
import type { Supplier } from '../../connectors/registry/loader.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import { resumePoint, type StoredCheckpoint } from '../state/checkpoints.js';
import type { SourceStatusBoard } from '../state/source-status.js';

/** How often a runtime writes its readers' status to `cellar.source_status` and the metrics, ms. */
export const STATUS_FLUSH_MS = 5_000;
/** How often the distance to each supplier's log is measured (a query on the supplier), ms. */
export const LAG_MEASURE_MS = 15_000;

/**
 * Publishes what a runtime's readers do, per supplier: `cellar.source_status` (read by `/v1/suppliers` and
 * `cellar status`) and the gauges `cellar_source_up`, `cellar_source_last_change_timestamp_seconds` and
 * `cellar_source_lag_bytes` (Postgres: WAL the slot retains; MySQL/MariaDB: binlog bytes after Cellar's
 * checkpoint), all labelled by supplier. A failed write or measurement is logged at debug and tried again.
 */
export function watchSourceHealth(o: {
  pool: pg.Pool;
  board: SourceStatusBoard;
  metrics: CellarMetrics;
  log: Logger;
  /** The suppliers whose distance is measured (a getter: a reload changes them). */
  suppliers: () => Supplier[];
  /** The supplier's stored checkpoint (a binlog reader's distance is measured from it). */
  checkpoint: (supplierId: string) => Promise<StoredCheckpoint | undefined>;
}): { stop(): void } {
  const publish = () => {
    for (const s of o.board.all()) {
      o.metrics.sourceUp.set({ supplier: s.supplierId }, s.state === 'streaming' || s.state === 'snapshotting' ? 1 : 0);
      if (s.lastChangeAt) o.metrics.sourceLastChange.set({ supplier: s.supplierId }, s.lastChangeAt.getTime() / 1000);
      if (s.lagBytes !== null) o.metrics.sourceLagBytes.set({ supplier: s.supplierId }, s.lagBytes);
    }
    o.board.flush(o.pool).catch((err: unknown) => o.log.debug({ err: (err as Error).message }, 'writing source status failed; retrying'));
  };
  let measuring = false;
  const measure = async () => {
    if (measuring) return;
    measuring = true;
    try {
      for (const s of o.suppliers()) {
        try {
          const lag = await NATIVE_SOURCES[s.source.kind as NativeKind].lag(s, resumePoint(await o.checkpoint(s.id)));
          o.board.lag(s.id, lag?.bytes ?? null, lag?.detail ?? null);
        } catch (err) {
          o.board.lag(s.id, null, `not measured: ${(err as Error).message}`);
        }
      }
    } finally {
      measuring = false;
    }
  };
  // A change of state (snapshotting, streaming, restarting) is written within moments, not at the next flush:
  // the supplier view and `cellar status` show a reader as soon as it runs.
  let soon: NodeJS.Timeout | undefined;
  o.board.onStateChange = () => {
    soon ??= setTimeout(() => {
      soon = undefined;
      publish();
    }, 50).unref();
  };
  const flushTimer = setInterval(publish, STATUS_FLUSH_MS);
  const lagTimer = setInterval(() => void measure(), LAG_MEASURE_MS);
  flushTimer.unref();
  lagTimer.unref();
  publish();
  void measure();
  return {
    stop: () => {
      o.board.onStateChange = undefined;
      if (soon) clearTimeout(soon);
      clearInterval(flushTimer);
      clearInterval(lagTimer);
    },
  };
}
