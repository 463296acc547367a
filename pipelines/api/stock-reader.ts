import type { Redis } from 'ioredis';
import type pg from 'pg';
import { CellarError, fromRedisError } from '../core/errors.js';
import { query } from '../core/pg.js';
import { redisKeys, scanRegions } from '../../sinks/redis/config.js';
import { heldPerKey } from '../state/held.js';
import type { HotKeyCache } from './hot-cache.js';

/** Where a read was answered from. */
export type Store = 'redis' | 'postgres';

/**
 * How current a value is. From Redis, `asOfMs` is when the sink last wrote the region's snapshot (every
 * change the sink had received by then is in it); from Postgres it is the row's `updated_at`, and the
 * newest contributing source commit (`sourceTsMs`) is known too.
 */
export interface Freshness {
  store: Store;
  asOfMs: number | null;
  /** now − asOfMs at the time of the read. */
  ageMs: number | null;
  sourceTsMs?: number | null;
}

/** One (region, SKU) total. */
export interface StockItem {
  region: string;
  sku: string;
  /** The SKU's bottle size, ml; null for totals written before sizes were kept. */
  bottleSizeMl: number | null;
  bottles: number;
  /** Monotonic per key: the number of effective changes applied to it. */
  version: number;
  /** Contributors counted at their last valid state because a newer change of their row was refused (0 normally). */
  heldContributors?: number;
  freshness: Freshness;
}

/** One page of a region, ordered by SKU. */
export interface StockPage {
  region: string;
  items: Array<Omit<StockItem, 'region' | 'freshness'> & { updatedTsMs: number | null; sourceTsMs: number | null }>;
  /** Pass as `after` for the next page; null on the last one. */
  next: string | null;
  freshness: Freshness;
}

/** Per-region summary for the dashboard. */
export interface RegionSummary {
  region: string;
  skus: number;
  bottles: number;
  updatedTsMs: number | null;
}

/**
 * Reads bottles, version, bottle size and the region's write time of one SKU in each given region atomically
 * (the sink writes a region's hashes in one script, so a script read never mixes two versions).
 * KEYS: stock, versions, meta, sizes per region. ARGV: sku. Returns per region {bottles, version, updatedTsMs,
 * bottleSizeMl ('' when unknown)} or false.
 */
const READ = `
local out = {}
for i = 1, #KEYS, 4 do
  local b = redis.call('HGET', KEYS[i], ARGV[1])
  if b then
    out[#out + 1] = { b, redis.call('HGET', KEYS[i + 1], ARGV[1]) or '0', redis.call('HGET', KEYS[i + 2], 'updatedTsMs') or '',
      redis.call('HGET', KEYS[i + 3], ARGV[1]) or '' }
  else
    out[#out + 1] = false
  end
end
return out`;

type WithRead = Redis & { cellarRead(n: number, ...args: string[]): Promise<Array<[string, string, string, string] | null>> };

const sizeOf = (ml: string | null | undefined): number | null => (ml === null || ml === undefined || ml === '' ? null : Number(ml));

/** Regions whose hash holds more SKUs than this are not listed from Redis (only Postgres keeps them ordered). */
const REDIS_LIST_MAX = 50_000;

/**
 * Reads regional stock for the API: single keys and SKUs across regions from Redis (the snapshot the
 * Redis sink keeps), falling back to Postgres when Redis fails or does not have the key (a region that
 * expired or a Redis that lost its data). Region pages come from Postgres, whose primary key keeps SKUs
 * ordered for stable keyset paging and prefix filters (Redis hashes have no order); when Postgres fails
 * they are served from Redis, sorted in the API, for regions up to 50,000 SKUs.
 */
export class StockReader {
  private readonly redis: WithRead;
  private regionsCache: { at: number; regions: string[]; pending?: Promise<string[]> } = { at: 0, regions: [] };

  constructor(
    redis: Redis,
    private readonly pool: pg.Pool,
    private readonly keyPrefix = 'cellar',
    /** Hot keys kept current by the change stream (single-key reads only). */
    private readonly cache?: HotKeyCache,
    private readonly now: () => number = Date.now,
  ) {
    redis.defineCommand('cellarRead', { lua: READ });
    this.redis = redis as WithRead;
  }

  private fresh(store: Store, asOfMs: number | null, sourceTsMs?: number | null): Freshness {
    const f: Freshness = { store, asOfMs, ageMs: asOfMs === null ? null : Math.max(0, this.now() - asOfMs) };
    if (sourceTsMs !== undefined) f.sourceTsMs = sourceTsMs;
    return f;
  }

  /** Remembers a region seen elsewhere (the change stream), so SKU reads include it at once. */
  noteRegion(region: string): void {
    if (!this.regionsCache.regions.includes(region)) this.regionsCache.regions = [...this.regionsCache.regions, region].sort();
  }

