import type pg from 'pg';
import { inTransaction, pgArray, query, type Statement } from '../core/pg.js';
import type { Contribution, HistoryEntry, StockKey } from '../aggregate/aggregator.js';
import { saveHistory } from './history.js';
import { saveEvents } from '../events/log.js';
import type { StockEventRecord } from '../../schemas/records.js';

interface Row {
  region: string;
  sku: string;
  contributor_id: string;
  supplier_id: string;
  warehouse_id: string;
  bottle_size_ml: number | null;
  bottles: string;
  source_version: string;
  source_ms: number | null;
  deleted: boolean;
  key_version: string;
}

const COLUMNS = `region, sku, contributor_id, supplier_id, warehouse_id, bottle_size_ml, bottles, source_version,
  extract(epoch from source_ts) * 1000 AS source_ms, deleted, key_version`;

function toContribution(r: Row): Contribution {
  return {
    region: r.region,
    sku: r.sku,
    contributorId: r.contributor_id,
    supplierId: r.supplier_id,
    warehouseId: r.warehouse_id,
    bottleSizeMl: r.bottle_size_ml,
    bottles: Number(r.bottles),
    sourceVersion: r.source_version,
    sourceTsMs: Math.round(Number(r.source_ms ?? 0)),
    deleted: r.deleted,
    keyVersion: Number(r.key_version),
  };
}

/**
 * The aggregator's durable state: `cellar.stock_contributions`, one row per (key, contributor), with the
 * observations partition that owns the key. Restoring a partition reads only its rows, so restore time
 * follows the partition's state, not the topic's history.
 */
export class ContributionStore {
  constructor(private readonly pool: pg.Pool) {}

  /** All contributions of one observations partition. */
  async load(partition: number): Promise<Contribution[]> {
    const { rows } = await query<Row>(this.pool, `restoring aggregator partition ${partition}`, `SELECT ${COLUMNS} FROM cellar.stock_contributions WHERE partition = $1`, [partition]);
    return rows.map(toContribution);
  }

  /** The contributions of some keys of one partition (a bounded aggregator loading the keys it needs). */
  async loadKeys(partition: number, keys: StockKey[]): Promise<Contribution[]> {
    if (keys.length === 0) return [];
    const { rows } = await query<Row>(this.pool, `loading ${keys.length} keys of aggregator partition ${partition}`,
      `SELECT ${COLUMNS} FROM cellar.stock_contributions
        WHERE (region, sku) IN (SELECT * FROM unnest($2::text[], $3::text[])) AND partition = $1`,
      [partition, keys.map((k) => k.region), keys.map((k) => k.sku)]);
    return rows.map(toContribution);
  }

  /** Saves changed contributions, the history of the changes that made them and their stock events, in one transaction. */
  async saveWithHistory(rows: Contribution[], partition: number, history: HistoryEntry[], events: StockEventRecord[] = []): Promise<void> {
    if (!history.length) return this.save(rows, partition);
    await inTransaction(this.pool, 'saving aggregator contributions', async (tx) => {
      await this.save(rows, partition, tx);
      await saveHistory(tx, history);
      await saveEvents(tx, events);
    });
  }

  /**
   * Upserts changed contributions in one statement; never moves a row to an older source version.
   * `tx` runs it inside a caller's transaction.
   */
  async save(rows: Contribution[], partition: number, tx?: pg.PoolClient): Promise<void> {
    const st = contributionsUpsert(rows, partition);
    if (st) await query(tx ?? this.pool, 'saving aggregator contributions', st.text, st.values);
  }
}

/**
 * The statement of {@link ContributionStore.save} (rows in key order, so that two writers lock them in the
 * same order), to run with others; undefined when there is nothing to write.
 */
export function contributionsUpsert(rows: Contribution[], partition: number): Statement | undefined {
  if (rows.length === 0) return undefined;
  const list = [...rows].sort((a, b) =>
    a.region !== b.region ? (a.region < b.region ? -1 : 1) : a.sku !== b.sku ? (a.sku < b.sku ? -1 : 1) : a.contributorId < b.contributorId ? -1 : 1,
  );
  const col = <K extends keyof Contribution>(k: K) => pgArray(list.map((r) => r[k] as string | number | boolean | null));
  return {
    text: `INSERT INTO cellar.stock_contributions AS t
         (region, sku, contributor_id, supplier_id, warehouse_id, bottles, source_version, source_ts, deleted, key_version, partition, bottle_size_ml)
       SELECT u.region, u.sku, u.cid, u.sup, u.wh, u.bottles, u.sv, to_timestamp(u.ms / 1000.0), u.deleted, u.kv, $11, u.ml
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[],
                     $8::double precision[], $9::boolean[], $10::bigint[], $12::integer[])
              AS u(region, sku, cid, sup, wh, bottles, sv, ms, deleted, kv, ml)
       ON CONFLICT (region, sku, contributor_id) DO UPDATE SET
         supplier_id = excluded.supplier_id, warehouse_id = excluded.warehouse_id, bottles = excluded.bottles,
         bottle_size_ml = excluded.bottle_size_ml,
         source_version = excluded.source_version, source_ts = excluded.source_ts, deleted = excluded.deleted,
         key_version = excluded.key_version, partition = excluded.partition
       WHERE t.source_version < excluded.source_version`,
    values: [
      col('region'), col('sku'), col('contributorId'), col('supplierId'), col('warehouseId'), col('bottles'),
      col('sourceVersion'), col('sourceTsMs'), col('deleted'), col('keyVersion'), partition, col('bottleSizeMl'),
    ],
  };
}
