import type pg from 'pg';
import { query } from '../core/pg.js';
import type { ConnectorStatusSource } from '../../connectors/kafka-connect/status-source.js';
import { scrubSecrets } from '../core/secrets.js';
import { connectorSupplierIds, withConnectorStatus, type ConnectorReading, type SupplierConnector } from './connector-health.js';
import { deadLetterCounts, listDeadLetters } from './dead-letters.js';
import { heldSummary } from './held.js';
import { listRuns } from './runs.js';
import { readSourceStatus, type SourceStatus } from './source-status.js';
import { readSupplierActivity, type SupplierActivity } from './supplier-activity.js';
import { isHeldBack } from '../../connectors/feed/source.js';

/** A reader whose runtime has not reported for this long no longer counts as reporting, ms. */
export const REPORT_STALE_MS = 30_000;

/** One supplier as an operator (or a probe) sees it. */
export interface SupplierHealth {
  supplierId: string;
  /**
   * `ok` (streaming), `snapshotting`, `starting`, `failing` (its reader restarts after an error: the
   * supplier's database is down, say, or its Debezium connector FAILED; or a file feed holds a file back), `stopped`, or `unknown` (no runtime
   * reports on it and no connector, or Kafka Connect could not be reached).
   */
  status: 'ok' | 'snapshotting' | 'starting' | 'failing' | 'stopped' | 'unknown';
  /** Why, in words: the reader's error, what is being snapshotted, or since when nothing reports. */
  detail: string | null;
  /** The reader's report, from the runtime that reported last. */
  capture: (Omit<SourceStatus, 'supplierId'> & { reporting: boolean }) | null;
  /**
   * What the Kafka runtime's normalizers received from the supplier's raw topics (all of them together,
   * written every 5 s); null when they never received any (or only the embedded runtime runs).
   */
  rawTopics: Omit<SupplierActivity, 'supplierId'> | null;
  /**
   * When a change of the supplier last arrived: its reader's report, or else (a Debezium supplier, whose
   * reader is Kafka Connect) when the normalizers last received one from its raw topics; null: never.
   */
  lastChangeAt: Date | null;
  deadLetters: { pending: number; byReason: Array<{ reason: string; pending: number; total: number }>; newest: Array<{ id: number; reason: string; message: string; createdAt: Date }> };
  /** Rows still counted at their last valid state (`cellar dlq held`). */
  held: number;
  lastReconciliation: { runId: number; at: Date; outcome: string; driftedKeys: number; repaired: number } | null;
  /**
   * Its Debezium connector on Kafka Connect (`<name prefix><supplier id>`), or why Connect could not be read;
   * absent when Connect is not configured or has no such connector.
   */
  connector?: SupplierConnector;
}

/** Kafka Connect's view for {@link supplierHealth}, when Connect is configured. */
export interface ConnectorLookup {
  /** One read of Connect ({@link readConnectorStatus}), awaited alongside Cellar's tables. */
  reading: Promise<ConnectorReading> | ConnectorReading;
  /** Connector names are `<namePrefix><supplier id>` (CELLAR_CONNECT_NAME_PREFIX). */
  namePrefix: string;
}

/**
 * Every connector's status in one `GET /connectors?expand=status&expand=info` (with the source's timeout),
 * or why Connect could not be read (its message, credentials removed). Never throws: health is answered
 * without Connect.
 */
export async function readConnectorStatus(source: ConnectorStatusSource): Promise<ConnectorReading> {
  try {
    return await source.status();
  } catch (err) {
    return { error: scrubSecrets(err instanceof Error ? err.message : String(err)) };
  }
}

function statusOf(c: SourceStatus | undefined, now: number, a?: SupplierActivity): Pick<SupplierHealth, 'status' | 'detail'> {
  if (!c) {
    const seen = a ? `; its raw topics last delivered a change at ${a.lastChangeAt.toISOString()} (${a.changes} received in all)` : '';
    return { status: 'unknown', detail: `no runtime reports on this supplier (a Debezium supplier, or nothing runs it)${seen}` };
  }
  if (now - c.updatedAt.getTime() > REPORT_STALE_MS) return { status: 'unknown', detail: `the ${c.runtime} runtime last reported at ${c.updatedAt.toISOString()} (${c.state})` };
  switch (c.state) {
    case 'streaming':
      // A file feed holding a truncated file back applies nothing until someone looks: failing, with why.
      return isHeldBack(c.detail) ? { status: 'failing', detail: c.detail } : { status: 'ok', detail: null };
    case 'snapshotting':
      return { status: 'snapshotting', detail: `${c.snapshotRows} rows read so far` };
    case 'restarting':
      return { status: 'failing', detail: `reader restarting since ${c.stateSince.toISOString()}: ${c.detail ?? 'unknown error'}` };
    case 'starting':
      return now - c.stateSince.getTime() > REPORT_STALE_MS ? { status: 'failing', detail: `starting since ${c.stateSince.toISOString()}` } : { status: 'starting', detail: null };
    default:
      return { status: 'stopped', detail: c.detail };
  }
}

