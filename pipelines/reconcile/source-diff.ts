import type pg from 'pg';
import type { Supplier } from '../../connectors/registry/loader.js';
import { fromPgError } from '../core/errors.js';
import { copyIn } from '../core/pg.js';
import type { ChangeEvent } from '../normalize/debezium.js';
import type { CompiledMapping } from '../normalize/mapping.js';
import { contributorIdOf } from '../normalize/normalize.js';
import { Rejection } from '../normalize/reasons.js';
import { keyOfContributor, type Placed } from './compare.js';
import type { SourceRow, SupplierSnapshot } from './source-snapshot.js';

/**
 * The whole-supplier comparison of source rows with `stock_contributions`, in memory that does not grow
 * with the supplier: what each source row implies is staged, chunk by chunk as the scan reads it, into a
 * temporary table of Cellar's own Postgres session (COPY), and one join there returns only the contributor
 * ids that differ. Neither side is ever held whole in this process, and the join needs no common order of
 * the two databases (a supplier's key order depends on its types and collation; a contributor id is text).
 */

/** What a source row implies: its contributor id and placement (or the mapping's rejection), as the normalizer sees it. */
export function expectation(supplier: Supplier, mapping: CompiledMapping, snap: SupplierSnapshot, r: SourceRow): { cid: string; placed?: Placed; rejected?: string } {
  // What decoding the row's snapshot message would give (a test checks both ways agree), minus the JSON round trip.
  const { key, after } = snap.image(r);
  const change: ChangeEvent = { op: 'r', before: null, after, key, source: {}, table: r.table, sourceVersion: '', sourceTsMs: 0, position: '' };
  const cid = contributorIdOf(supplier.id, change, supplier.source.tables.find((t) => t.name === r.table)?.key);
  try {
    const p = mapping.place(change.after!);
    return { cid, placed: { region: p.region, sku: p.sku, bottles: p.bottles, bottleSizeMl: p.bottleSizeMl } };
  } catch (err) {
    if (err instanceof Rejection) return { cid, rejected: err.reason };
    throw err;
  }
}

/** A contributor whose source row and live contributions disagree at first sight (to be re-checked). */
export interface SourceDifference {
  cid: string;
  /** The source row's table and primary key (column → text); absent for an id that names no captured table. */
  table?: string;
  key?: Record<string, string>;
  /** What the source row implied when scanned; absent when the scan had no such row. */
  expected?: Placed;
}

/** What a whole-supplier comparison counted. */
export interface DiffSummary {
  rowsCompared: number;
  /** Source rows the mapping rejects. */
  rejectedRows: number;
  /** Of those, rows Cellar still counts (a live contribution). */
  heldRows: number;
}

/** What {@link diffSupplier} reads and reports to. */
export interface DiffContext {
  pool: pg.Pool;
  supplier: Supplier;
  mapping: CompiledMapping;
  snap: SupplierSnapshot;
  /** Each table's key columns as contributor ids name them. */
  keyCols: Map<string, string[]>;
  /** Source rows per read (and per COPY into the staging table). */
  chunkRows: number;
  /** Called after each chunk of source rows with the rows compared so far. */
  onRows?: (rowsCompared: number) => void;
}

/** Differences read from the staging join per round trip. */
const DIFF_FETCH = 5_000;
/**
 * Memory the staging join may use before it spills to disk, per hash (Postgres' default, 4 MB, spills a
 * join of 200k rows in batches; the join is one statement per run, so a larger budget is cheap).
 */
const DIFF_WORK_MEM = '64MB';

const STAGE = 'pg_temp.reconcile_expected';
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };
/** A value in COPY's text format (only backslash, tab, newline and carriage return need escaping). */
const copyText = (v: string) => (/[\\\t\n\r]/.test(v) ? v.replace(/[\\\t\n\r]/g, (c) => ESCAPES[c]!) : v);

