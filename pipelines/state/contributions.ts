import type pg from 'pg';
import { inTransaction, pgArray, query, type Statement } from '../core/pg.js';
import { stockKeyId, type Contribution, type HistoryEntry, type KeyLoad, type KeySummary, type KeyWant, type StockKey } from '../aggregate/aggregator.js';
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

/** Summary columns of {@link ContributionStore.loadKeys} (strings: bigint and numeric arrive as text). */
interface SummaryColumns {
  k_entries: string;
  k_live: string;
  k_bottles: string;
  k_version: string;
  k_ms: number | null;
  k_ml: string | null;
}

/**
 * Contributions of a key at most which {@link ContributionStore.loadKeys} reads the key whole: reading a
 * few rows costs what reading its summary does, and a whole key needs no read for a contributor it has not seen.
 */
export const WHOLE_KEY_UP_TO = 16;

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
  /** `wholeKeyUpTo`: {@link loadKeys}' default limit (CELLAR_STATE_WHOLE_KEY_CONTRIBUTORS, default {@link WHOLE_KEY_UP_TO}). */
  constructor(private readonly pool: pg.Pool, private readonly wholeKeyUpTo = WHOLE_KEY_UP_TO) {}

  /** All contributions of one observations partition. */
  async load(partition: number): Promise<Contribution[]> {
    const { rows } = await query<Row>(this.pool, `restoring aggregator partition ${partition}`, `SELECT ${COLUMNS} FROM cellar.stock_contributions WHERE partition = $1`, [partition]);
    return rows.map(toContribution);
  }

  /**
   * The persisted state of some keys of one partition, for a bounded aggregator loading the keys it needs:
   * a key with at most `wholeUpTo` contributions (tombstones included) all its rows; a key with more, its
   * summary (totals over all its rows, computed by Postgres) and the rows of the contributors wanted, so
   * that a change to a key with thousands of contributors reads a few rows, not thousands. One read when
   * no key has more; then one more for the summaries and one for the rows wanted, at once.
   */
  async loadKeys(partition: number, keys: KeyWant[], wholeUpTo = this.wholeKeyUpTo): Promise<KeyLoad> {
    if (keys.length === 0) return { rows: [], partial: [] };
    // Up to one row past the limit a key: as cheap as reading the keys whole when none is wide.
    // `partition + 0` (here and below) keeps the partition index out of every plan: with statistics older than
    // a big snapshot the planner otherwise ANDs it in for each key and reads all of the partition's rows each time.
    const { rows } = await query<Row>(this.pool, `loading ${keys.length} keys of aggregator partition ${partition}`,
      `SELECT c.* FROM unnest($2::text[], $3::text[]) AS u(region, sku)
         CROSS JOIN LATERAL (SELECT ${COLUMNS} FROM cellar.stock_contributions x
                              WHERE x.region = u.region AND x.sku = u.sku AND x.partition + 0 = $1 LIMIT $4) c`,
      [partition, keys.map((k) => k.region), keys.map((k) => k.sku), wholeUpTo + 1]);
    const count = new Map<string, number>();
    for (const r of rows) {
      const id = stockKeyId(r);
      count.set(id, (count.get(id) ?? 0) + 1);
    }
    const wide = keys.filter((k) => (count.get(stockKeyId(k)) ?? 0) > wholeUpTo);
    if (!wide.length) return { rows: rows.map(toContribution), partial: [] };
    const [sums, wanted] = await Promise.all([this.summaries(partition, wide), this.loadEntries(partition, wide)]);
    const read = new Map(wide.map((k) => [stockKeyId(k), k.contributors]));
    const partial = sums.map((p) => ({ ...p, read: read.get(stockKeyId(p)) ?? [] }));
    const isWide = new Set(wide.map(stockKeyId));
    return { rows: [...rows.filter((r) => !isWide.has(stockKeyId(r))).map(toContribution), ...wanted], partial };
  }

  /** The totals of `keys` over all their rows, as restoring every row would give them (RegionalAggregator.restore). */
  private async summaries(partition: number, keys: StockKey[]): Promise<Array<Omit<KeySummary, 'read'>>> {
    const { rows } = await query<{ region: string; sku: string } & SummaryColumns>(this.pool, `summing ${keys.length} keys of aggregator partition ${partition}`,
      `SELECT u.region, u.sku, s.* FROM unnest($2::text[], $3::text[]) AS u(region, sku)
         CROSS JOIN LATERAL (
           SELECT count(*) AS k_entries, count(*) FILTER (WHERE NOT deleted) AS k_live,
                  coalesce(sum(bottles) FILTER (WHERE NOT deleted), 0) AS k_bottles,
                  max(key_version) AS k_version, max(extract(epoch from source_ts) * 1000) AS k_ms,
                  -- The live contributors' size; with none, the size of the most recently changed entry that has one.
                  coalesce(max(bottle_size_ml) FILTER (WHERE NOT deleted),
                           (max(ARRAY[key_version, bottle_size_ml]) FILTER (WHERE deleted AND bottle_size_ml IS NOT NULL))[2]) AS k_ml
             FROM cellar.stock_contributions x WHERE x.region = u.region AND x.sku = u.sku AND x.partition + 0 = $1) s`,
      [partition, keys.map((k) => k.region), keys.map((k) => k.sku)]);
    return rows.map((r) => ({
      region: r.region, sku: r.sku, version: Number(r.k_version), bottles: Number(r.k_bottles), contributors: Number(r.k_live),
      entries: Number(r.k_entries), sourceTsMs: Math.round(Number(r.k_ms ?? 0)), bottleSizeMl: r.k_ml === null ? null : Number(r.k_ml),
    }));
  }

  /** The rows of some contributors at some keys of one partition (those that have one). */
  async loadEntries(partition: number, wants: KeyWant[]): Promise<Contribution[]> {
    const wanted = wants.flatMap((k) => k.contributors.map((c) => [k.region, k.sku, c] as const));
    if (wanted.length === 0) return [];
    const { rows } = await query<Row>(this.pool, `loading ${wanted.length} contributions of aggregator partition ${partition}`,
      `SELECT ${COLUMNS} FROM unnest($2::text[], $3::text[], $4::text[]) AS u(r, s, cid)
         JOIN cellar.stock_contributions c ON c.region = u.r AND c.sku = u.s AND c.contributor_id = u.cid AND c.partition + 0 = $1`,
      [partition, wanted.map((w) => w[0]), wanted.map((w) => w[1]), wanted.map((w) => w[2])]);
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