  /** Regions with a Redis snapshot (rescanned at most every 10 s). */
  async redisRegions(): Promise<string[]> {
    const c = this.regionsCache;
    if (this.now() - c.at < 10_000) return c.regions;
    c.pending ??= scanRegions(this.redis, this.keyPrefix).finally(() => (c.pending = undefined));
    c.regions = await c.pending;
    c.at = this.now();
    return c.regions;
  }

  private async fromRedis(regions: string[], sku: string): Promise<StockItem[]> {
    const keys = regions.flatMap((r) => {
      const k = redisKeys(this.keyPrefix, r);
      return [k.stock, k.versions, k.meta, k.sizes];
    });
    const res = await this.redis.cellarRead(keys.length, ...keys, sku);
    const out: StockItem[] = [];
    res.forEach((row, i) => {
      if (!row) return;
      const asOf = row[2] === '' ? null : Number(row[2]);
      out.push({ region: regions[i]!, sku, bottleSizeMl: sizeOf(row[3]), bottles: Number(row[0]), version: Number(row[1]), freshness: this.fresh('redis', asOf) });
    });
    return out;
  }

  private async fromPostgres(sku: string, region?: string): Promise<StockItem[]> {
    const { rows } = await query<{ region: string; bottle_size_ml: number | null; bottles: string; version: string; source_ms: string | null; updated_ms: string }>(
      this.pool,
      'reading regional stock',
      `SELECT region, bottle_size_ml, bottles, version, (extract(epoch from source_ts) * 1000)::bigint AS source_ms, (extract(epoch from updated_at) * 1000)::bigint AS updated_ms
         FROM cellar.regional_stock WHERE sku = $1 ${region === undefined ? '' : 'AND region = $2'} ORDER BY region`,
      region === undefined ? [sku] : [sku, region],
    );
    return rows.map((r) => ({
      region: r.region,
      sku,
      bottleSizeMl: r.bottle_size_ml,
      bottles: Number(r.bottles),
      version: Number(r.version),
      freshness: this.fresh('postgres', Number(r.updated_ms), r.source_ms === null ? null : Number(r.source_ms)),
    }));
  }

  private held: { at: number; counts: Map<string, number>; pending?: Promise<void> } = { at: 0, counts: new Map() };

  /**
   * Held contributors per key (see HeldStore), read from Postgres at most every 2 s in the background: a
   * read never waits for it after the first, and while Postgres is down the last counts stand.
   */
  private async heldOf(): Promise<(region: string, sku: string) => number> {
    const h = this.held;
    if (this.now() - h.at >= 2_000 && !h.pending) {
      h.pending = heldPerKey(this.pool).then((c) => void (h.counts = c), () => undefined).finally(() => {
        h.at = this.now();
        h.pending = undefined;
      });
    }
    if (h.at === 0) await h.pending;
    return (region, sku) => h.counts.get(`${region}\u0000${sku}`) ?? 0;
  }

  /** One key: the hot-key cache, else Redis, else Postgres; undefined when none has it. */
  async get(region: string, sku: string): Promise<StockItem | undefined> {
    const [item, held] = await Promise.all([this.getTotal(region, sku), this.heldOf()]);
    return item && { ...item, heldContributors: held(region, sku) };
  }

  /** One SKU in every region that has it: Redis, else Postgres. */
  async sku(sku: string): Promise<StockItem[]> {
    const [items, held] = await Promise.all([this.skuTotals(sku), this.heldOf()]);
    return items.map((i) => ({ ...i, heldContributors: held(i.region, sku) }));
  }

  /** A page of a region in SKU order, optionally only SKUs starting with `prefix`, after SKU `after`. */
  async page(region: string, opts: { prefix?: string; after?: string; limit: number }): Promise<StockPage> {
    const [page, held] = await Promise.all([this.pageTotals(region, opts), this.heldOf()]);
    return { ...page, items: page.items.map((i) => ({ ...i, heldContributors: held(region, i.sku) })) };
  }

  private async getTotal(region: string, sku: string): Promise<StockItem | undefined> {
    const cached = this.cache?.get(region, sku);
    if (cached) return { region, sku, bottleSizeMl: cached.bottleSizeMl, bottles: cached.bottles, version: cached.version, freshness: this.fresh('redis', cached.asOfMs) };
    try {
      const [hit] = await this.fromRedis([region], sku);
      if (hit) {
        if (hit.freshness.asOfMs !== null) this.cache?.put(region, sku, hit, hit.freshness.asOfMs);
        return hit;
      }
    } catch {
      /* Redis unavailable: Postgres answers */
    }
    return (await this.fromPostgres(sku, region))[0];
  }