// The staged rows that differ from the supplier's live contributions (or from none), one row per id in id
// order (drift is reported, and corrected, in a stable order): a rejected row Cellar still counts (held), a
// row not counted as it implies, or a contribution of no row.
const DIFF_SQL = `
  SELECT coalesce(e.cid, c.contributor_id) AS cid, bool_and(e.cid IS NULL) AS unseen, bool_or(e.rejected) AS rejected,
         min(e.source_key) AS source_key,
         min(e.region) AS region, min(e.sku) AS sku, min(e.bottles) AS bottles, min(e.bottle_size_ml) AS bottle_size_ml
    FROM ${STAGE} e
    FULL JOIN (SELECT contributor_id, region, sku, bottles, bottle_size_ml FROM cellar.stock_contributions
                WHERE supplier_id = $1 AND NOT deleted) c ON c.contributor_id = e.cid
   WHERE e.cid IS NULL
      OR (e.rejected AND c.contributor_id IS NOT NULL)
      OR (NOT e.rejected AND (c.contributor_id IS NULL OR c.region <> e.region OR c.sku <> e.sku OR c.bottles <> e.bottles
          OR c.bottle_size_ml <> e.bottle_size_ml))
   GROUP BY 1
   ORDER BY coalesce(e.cid, c.contributor_id) COLLATE "C"`;

/**
 * Compares every source row of the supplier with Cellar's live contributions and calls `onDifference`
 * for each contributor that differs at first sight: a row not counted, counted elsewhere or otherwise, or
 * counted twice, and a contribution whose row the scan did not have. The comparison mirrors
 * `contributionMatches` (a contribution without a bottle size matches any size); every difference is
 * re-checked by the caller, so this is a filter that never hides one. Memory: two chunks of source rows
 * and one of differences; Cellar's Postgres holds the staged rows (about 100 bytes each, dropped at the end).
 */
export async function diffSupplier(ctx: DiffContext, onDifference: (d: SourceDifference) => void): Promise<DiffSummary> {
  const { pool, supplier } = ctx;
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw fromPgError(err, 'staging source rows: connecting');
  }
  // A checked-out client has no pool listener: a server restart must fail the query in flight, not the process.
  const onError = () => undefined;
  client.on('error', onError);
  let broken = true;
  const out: DiffSummary = { rowsCompared: 0, rejectedRows: 0, heldRows: 0 };
  try {
    await sql(client, 'staging source rows', `DROP TABLE IF EXISTS ${STAGE}`);
    await sql(client, 'staging source rows', `CREATE TEMP TABLE reconcile_expected (cid text NOT NULL, source_key text,
      region text, sku text, bottles bigint, bottle_size_ml integer, rejected boolean NOT NULL)`);
    await stage(ctx, client, out);
    await sql(client, 'comparing source rows with contributions', 'BEGIN');
    await sql(client, 'comparing source rows with contributions', `SET LOCAL work_mem = '${DIFF_WORK_MEM}'`);
    await sql(client, 'comparing source rows with contributions', `DECLARE reconcile_diff NO SCROLL CURSOR FOR ${DIFF_SQL}`, [supplier.id]);
    for (;;) {
      const r = await sql<DiffRow>(client, 'comparing source rows with contributions', `FETCH ${DIFF_FETCH} FROM reconcile_diff`);
      for (const row of r.rows) {
        if (row.rejected) out.heldRows++;
        else onDifference(difference(ctx, row));
      }
      if (r.rows.length < DIFF_FETCH) break;
    }
    await sql(client, 'comparing source rows with contributions', 'COMMIT');
    await sql(client, 'dropping staged source rows', `DROP TABLE ${STAGE}`);
    broken = false;
    return out;
  } finally {
    client.off('error', onError);
    // A session left mid-COPY or mid-transaction is not given back: closing it drops its staging table too.
    client.release(broken);
  }
}

interface DiffRow {
  cid: string;
  unseen: boolean;
  rejected: boolean | null;
  source_key: string | null;
  region: string | null;
  sku: string | null;
  bottles: string | null;
  bottle_size_ml: number | null;
}

