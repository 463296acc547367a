import type { Supplier } from '../../connectors/registry/loader.js';
import type { StockObservation } from '../../schemas/records.js';
import { decodeDebeziumJson } from './debezium.js';
import { compileMapping, type MappingInputs } from './mapping.js';
import { contributorIdOf, normalizeChange, normalizeTruncate, type Route } from './normalize.js';
import { Rejection, type ReasonCode } from './reasons.js';

/** What happened to one input line. */
export type MappingTestLine =
  | { line: number; status: 'accepted'; observations: Array<Omit<StockObservation, 'ingestTsMs' | 'traceId'>> }
  | { line: number; status: 'ignored'; why: 'tombstone' | 'stale' | 'message' }
  | { line: number; status: 'rejected'; reason: ReasonCode | 'bad_line'; message: string };

/**
 * Runs a supplier's mapping over change events, one Debezium message per line as JSON
 * `{"key": …, "value": …}` (the key and value exactly as the JSON converter writes them). Lines are
 * applied in order with routes kept in memory, so moves, deletes and truncates behave as in the pipeline;
 * the catalog (default: empty) pins the first size seen of each unlisted SKU, as the pipeline does.
 */
export function runMappingTest(supplier: Supplier, text: string, inputs: MappingInputs = {}): MappingTestLine[] {
  const mapping = compileMapping(supplier, inputs);
  const routes = new Map<string, Route>();
  const keyColumns = new Map(supplier.source.tables.map((t) => [t.name, t.key]));
  const out: MappingTestLine[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    if (!raw.trim() || raw.trimStart().startsWith('#')) return;
    let msg: { key?: unknown; value?: unknown };
    try {
      msg = JSON.parse(raw) as { key?: unknown; value?: unknown };
      if (!msg || typeof msg !== 'object' || !('value' in msg)) throw new Error('expected {"key": …, "value": …}');
    } catch (err) {
      out.push({ line, status: 'rejected', reason: 'bad_line', message: `line ${line}: ${(err as Error).message}` });
      return;
    }
    const buf = (v: unknown) => (v === null || v === undefined ? null : Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)));
    try {
      const change = decodeDebeziumJson(buf(msg.key), buf(msg.value));
      if (!change) return void out.push({ line, status: 'ignored', why: 'tombstone' });
      if (change.op === 'm') return void out.push({ line, status: 'ignored', why: 'message' });
      if (!keyColumns.has(change.table)) {
        throw new Rejection('unknown_table', `table ${change.table} is not captured by ${supplier.id} (captured: ${[...keyColumns.keys()].join(', ')})`);
      }
      if (change.op === 't') {
        const live = [...routes.values()].filter((r) => r.sourceTable === change.table);
        const res = normalizeTruncate(change, live, 0);
        for (const r of res.routes) routes.set(r.contributorId, r);
        return void out.push({ line, status: 'accepted', observations: res.observations.map(strip) });
      }
      const id = contributorIdOf(supplier.id, change, keyColumns.get(change.table));
      const res = normalizeChange(change, mapping, id, routes.get(id), 0);
      if (res.kind === 'stale') return void out.push({ line, status: 'ignored', why: 'stale' });
      if (res.kind === 'rejected') return void out.push({ line, status: 'rejected', reason: res.reason, message: res.message });
      routes.set(id, res.route);
      out.push({ line, status: 'accepted', observations: res.observations.map(strip) });
    } catch (err) {
      if (!(err instanceof Rejection)) throw err;
      out.push({ line, status: 'rejected', reason: err.reason, message: err.message });
    }
  });
  return out;
}

function strip(o: StockObservation): Omit<StockObservation, 'ingestTsMs' | 'traceId'> {
  const { ingestTsMs: _i, traceId: _t, ...rest } = o;
  return rest;
}
