import type pg from 'pg';
import { readSourceStatus } from '../state/source-status.js';
import { REPORT_STALE_MS } from '../state/supplier-health.js';
import { refusedSince, type RefusedCorrection } from './refused.js';
import type { Redis } from 'ioredis';
import type { Supplier } from '../../connectors/registry/loader.js';
import { CellarError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import { sleep } from '../core/retry.js';
import type { CompiledMapping } from '../normalize/mapping.js';
import { MappingInputsStore } from '../normalize/sku-map-store.js';
import { loadContributions, loadKeyStates, scanKeyStates, type StoredPlacement } from './cellar-state.js';
import { contributionDrift, contributionMatches, driftSignature, keyDrift, keyId, type Drift, type DriftKind, type Placed } from './compare.js';
import { applyRepairs, type RepairVia } from './repair.js';
import { finishRun, recordDrift, startRun, type RunOutcome } from '../state/runs.js';
import { openSupplierSnapshot, type SourceRow, type SupplierSnapshot } from './source-snapshot.js';
import { diffSupplier, expectation } from './source-diff.js';
import { groupBy } from '../core/collections.js';

export { expectation } from './source-diff.js';

/** Options of one reconciliation run. */
export interface ReconcileOptions {
  /** Correct what was found, through the pipeline (default false: report only). */
  repair?: boolean;
  /** Wait before each re-check of a difference, ms: longer than the pipeline's lag. Default 3000. */
  settleMs?: number;
  /** Re-checks of differences before they count as drift or, still moving, as unsettled. Default 3. */
  rounds?: number;
  /**
   * How long to wait for corrections to show in Cellar's stores before they count as not applied, ms.
   * Default 30000 (corrections through Kafka pass four stages); checked every settle window, at most 1 s.
   */
  verifyMs?: number;
  /**
   * Source rows per read (and per COPY into the staging table). Default 2000: two chunks are alive at once
   * (one compared, the next arriving), and larger ones cost more in garbage collection than round trips save.
   */
  chunkRows?: number;
  /** How corrections enter the pipeline; `auto` (default): the embedded runtime's queue when it checkpoints this supplier, else Kafka. */
  via?: RepairVia | 'auto';
  /** Who started the run (cli, scheduler, api). */
  trigger?: string;
  /** Called after each chunk of source rows and at each phase. */
  onProgress?: (p: { supplierId: string; phase: string; rowsCompared: number }) => void;
}

/** What one run found and did. */
export interface ReconcileReport {
  runId: number;
  supplierId: string;
  rowsCompared: number;
  /** Source rows the mapping rejects (they are dead letters, not drift). */
  rejectedRows: number;
  /**
   * Of those, rows Cellar still counts at their last valid state (held: see the README, "Rows that turn
   * invalid"); `cellar dlq held` lists them.
   */
  heldRows: number;
  drift: Array<Drift & { repaired: boolean }>;
  /** Drift entries verified corrected (see verifyRepairs). */
  repaired: number;
  /** Drift entries a correction was sent for (with `repair`); those above `repaired` were not seen applied. */
  corrections: number;
  /** Of those not applied, corrections the running pipeline dead-lettered (their drift names the letter). */
  refusedCorrections?: number;
  /** Differences still moving at the source after every re-check: in flight, not drift. */
  unsettled: number;
  outcome: RunOutcome;
  durationMs: number;
}

/** Services a run uses. */
export interface ReconcileDeps {
  pool: pg.Pool;
  redis: Redis;
  log: Logger;
  metrics?: CellarMetrics;
  /** Kafka settings for corrections sent to raw topics. */
  kafka?: Parameters<typeof applyRepairs>[0]['kafka'];
  keyPrefix?: string;
}

/** A difference being re-checked: the last source observation and the source row behind it. */
interface Candidate {
  cid: string;
  table?: string;
  key?: Record<string, string>;
  expected?: Placed;
  row?: SourceRow;
  /** Every live contribution of a row counted under more than one key (it must be counted once). */
  placements?: StoredPlacement[];
}

/**
 * Which corrections took effect: every `everyMs` (until `verifyMs` passed), Cellar is read again for the
 * corrected contributors and keys and compared with the source as it is then. A correction counts as a
 * repair only once what it corrected agrees; one that did not take effect in time stays drift, so a
 * repair is never claimed that the next run would find undone.
 */
async function verifyRepairs(
  c: { pool: pg.Pool; redis: Redis; supplier: Supplier; mapping: CompiledMapping; snap: SupplierSnapshot; everyMs: number; verifyMs: number; keyPrefix?: string },
  sent: Array<{ drift: Drift; cand?: Candidate }>,
): Promise<Set<Drift>> {
  const ok = new Set<Drift>();
  let open = sent;
  const until = Date.now() + c.verifyMs;
  while (open.length && Date.now() < until) {
    await sleep(c.everyMs);
    const contrib = open.filter((x) => x.drift.kind === 'contribution' && x.cand);
    const keys = open.filter((x) => x.drift.kind !== 'contribution' && x.drift.region !== null && x.drift.sku !== null);
    const heldNow = contrib.length ? await loadContributions(c.pool, c.supplier.id, contrib.map((x) => x.cand!.cid)) : new Map();
    const fresh = new Map<string, Placed | undefined>();
    for (const [table, list] of groupBy(contrib.filter((x) => x.cand!.table && x.cand!.key), (x) => x.cand!.table!)) {
      for (const row of await c.snap.fetch(table, list.map((x) => x.cand!.key!))) {
        const e = expectation(c.supplier, c.mapping, c.snap, row);
        fresh.set(e.cid, e.placed);
      }
    }
    const states = keys.length ? await loadKeyStates(c.pool, c.redis, keys.map((x) => ({ region: x.drift.region!, sku: x.drift.sku! })), c.keyPrefix) : [];
    const clean = new Set(states.filter((s) => !keyDrift(s)).map(keyId));
    for (const x of open) {
      if (x.drift.kind === 'contribution') {
        const h = heldNow.get(x.cand!.cid);
        if (contributionMatches(fresh.get(x.cand!.cid), h?.live) && !h?.extra.length) ok.add(x.drift);
      } else if (clean.has(keyId({ region: x.drift.region!, sku: x.drift.sku! }))) ok.add(x.drift);
    }
    open = open.filter((x) => !ok.has(x.drift));
  }
  return ok;
}

/**
 * Reconciles one supplier: reads its rows in one consistent, read-only, chunked snapshot, normalizes them
 * with the pipeline's mapping code, and compares each row with `stock_contributions` (see
 * {@link diffSupplier}), while each key the supplier feeds is compared with `regional_stock` and Redis.
 * Both stream: memory grows with the differences found, not with the supplier's rows or keys.
 * Differences are re-checked (settle, read Cellar, read the source again) so that changes in flight are
 * never reported: a difference counts as drift only when the source row did not change across a settle
 * window and Cellar, read inside that window, still disagrees.
 */
export async function reconcileSupplier(deps: ReconcileDeps, supplier: Supplier, opts: ReconcileOptions = {}): Promise<ReconcileReport> {
  const t0 = Date.now();
  const { pool, redis, log } = deps;
  const settleMs = opts.settleMs ?? 3000;
  const rounds = opts.rounds ?? 3;
  const runId = await startRun(pool, supplier.id, opts.trigger ?? 'cli');
  const progress = (phase: string, rowsCompared: number) => opts.onProgress?.({ supplierId: supplier.id, phase, rowsCompared });
  let rowsCompared = 0;
  try {
    const snap = await openSupplierSnapshot(supplier, log, pool);
    // The same inputs as the runtimes: SKU map rows and the catalog of bottle sizes.
    const inputs = new MappingInputsStore(pool, [supplier]);
    await inputs.load();
    const mapping = inputs.compile(supplier);
    const keyCols = new Map(supplier.source.tables.map((t) => [t.name, t.key ?? snap.keyColumns(t.name)]));
    const cands = new Map<string, Candidate>();
    const keyCands = new Map<string, { region: string; sku: string; kind: DriftKind; sig: string }>();
    // Source rows rejected only when re-read (those of the scan are counted by diffSupplier).
    const rejected = new Set<string>();

    progress('reading source rows', 0);
    // The source rows against their contributions, and every key the supplier feeds against its total and
    // Redis field, side by side (Postgres aggregates the totals while this process normalizes rows): each
    // streams, keeping only what differs.
    const [diffed, keyed] = await Promise.allSettled([
      diffSupplier({ pool, supplier, mapping, snap, keyCols, chunkRows: opts.chunkRows ?? 2000, onRows: (n) => progress('reading source rows', (rowsCompared = n)) }, (d) => {
        cands.set(d.cid, { cid: d.cid, ...(d.table && d.key ? { table: d.table, key: d.key } : {}), ...(d.expected ? { expected: d.expected } : {}) });
      }),
      scanKeyStates(pool, redis, supplier.id, (states) => {
        for (const s of states) {
          const d = keyDrift(s);
          if (d) keyCands.set(keyId(s), { region: s.region, sku: s.sku, kind: d.kind, sig: driftSignature(d) });
        }
      }, deps.keyPrefix),
    ]);
    if (diffed.status === 'rejected') throw diffed.reason;
    if (keyed.status === 'rejected') throw keyed.reason;
    const scanned = diffed.value;
    rowsCompared = scanned.rowsCompared;
    // What Cellar held for each difference when it was found.
    const held = await loadContributions(pool, supplier.id, [...cands.keys()]);
    // A total is checked against its contributions only where those match the source: where one does not,
    // the contribution is the drift (and its repair rewrites the total too), reported once.
    const contributionKeys = new Set<string>();
    for (const c of cands.values()) {
      if (c.expected) contributionKeys.add(keyId(c.expected));
      const h = held.get(c.cid);
      for (const p of [h?.live, ...(h?.extra ?? [])]) if (p) contributionKeys.add(keyId(p));
    }
    for (const [id, k] of keyCands) if (k.kind === 'regional_total' && contributionKeys.has(id)) keyCands.delete(id);

    const confirmed: Array<{ drift: Drift; cand?: Candidate }> = [];
    for (let round = 1; round <= rounds && (cands.size || keyCands.size); round++) {
      progress(`re-checking ${cands.size + keyCands.size} differences (${round}/${rounds})`, rowsCompared);
      await sleep(settleMs);
      // Cellar first, then the source: a difference confirmed below spans a whole settle window.
      const ids = [...cands.keys()];
      const heldNow = ids.length ? await loadContributions(pool, supplier.id, ids) : new Map();
      const keyStates = keyCands.size ? await loadKeyStates(pool, redis, [...keyCands.values()], deps.keyPrefix) : [];
      const fresh = new Map<string, { placed?: Placed; row: SourceRow }>();
      const byTable = groupBy([...cands.values()].filter((c) => c.table && c.key), (c) => c.table!);
      for (const [table, list] of byTable) {
        for (const row of await snap.fetch(table, list.map((c) => c.key!))) {
          const e = expectation(supplier, mapping, snap, row);
          if (e.rejected) rejected.add(e.cid);
          else fresh.set(e.cid, { ...(e.placed ? { placed: e.placed } : {}), row });
        }
      }
      for (const c of [...cands.values()]) {
        if (rejected.has(c.cid)) {
          cands.delete(c.cid);
          continue;
        }
        const now = fresh.get(c.cid);
        const actual = heldNow.get(c.cid)?.live;
        const extra = heldNow.get(c.cid)?.extra ?? [];
        if (contributionMatches(c.expected, now?.placed)) {
          cands.delete(c.cid);
          const placements = extra.length ? heldNow.get(c.cid)!.placements : [];
          if (!contributionMatches(now?.placed, actual) || extra.length) confirmed.push({ drift: contributionDrift(c.cid, now?.placed, actual, extra), cand: { ...c, placements, ...(now ? { row: now.row } : {}) } });
        } else {
          c.expected = now?.placed;
          if (now) c.row = now.row;
          else delete c.row;
        }
      }
      for (const s of keyStates) {
        const id = keyId(s);
        const prev = keyCands.get(id)!;
        const d = keyDrift(s);
        if (!d) keyCands.delete(id);
        else if (driftSignature(d) === prev.sig) {
          keyCands.delete(id);
          confirmed.push({ drift: d });
        } else prev.sig = driftSignature(d);
      }
    }
    const unsettled = cands.size + keyCands.size;
    const heldRows = scanned.heldRows + [...rejected].filter((cid) => held.get(cid)?.live).length;
    const rejectedRows = scanned.rejectedRows + rejected.size;
    let repairedKeys = new Set<Drift>();
    let sent = 0;
    if (opts.repair && confirmed.length) {
      progress(`repairing ${confirmed.length} differences`, rowsCompared);
      const applied = await applyRepairs({ pool, redis, log, supplier, snap, runId, via: opts.via ?? 'auto', ...(deps.kafka ? { kafka: deps.kafka } : {}), ...(deps.keyPrefix ? { keyPrefix: deps.keyPrefix } : {}) }, confirmed);
      sent = applied.size;
      progress(`verifying ${applied.size} corrections`, rowsCompared);
      repairedKeys = await verifyRepairs({ pool, redis, supplier, mapping, snap, everyMs: Math.min(settleMs, 1_000), verifyMs: opts.verifyMs ?? 30_000, ...(deps.keyPrefix ? { keyPrefix: deps.keyPrefix } : {}) }, confirmed.filter((c) => applied.has(c.drift)));
    }
    const paused = await captureNotStreaming(pool, supplier.id);
    // Corrections the running pipeline dead-lettered are reported as refused, with the letter, not as "not seen applied".
    const refused = sent > repairedKeys.size ? await refusedSince(pool, supplier, t0) : new Map<string, RefusedCorrection>();
    const causeOf = (d: Drift) => {
      const r = d.kind === 'contribution' && d.contributorId ? refused.get(d.contributorId) : undefined;
      if (r) return `the correction was dead-lettered (letter ${r.letterId}, ${r.reason}): ${r.message}`;
      return paused && d.kind === 'contribution' ? `${paused}; otherwise: ${d.likelyCause}` : d.likelyCause;
    };
    const drift = confirmed.map((c) => ({ ...c.drift, likelyCause: repairedKeys.has(c.drift) ? c.drift.likelyCause : causeOf(c.drift), repaired: repairedKeys.has(c.drift) }));
    const refusedCount = drift.filter((d) => !d.repaired && d.likelyCause.startsWith('the correction was dead-lettered')).length;
    if (sent > repairedKeys.size) log.warn({ supplier: supplier.id, runId, sent, verified: repairedKeys.size }, 'corrections sent but not seen applied within the re-check window');
    await recordDrift(pool, runId, drift);
    const repaired = drift.filter((d) => d.repaired).length;
    const outcome: RunOutcome = !drift.length ? 'clean' : repaired === drift.length ? 'repaired' : 'drift';
    await finishRun(pool, runId, { rowsCompared, drifted: drift.length, repaired, unsettled, outcome });
    deps.metrics?.reconciliationDrift.set({ supplier: supplier.id }, drift.length);
    deps.metrics?.reconciliationLastSuccess.set({ supplier: supplier.id }, Date.now() / 1000);
    deps.metrics?.reconciliationRows.inc({ supplier: supplier.id }, rowsCompared);
    log.info({ supplier: supplier.id, runId, rowsCompared, drift: drift.length, repaired, unsettled, rejected: rejectedRows, held: heldRows, outcome }, 'reconciliation finished');
    return { runId, supplierId: supplier.id, rowsCompared, rejectedRows, heldRows, drift, repaired, corrections: sent, refusedCorrections: refusedCount, unsettled, outcome, durationMs: Date.now() - t0 };
  } catch (err) {
    const e = err instanceof CellarError ? err : new CellarError('reconcile_failed', `reconciling ${supplier.id}: ${(err as Error).message}`, { cause: err });
    await finishRun(pool, runId, { rowsCompared, drifted: 0, repaired: 0, unsettled: 0, outcome: 'failed', error: e.message }).catch(() => undefined);
    throw e;
  }
}

/**
 * When the supplier's reader is not streaming (restarting after an error, stopped, or its runtime silent),
 * the likely cause of a contribution's drift is that capture has not read the change yet, not that it was
 * lost: said first in each such drift's likely cause.
 */
async function captureNotStreaming(pool: pg.Pool, supplierId: string): Promise<string | undefined> {
  const s = (await readSourceStatus(pool, supplierId).catch(() => []))[0];
  if (!s) return undefined;
  const silent = Date.now() - s.updatedAt.getTime() > REPORT_STALE_MS;
  if (s.state === 'streaming' && !silent) return undefined;
  return silent
    ? `capture of ${supplierId} is not running (its ${s.runtime} runtime last reported at ${s.updatedAt.toISOString()}): the change is probably not read yet`
    : `capture of ${supplierId} is ${s.state} since ${s.stateSince.toISOString()}${s.detail ? ` (${s.detail})` : ''}: the change is probably not read yet`;
}