function difference(ctx: DiffContext, row: DiffRow): SourceDifference {
  const { table, key } = row.source_key !== null
    ? (JSON.parse(row.source_key) as { table: string; key: Record<string, string> })
    : (keyOfContributor(row.cid, ctx.supplier.id, ctx.keyCols) ?? {});
  const expected: Placed | undefined = row.unseen || row.region === null || row.sku === null || row.bottles === null
    ? undefined
    : { region: row.region, sku: row.sku, bottles: Number(row.bottles), bottleSizeMl: row.bottle_size_ml };
  return { cid: row.cid, ...(table && key ? { table, key } : {}), ...(expected ? { expected } : {}) };
}

/**
 * Scans the source and COPYs what each row implies into the staging table. The next chunk is read while
 * this one is normalized, and one COPY at most is in flight: two chunks in memory whatever the supplier's size.
 */
async function stage(ctx: DiffContext, client: pg.PoolClient, out: DiffSummary): Promise<void> {
  const { supplier, mapping, snap, keyCols } = ctx;
  const prefixes = new Map<string, string>();
  let pending: Promise<void> | undefined;
  try {
    await snap.scan(async (chunk) => {
      let text = '';
      for (const r of chunk) {
        const e = expectation(supplier, mapping, snap, r);
        out.rowsCompared++;
        let prefix = prefixes.get(r.table);
        if (prefix === undefined) prefixes.set(r.table, (prefix = `${supplier.id}/${r.table}/`));
        const key = sourceKey(r.table, prefix, keyCols.get(r.table) ?? [], r.row, e.cid);
        text += `${copyText(e.cid)}\t${key === undefined ? '\\N' : copyText(key)}\t`;
        if (e.rejected || !e.placed) {
          out.rejectedRows++;
          text += '\\N\t\\N\t\\N\t\\N\tt\n';
        } else {
          const p = e.placed;
          text += `${copyText(p.region)}\t${copyText(p.sku)}\t${p.bottles}\t${p.bottleSizeMl ?? '\\N'}\tf\n`;
        }
      }
      if (pending) await pending;
      pending = copyIn(client, 'staging source rows', `COPY ${STAGE} FROM STDIN`, text);
      // Awaited before the next COPY; marked handled so a failure is not reported as unhandled meanwhile.
      pending.catch(() => undefined);
      // Pins queued for the runtime to persist: reconciliation never persists them (the pinned sizes stay).
      mapping.catalog.takePending();
      ctx.onRows?.(out.rowsCompared);
    }, ctx.chunkRows);
    await pending;
  } finally {
    await pending?.catch(() => undefined);
  }
}

/**
 * The row's table and key (column → text, as point reads take it) as JSON when its contributor id does
 * not give them back exactly; undefined when it does (then {@link keyOfContributor} recovers them, and
 * nothing is staged). Compared in place: this runs for every source row.
 */
function sourceKey(table: string, prefix: string, cols: string[], row: Record<string, unknown>, cid: string): string | undefined {
  let at = prefix.length;
  let plain = cid.startsWith(prefix);
  for (let i = 0; plain && i < cols.length; i++) {
    const col = cols[i]!;
    const v = String(row[col]);
    if (i && cid.charCodeAt(at++) !== 44 /* , */) plain = false;
    else if (!cid.startsWith(col, at) || cid.charCodeAt(at + col.length) !== 61 /* = */) plain = false;
    else if (v.includes(',') || !cid.startsWith(v, (at += col.length + 1))) plain = false;
    at += v.length;
  }
  if (plain && at === cid.length) return undefined;
  return JSON.stringify({ table, key: Object.fromEntries(cols.map((k) => [k, String(row[k])])) });
}

async function sql<R extends pg.QueryResultRow = pg.QueryResultRow>(client: pg.PoolClient, what: string, text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
  try {
    return await client.query<R>(text, values);
  } catch (err) {
    throw fromPgError(err, what);
  }
}
