import type pg from 'pg';
import type { Redis } from 'ioredis';
import { fromRedisError } from '../core/errors.js';
import { inTransaction, query } from '../core/pg.js';
import { redisKeys } from '../../sinks/redis/config.js';
import { keyId, type KeyState, type Placed } from './compare.js';
import { groupBy } from '../core/collections.js';

/** A live contribution as stored, with what an observation correcting it needs. */
export interface StoredPlacement extends Placed {
  warehouseId: string;
  sourceVersion: string;
}

/** What Cellar holds for one contributor (source row): its live placement and the newest version seen. */
export interface HeldContributor {
  /** Its live contribution (the newest, when it is wrongly counted under several keys). */
  live?: Placed;
  /** Further live contributions under other keys: counted twice, which the pipeline never does. */
  extra: StoredPlacement[];
  /** Every live contribution (`live` and `extra`), oldest first. */
  placements: StoredPlacement[];
  /** Keys where it has a tombstone (moved away or deleted). */
  tombstones: Array<{ region: string; sku: string }>;
  newestVersion: string;
}

/**
 * The given contributors of a supplier as Cellar holds them, by contributor id (tombstones included).
 * Only given ones: a whole supplier's contributions are compared where they are, by `diffSupplier`.
 */
export async function loadContributions(pool: pg.Pool, supplierId: string, ids: string[]): Promise<Map<string, HeldContributor>> {
  const out = new Map<string, HeldContributor>();
  if (!ids.length) return out;
  const { rows } = await query<{ contributor_id: string; region: string; sku: string; bottles: string; source_version: string; deleted: boolean; bottle_size_ml: number | null; warehouse_id: string }>(
    pool,
    'reading stock_contributions',
    `SELECT contributor_id, region, sku, bottles, source_version, deleted, bottle_size_ml, warehouse_id FROM cellar.stock_contributions
      WHERE supplier_id = $1 AND contributor_id = ANY($2) ORDER BY source_version COLLATE "C"`,
    [supplierId, ids],
  );
  for (const r of rows) {
    let h = out.get(r.contributor_id);
    if (!h) out.set(r.contributor_id, (h = { tombstones: [], extra: [], placements: [], newestVersion: r.source_version }));
    if (r.source_version > h.newestVersion) h.newestVersion = r.source_version;
    if (r.deleted) h.tombstones.push({ region: r.region, sku: r.sku });
    else h.placements.push({ region: r.region, sku: r.sku, bottles: Number(r.bottles), bottleSizeMl: r.bottle_size_ml, warehouseId: r.warehouse_id, sourceVersion: r.source_version });
  }
  for (const h of out.values()) {
    // Rows come oldest first: the newest live one is the contributor's placement, the others are extra.
    const newest = h.placements.at(-1);
    if (newest) h.live = { region: newest.region, sku: newest.sku, bottles: newest.bottles, bottleSizeMl: newest.bottleSizeMl };
    h.extra = h.placements.slice(0, -1);
  }
  return out;
}

/** The newest version Cellar holds for each contributor, over its routes and contributions. */
export async function newestVersions(pool: pg.Pool, ids: string[]): Promise<Map<string, string>> {
  const { rows } = await query<{ id: string; v: string }>(
    pool,
    'reading contributor versions',
    `SELECT id, max(v) AS v FROM (
       SELECT contributor_id AS id, source_version AS v FROM cellar.contributor_routes WHERE contributor_id = ANY($1)
       UNION ALL SELECT contributor_id, source_version FROM cellar.stock_contributions WHERE contributor_id = ANY($1)
     ) x GROUP BY id`,
    [ids],
  );
  return new Map(rows.map((r) => [r.id, r.v]));
}

/** Redis fields read per HMGET, and keys per read of {@link scanKeyStates}. */
const KEY_CHUNK = 5000;
/** Memory {@link scanKeyStates}' aggregation may use before it spills to disk (one statement per run). */
const KEYS_WORK_MEM = '64MB';

/**
 * The given keys: the sum of live contributions over all suppliers and the `regional_stock` row, read in
 * one snapshot; then the Redis fields.
 */
export async function loadKeyStates(pool: pg.Pool, redis: Redis, keys: Array<{ region: string; sku: string }>, keyPrefix = 'cellar'): Promise<KeyState[]> {
  if (!keys.length) return [];
  const rows = await inTransaction(pool, 'reading regional totals', async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const r = await tx.query<TotalRow>(
      `SELECT k.region, k.sku,
              (SELECT coalesce(sum(c.bottles) FILTER (WHERE NOT c.deleted), 0) FROM cellar.stock_contributions c
                WHERE c.region = k.region AND c.sku = k.sku) AS contributed,
              rs.bottles AS stored
         FROM unnest($1::text[], $2::text[]) AS k(region, sku) LEFT JOIN cellar.regional_stock rs ON rs.region = k.region AND rs.sku = k.sku`,
      [keys.map((k) => k.region), keys.map((k) => k.sku)],
    );
    return r.rows;
  });
  return withRedisFields(redis, rows, keyPrefix);
}