/**
 * Per-supplier health from Cellar's own tables: the reader's state and distance to the source
 * (`cellar.source_status`), dead letters by reason with the newest messages, held rows and the last
 * reconciliation. `supplierIds` adds suppliers nothing has reported on yet (the registry's). With
 * `connectors` (Kafka Connect configured, read once by the caller, alongside the tables): suppliers with a
 * connector are listed too, and each gets its connector's state ({@link withConnectorStatus}); Connect
 * unreachable leaves them `unknown` with the error, it never fails the call.
 */
export async function supplierHealth(pool: pg.Pool, o: { supplierIds?: string[]; only?: string; connectors?: ConnectorLookup } = {}): Promise<SupplierHealth[]> {
  const [status, held, withLetters, reading, activity] = await Promise.all([
    readSourceStatus(pool, o.only),
    heldSummary(pool),
    query<{ supplier_id: string }>(pool, 'listing suppliers with dead letters', 'SELECT DISTINCT supplier_id FROM cellar.dead_letters WHERE supplier_id IS NOT NULL'),
    o.connectors?.reading,
    readSupplierActivity(pool, o.only),
  ]);
  const fromConnect = reading && o.connectors ? connectorSupplierIds(reading, o.connectors.namePrefix) : [];
  const ids = o.only ? [o.only] : [...new Set([...(o.supplierIds ?? []), ...status.map((s) => s.supplierId), ...activity.map((x) => x.supplierId), ...withLetters.rows.map((r) => r.supplier_id), ...fromConnect])].sort();
  const now = Date.now();
  const list = await Promise.all(ids.map(async (supplierId): Promise<SupplierHealth> => {
    const latest = status.find((s) => s.supplierId === supplierId);
    const seen = activity.find((x) => x.supplierId === supplierId);
    const [counts, newest, runs] = await Promise.all([
      deadLetterCounts(pool, { supplierId }),
      listDeadLetters(pool, { supplierId, pending: true, limit: 3 }),
      listRuns(pool, { supplierId, limit: 1 }),
    ]);
    const byReason = new Map<string, { reason: string; pending: number; total: number }>();
    for (const c of counts) {
      const r = byReason.get(c.reason) ?? { reason: c.reason, pending: 0, total: 0 };
      r.pending += c.pending;
      r.total += c.count;
      byReason.set(c.reason, r);
    }
    const run = runs[0];
    const { supplierId: _id, ...capture } = latest ?? ({} as SourceStatus);
    return {
      supplierId,
      ...statusOf(latest, now, seen),
      capture: latest ? { ...capture, reporting: now - latest.updatedAt.getTime() <= REPORT_STALE_MS } : null,
      rawTopics: seen ? { changes: seen.changes, lastChangeAt: seen.lastChangeAt, lastSourceTs: seen.lastSourceTs } : null,
      lastChangeAt: latest?.lastChangeAt ?? seen?.lastChangeAt ?? null,
      deadLetters: { pending: [...byReason.values()].reduce((n, r) => n + r.pending, 0), byReason: [...byReason.values()], newest: newest.map((l) => ({ id: l.id, reason: l.reason, message: l.message, createdAt: l.createdAt })) },
      held: held.filter((h) => h.supplierId === supplierId).reduce((n, h) => n + h.count, 0),
      lastReconciliation: run ? { runId: run.id, at: run.finishedAt ?? run.startedAt, outcome: run.outcome, driftedKeys: run.driftedKeys, repaired: run.repaired } : null,
    };
  }));
  return reading && o.connectors ? withConnectorStatus(list, reading, o.connectors.namePrefix) : list;
}
