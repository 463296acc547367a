import type pg from 'pg';
import type { Redis } from 'ioredis';
import type { Supplier } from '../../connectors/registry/loader.js';
import type { RuntimeConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { query } from '../core/pg.js';
import { newestVersions, repairRedisFromPostgres, type StoredPlacement } from './cellar-state.js';
import { keyId, keyOfContributor, repairVersion, type Drift, type Placed } from './compare.js';
import { deleteObservation, enqueueObservations, produceObservations, sendCorrections } from './direct-repair.js';
import { RouteStore } from '../state/routes.js';
import type { Route } from '../normalize/normalize.js';
import type { SourceMessage, SourceRow, SupplierSnapshot } from './source-snapshot.js';
import { incrementalSnapshotSignal, sendSignal } from './signal.js';
import { groupBy } from '../core/collections.js';
import { readCheckpoint } from '../state/checkpoints.js';

/**
 * How corrections enter the pipeline: `queue` (the table `cellar.repair_requests`, which the embedded
 * runtime applies like changes of its readers), `kafka` (the supplier's raw topics, which the Kafka
 * runtime's normalizer reads like Debezium's changes) or `signal` (Kafka runtime with Debezium: an
 * incremental snapshot of the drifted rows requested through the connector's signal table; rows gone
 * from the source, which a snapshot cannot bring back, are corrected through the raw topics).
 */
export type RepairVia = 'queue' | 'kafka' | 'signal';

/** What applying corrections needs. */
export interface RepairContext {
  pool: pg.Pool;
  redis: Redis;
  log: Logger;
  supplier: Supplier;
  snap: SupplierSnapshot;
  runId: number;
  via: RepairVia | 'auto';
  /** Kafka settings, for `via: kafka`. */
  kafka?: RuntimeConfig;
  keyPrefix?: string;
}

/** `queue` when the embedded runtime checkpoints this supplier, else `kafka`. */
export async function resolveVia(pool: pg.Pool, supplierId: string, via: RepairVia | 'auto'): Promise<RepairVia> {
  if (via !== 'auto') return via;
  return (await readCheckpoint(pool, supplierId)) !== undefined ? 'queue' : 'kafka';
}

/**
 * Corrects confirmed drift through the pipeline. A drifted contribution gets a snapshot event of the
 * source row as it is now (or a delete when the row is gone) with a version just above what Cellar holds
 * for that row (see {@link repairVersion}): the normalizer, the aggregator, the topics and every sink
 * apply it like any change. A wrong regional total is corrected the same way through one of the
 * supplier's contributors at that key (the aggregator then writes its total afresh with a new version).
 * Redis-only drift is rewritten from Postgres. Returns the drift entries corrected.
 */
export async function applyRepairs(ctx: RepairContext, confirmed: Array<{ drift: Drift; cand?: { cid: string; table?: string; key?: Record<string, string>; row?: SourceRow; expected?: Placed; placements?: StoredPlacement[] } }>): Promise<Set<Drift>> {
  const done = new Set<Drift>();
  const { pool, supplier, snap } = ctx;
  const keyCols = new Map(supplier.source.tables.map((t) => [t.name, t.key ?? snap.keyColumns(t.name)]));
  // Each correction names one contributor (source row) and which drift it corrects.
  const targets: Array<{ drift: Drift; cid: string; table: string; key: Record<string, string>; row?: SourceRow }> = [];
  // Corrections below the normalizer (see direct-repair.ts): a contribution deleted at one key.
  const deletes: Array<{ drift: Drift; cid: string; at: { region: string; sku: string; warehouseId: string; bottleSizeMl?: number | null } }> = [];
  const doubled = confirmed.filter((c) => c.cand?.placements?.length);
  const routes = doubled.length ? await new RouteStore(pool).get(doubled.map((c) => c.cand!.cid)) : new Map<string, Route>();
  for (const { drift, cand } of confirmed) {
    if (drift.kind === 'contribution' && cand?.table && cand.key) targets.push({ drift, cid: cand.cid, table: cand.table, key: cand.key, ...(cand.row ? { row: cand.row } : {}) });
    if (drift.kind === 'contribution' && cand?.placements?.length) {
      // The source row's correction fixes its route's key and the key it belongs under now; every other
      // key it is counted under gets a delete of its own.
      const route = routes.get(cand.cid);
      const keep = [cand.expected, route && !route.deleted ? route : undefined].filter(Boolean).map((p) => keyId(p!));
      for (const x of cand.placements) if (!keep.includes(keyId(x))) deletes.push({ drift, cid: cand.cid, at: x });
    }
    if (drift.kind === 'regional_total') {
      const { rows } = await query<{ contributor_id: string; deleted: boolean; warehouse_id: string; bottle_size_ml: number | null }>(pool, 'choosing a contributor to correct a total',
        'SELECT contributor_id, deleted, warehouse_id, bottle_size_ml FROM cellar.stock_contributions WHERE supplier_id = $1 AND region = $2 AND sku = $3 ORDER BY deleted, contributor_id LIMIT 1',
        [supplier.id, drift.region, drift.sku]);
      const k = rows[0] && keyOfContributor(rows[0].contributor_id, supplier.id, keyCols);
      if (rows[0]?.deleted) {
        // No live contributor: a source row's change would emit nothing here; delete the tombstone again.
        deletes.push({ drift, cid: rows[0].contributor_id, at: { region: drift.region!, sku: drift.sku!, warehouseId: rows[0].warehouse_id, bottleSizeMl: rows[0].bottle_size_ml } });
      } else if (k) {
        const [row] = await snap.fetch(k.table, [k.key]);
        targets.push({ drift, cid: rows[0]!.contributor_id, table: k.table, key: k.key, ...(row ? { row } : {}) });
      }
    }
  }
  // One correction per row, whichever drifts led to it (they are all corrected by it).
  const rows = [...groupBy(targets, (t) => t.cid).values()].map((list) => ({ ...list[0]!, drifts: list.map((t) => t.drift) }));
  const via = rows.length || deletes.length ? await resolveVia(pool, supplier.id, ctx.via) : 'queue';
  let viaEvents = rows;
  if (via === 'signal') {
    const present = rows.filter((t) => t.row);
    if (present.length) {
      if (!ctx.kafka) throw new ConfigError('repairs through the signal table need Cellar\'s settings (the connector config names the table)');
      const byTable = new Map([...groupBy(present, (t) => t.table)].map(([table, list]) => [table, list.map((t) => t.key)]));
      const collection = await sendSignal(supplier, ctx.kafka, incrementalSnapshotSignal(supplier.source.kind, byTable));
      for (const t of present) for (const d of t.drifts) done.add(d);
      ctx.log.info({ supplier: supplier.id, rows: present.length, signal: collection }, 'incremental snapshot requested through the signal table');
    }
    // A snapshot cannot bring back a row the source no longer has: those go as delete events.
    viaEvents = rows.filter((t) => !t.row);
  }
  const versions = await newestVersions(pool, [...viaEvents.map((t) => t.cid), ...deletes.map((d) => d.cid)]);
  const messages: Array<{ table: string; m: SourceMessage; drifts: Drift[] }> = viaEvents.map((t) => ({
    table: t.table,
    drifts: t.drifts,
    m: t.row ? snap.message(t.row, 'r', repairVersion(versions.get(t.cid))) : snap.message({ table: t.table, row: t.key }, 'd', repairVersion(versions.get(t.cid))),
  }));
  if (messages.length) {
    if (via === 'queue') await enqueue(pool, ctx.runId, supplier.id, messages);
    else await produce(ctx, messages);
    for (const m of messages) for (const d of m.drifts) done.add(d);
    ctx.log.info({ supplier: supplier.id, corrections: messages.length, via: via === 'signal' ? 'kafka' : via }, 'corrections sent through the pipeline');
  }
  if (deletes.length) {
    const observations = deletes.map((d) => deleteObservation(supplier.id, d.cid, d.at, repairVersion(versions.get(d.cid)), ctx.runId));
    if (via === 'queue') await enqueueObservations(pool, ctx.runId, supplier.id, observations);
    else await produceObservations(ctx.kafka, ctx.log, observations);
    for (const d of deletes) done.add(d.drift);
    ctx.log.info({ supplier: supplier.id, corrections: deletes.length, via: via === 'queue' ? 'queue' : 'kafka' }, 'contributions deleted at keys no source row can correct');
  }
  const redisDrift = confirmed.map((c) => c.drift).filter((d) => d.kind === 'redis' && d.region && d.sku);
  await repairRedisFromPostgres(pool, ctx.redis, redisDrift.map((d) => ({ region: d.region!, sku: d.sku! })), ctx.keyPrefix);
  for (const d of redisDrift) done.add(d);
  return done;
}

async function enqueue(pool: pg.Pool, runId: number, supplierId: string, messages: Array<{ table: string; m: SourceMessage }>): Promise<void> {
  await query(pool, 'queueing corrections',
    `INSERT INTO cellar.repair_requests (run_id, supplier_id, source_table, key, value)
     SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[])`,
    [runId, supplierId, messages.map((x) => x.table), messages.map((x) => x.m.key), messages.map((x) => x.m.value)]);
}

async function produce(ctx: RepairContext, messages: Array<{ m: SourceMessage }>): Promise<void> {
  const topics = [...new Set(messages.map((x) => x.m.topic))];
  await sendCorrections(ctx.kafka, ctx.log, 'sending corrections to the raw topics', (p) =>
    p.sendBatch({ acks: -1, topicMessages: topics.map((topic) => ({ topic, messages: messages.filter((x) => x.m.topic === topic).map((x) => ({ key: x.m.key, value: x.m.value })) })) }));
}
