import { loadRegistry, type Supplier } from '../../connectors/registry/loader.js';
import type { Logger } from '../core/logger.js';
import type { MappingInputsStore } from '../normalize/sku-map-store.js';
import { answerRequests, markListening, stopListening, unansweredReloads, type ReloadOutcome } from '../state/control.js';
import { hostname } from 'node:os';
import type pg from 'pg';

/** How a reloaded registry differs from the running one, by supplier id. */
export interface SupplierDiff {
  added: Supplier[];
  removed: Supplier[];
  /** The file's content changed (connection, tables, mapping, schedule…). */
  changed: Supplier[];
}

const content = (s: Supplier) => JSON.stringify({ ...s, file: undefined });

/** What a reload changes: suppliers new, gone, and whose file says something else now (a renamed file alone is no change). */
export function diffSuppliers(running: Supplier[], next: Supplier[]): SupplierDiff {
  const before = new Map(running.map((s) => [s.id, s]));
  const after = new Map(next.map((s) => [s.id, s]));
  return {
    added: next.filter((s) => !before.has(s.id)),
    removed: running.filter((s) => !after.has(s.id)),
    changed: next.filter((s) => before.has(s.id) && content(before.get(s.id)!) !== content(s)),
  };
}

/** A reload that changed nothing: the outcome before any reload ran. */
export const NO_RELOAD: ReloadOutcome = { ok: true, added: [], removed: [], changed: [], skipped: [] };

/**
 * The first half of every reload: reads the supplier files, follows their SKU maps and catalog, and runs
 * `prepare` (compiling what the runtime needs). Any problem rejects the whole configuration: it is logged,
 * and the rejected outcome says every problem; the caller keeps running what it has.
 */
export async function readConfiguration<T>(dir: string, inputs: MappingInputsStore, log: Logger, prepare: (next: Supplier[]) => T): Promise<{ next: Supplier[]; prepared: T } | { rejected: ReloadOutcome }> {
  try {
    const next = loadRegistry(dir);
    inputs.track(next);
    await inputs.load();
    return { next, prepared: prepare(next) };
  } catch (err) {
    log.error({ err: (err as Error).message }, 'configuration reload rejected; the running configuration is kept');
    return { rejected: { ...NO_RELOAD, ok: false, error: (err as Error).message } };
  }
}

/** How often a running process looks for `cellar reload` requests, ms. */
export const RELOAD_POLL_MS = 1_000;

/** How far before its start a process still takes a request (clocks of hosts and database differ), ms. */
const START_MARGIN_MS = 10_000;

/** The name a process answers requests under: `<role> <host> pid <n>`. */
export function processName(role: string): string {
  return `${role} ${hostname()} pid ${process.pid}`;
}

/**
 * Answers `cellar reload` requests for one process (the embedded runtime, a Kafka-runtime normalizer, a
 * capture): every request made since the process started is applied through `reload` (which serializes
 * them) and answered once under `processName(role)`, so the command hears from each process. A database
 * error is logged and the request taken on the next poll. Each poll also marks the process as listening
 * (`cellar.control_listeners`), so the command knows whom to wait for. Returns a stop function.
 */
export function watchReloadRequests(o: { pool: pg.Pool; role: string; reload: () => Promise<ReloadOutcome>; log: Logger; startedAt?: Date; ended?: () => boolean }): () => Promise<void> {
  const by = processName(o.role);
  const since = new Date((o.startedAt ?? new Date()).getTime() - START_MARGIN_MS);
  let busy = false;
  const timer = setInterval(() => {
    if (busy || o.ended?.()) return;
    busy = true;
    markListening(o.pool, by)
      .then(() => unansweredReloads(o.pool, by, since))
      .then(async (ids) => {
        if (ids.length) await answerRequests(o.pool, ids, by, await o.reload());
      })
      .catch((err: unknown) => o.log.warn({ err: (err as Error).message }, 'reading reload requests failed; retrying'))
      .finally(() => (busy = false));
  }, RELOAD_POLL_MS);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await stopListening(o.pool, by).catch(() => undefined);
  };
}