  private async skuTotals(sku: string): Promise<StockItem[]> {
    try {
      const regions = await this.redisRegions();
      const hits = regions.length ? await this.fromRedis(regions, sku) : [];
      if (hits.length) return hits;
    } catch {
      /* Redis unavailable: Postgres answers */
    }
    return this.fromPostgres(sku);
  }

  private async pageTotals(region: string, opts: { prefix?: string; after?: string; limit: number }): Promise<StockPage> {
    try {
      return await this.pageFromPostgres(region, opts);
    } catch (err) {
      if (!(err instanceof CellarError) || !err.retriable) throw err;
      return this.pageFromRedis(region, opts);
    }
  }

  private async pageFromPostgres(region: string, o: { prefix?: string; after?: string; limit: number }): Promise<StockPage> {
    const values: unknown[] = [region];
    const conds = ['region = $1'];
    if (o.prefix) {
      // An index range on the primary key (LIKE would need text_pattern_ops outside the C collation), with
      // starts_with as the exact test; no escaping of % or _ needed.
      const p = values.push(o.prefix);
      conds.push(`sku >= $${p} AND sku < $${p} || chr(1114111) AND starts_with(sku, $${p})`);
    }
    if (o.after !== undefined) conds.push(`sku > $${values.push(o.after)}`);
    const { rows } = await query<{ sku: string; bottle_size_ml: number | null; bottles: string; version: string; source_ms: string | null; updated_ms: string }>(
      this.pool,
      `reading a page of ${region}`,
      `SELECT sku, bottle_size_ml, bottles, version, (extract(epoch from source_ts) * 1000)::bigint AS source_ms, (extract(epoch from updated_at) * 1000)::bigint AS updated_ms
         FROM cellar.regional_stock WHERE ${conds.join(' AND ')} ORDER BY sku LIMIT ${o.limit + 1}`,
      values,
    );
    const more = rows.length > o.limit;
    const items = rows.slice(0, o.limit).map((r) => ({
      sku: r.sku,
      bottleSizeMl: r.bottle_size_ml,
      bottles: Number(r.bottles),
      version: Number(r.version),
      updatedTsMs: Number(r.updated_ms),
      sourceTsMs: r.source_ms === null ? null : Number(r.source_ms),
    }));
    const newest = items.reduce((m, i) => Math.max(m, i.updatedTsMs), 0);
    return { region, items, next: more ? items[items.length - 1]!.sku : null, freshness: this.fresh('postgres', newest || null) };
  }

  private async pageFromRedis(region: string, o: { prefix?: string; after?: string; limit: number }): Promise<StockPage> {
    const k = redisKeys(this.keyPrefix, region);
    try {
      const size = await this.redis.hlen(k.stock);
      if (size > REDIS_LIST_MAX) throw new CellarError('postgres_unavailable', `Postgres is unavailable and ${region} is too large to list from Redis`, { retriable: true });
      const [stock, versions, sizes, updated] = (
        await this.redis.multi().hgetall(k.stock).hgetall(k.versions).hgetall(k.sizes).hget(k.meta, 'updatedTsMs').exec()
      )!.map(([e, v]) => {
        if (e) throw e;
        return v;
      }) as [Record<string, string>, Record<string, string>, Record<string, string>, string | null];
      const skus = Object.keys(stock)
        .filter((s) => (!o.prefix || s.startsWith(o.prefix)) && (o.after === undefined || s > o.after))
        .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      const items = skus
        .slice(0, o.limit)
        .map((sku) => ({ sku, bottleSizeMl: sizeOf(sizes[sku]), bottles: Number(stock[sku]), version: Number(versions[sku] ?? 0), updatedTsMs: null, sourceTsMs: null }));
      const asOf = updated === null ? null : Number(updated);
      return { region, items, next: skus.length > o.limit ? items[items.length - 1]!.sku : null, freshness: this.fresh('redis', asOf) };
    } catch (err) {
      throw fromRedisError(err, `reading ${region} from Redis`);
    }
  }

  /** SKU count, bottles and newest write per region (from Postgres). */
  async regions(): Promise<RegionSummary[]> {
    const { rows } = await query<{ region: string; skus: string; bottles: string; updated_ms: string | null }>(
      this.pool,
      'summarizing regions',
      `SELECT region, count(*) AS skus, coalesce(sum(bottles), 0) AS bottles, (extract(epoch from max(updated_at)) * 1000)::bigint AS updated_ms
         FROM cellar.regional_stock GROUP BY region ORDER BY region`,
    );
    return rows.map((r) => ({ region: r.region, skus: Number(r.skus), bottles: Number(r.bottles), updatedTsMs: r.updated_ms === null ? null : Number(r.updated_ms) }));
  }
}