/**
 * Every (region, sku) the supplier contributes to (or did) as a {@link KeyState}, in chunks of at most
 * 5000 keys: totals are read in one snapshot through a cursor (the next chunk read while Redis answers for
 * this one), so memory does not grow with the supplier's keys. The sums are one aggregation over every
 * contribution, kept where the supplier has one: a pass over the table costs less than an index lookup
 * per key until the supplier holds a small share of the keys. Returns the number of keys.
 */
export async function scanKeyStates(pool: pg.Pool, redis: Redis, supplierId: string, onChunk: (states: KeyState[]) => void, keyPrefix = 'cellar'): Promise<number> {
  let n = 0;
  await inTransaction(pool, 'reading regional totals', async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await tx.query(`SET LOCAL work_mem = '${KEYS_WORK_MEM}'`);
    await tx.query(
      `DECLARE reconcile_keys NO SCROLL CURSOR FOR
       SELECT t.region, t.sku, t.contributed, rs.bottles AS stored FROM (
         SELECT c.region, c.sku, coalesce(sum(c.bottles) FILTER (WHERE NOT c.deleted), 0) AS contributed
           FROM cellar.stock_contributions c
          GROUP BY c.region, c.sku HAVING bool_or(c.supplier_id = $1)) t
       LEFT JOIN cellar.regional_stock rs ON rs.region = t.region AND rs.sku = t.sku`,
      [supplierId],
    );
    const fetch = () => {
      const p = tx.query<TotalRow>(`FETCH ${KEY_CHUNK} FROM reconcile_keys`);
      p.catch(() => undefined);
      return p;
    };
    for (let next: Promise<pg.QueryResult<TotalRow>> | undefined = fetch(); next; ) {
      const rows: TotalRow[] = (await next).rows;
      next = rows.length === KEY_CHUNK ? fetch() : undefined;
      if (rows.length) onChunk(await withRedisFields(redis, rows, keyPrefix));
      n += rows.length;
    }
  });
  return n;
}

interface TotalRow {
  region: string;
  sku: string;
  contributed: string;
  stored: string | null;
}

/** The totals with their Redis fields (HMGET per region, 5000 fields at most per call). */
async function withRedisFields(redis: Redis, rows: TotalRow[], keyPrefix: string): Promise<KeyState[]> {
  const out: KeyState[] = [];
  try {
    for (const [region, list] of groupBy(rows, (r) => r.region)) {
      const stock = redisKeys(keyPrefix, region).stock;
      for (let i = 0; i < list.length; i += KEY_CHUNK) {
        const chunk = list.slice(i, i + KEY_CHUNK);
        const cached = await redis.hmget(stock, ...chunk.map((r) => r.sku));
        chunk.forEach((r, j) => out.push({ region, sku: r.sku, contributed: Number(r.contributed), stored: r.stored === null ? null : Number(r.stored), cached: cached[j] === null || cached[j] === undefined ? null : Number(cached[j]) }));
      }
    }
  } catch (err) {
    throw fromRedisError(err, 'reading Redis snapshots');
  }
  return out;
}

/**
 * Repairs Redis-only drift from Postgres: the field and its version guard are set from `regional_stock`
 * (or removed when the table has no row), so later sink writes with higher versions apply as usual.
 */
export async function repairRedisFromPostgres(pool: pg.Pool, redis: Redis, keys: Array<{ region: string; sku: string }>, keyPrefix = 'cellar'): Promise<number> {
  if (!keys.length) return 0;
  const { rows } = await query<{ region: string; sku: string; bottles: string; version: string; bottle_size_ml: number | null }>(
    pool,
    'reading regional_stock for Redis repair',
    'SELECT rs.region, rs.sku, rs.bottles, rs.version, rs.bottle_size_ml FROM unnest($1::text[], $2::text[]) AS k(region, sku) JOIN cellar.regional_stock rs ON rs.region = k.region AND rs.sku = k.sku',
    [keys.map((k) => k.region), keys.map((k) => k.sku)],
  );
  const found = new Map(rows.map((r) => [keyId(r), r]));
  const m = redis.multi();
  for (const k of keys) {
    const names = redisKeys(keyPrefix, k.region);
    const r = found.get(keyId(k));
    if (r) {
      m.hset(names.stock, k.sku, r.bottles);
      m.hset(names.versions, k.sku, r.version);
      if (r.bottle_size_ml === null) m.hdel(names.sizes, k.sku);
      else m.hset(names.sizes, k.sku, String(r.bottle_size_ml));
    } else {
      // The version guard goes too: a later total for this key is taken whatever its version.
      m.hdel(names.stock, k.sku);
      m.hdel(names.versions, k.sku);
      m.hdel(names.sizes, k.sku);
    }
  }
  try {
    await m.exec();
  } catch (err) {
    throw fromRedisError(err, 'repairing Redis snapshots');
  }
  return keys.length;
}
