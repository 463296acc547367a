import type pg from 'pg';
import type { Supplier } from '../../connectors/registry/loader.js';
import type { PushedRow } from '../../connectors/feed/push-body.js';
import { MappingInputsStore } from '../normalize/sku-map-store.js';
import type { CompiledMapping } from '../normalize/mapping.js';
import { Rejection, type ReasonCode } from '../normalize/reasons.js';

/** The SKU map and catalog are read again at most this often, ms. */
const INPUTS_TTL_MS = 10_000;

/** A pushed row the supplier's mapping refuses: the normalizer will dead-letter it with this reason. */
export interface MappingRefusal {
  line: number;
  reason: ReasonCode;
  message: string;
}

/**
 * Runs a pushing supplier's mapping over the rows of a request before it is answered, so the answer names
 * the rows that will not count (an unknown warehouse, a unit it cannot convert, a SKU missing from its map)
 * with the normalizer's reason. It reads the same inputs as the runtimes (`cellar.sku_map`, the catalog of
 * bottle sizes), refreshed every 10 s; the runtime's normalizer still decides (a SKU map changed in between
 * changes the outcome), and dead-letters such rows where an operator can replay them once the mapping is fixed.
 */
export class PushMappingCheck {
  private inputs: MappingInputsStore | undefined;
  private loadedAt = 0;
  private loading: Promise<void> | undefined;
  private readonly compiled = new WeakMap<Supplier, CompiledMapping>();

  constructor(private readonly pool: pg.Pool) {}

  /** The refusals among `rows` (deletes are not placed: they follow where the row was counted); `registry`: every supplier (whose SKU maps are kept). */
  async refusals(supplier: Supplier, rows: readonly PushedRow[], registry: Supplier[]): Promise<MappingRefusal[]> {
    const mapping = await this.mappingOf(supplier, registry);
    const out: MappingRefusal[] = [];
    for (const r of rows) {
      if (r.op === 'delete') continue;
      try {
        mapping.place(r.row);
      } catch (err) {
        if (!(err instanceof Rejection)) throw err;
        out.push({ line: r.line, reason: err.reason, message: err.message });
      }
    }
    return out;
  }

  private async mappingOf(supplier: Supplier, registry: Supplier[]): Promise<CompiledMapping> {
    if (!this.inputs) this.inputs = new MappingInputsStore(this.pool, registry);
    this.inputs.track(registry);
    if (Date.now() - this.loadedAt > INPUTS_TTL_MS) {
      this.loading ??= this.inputs.load().then(() => void (this.loadedAt = Date.now())).finally(() => (this.loading = undefined));
      await this.loading;
    }
    let m = this.compiled.get(supplier);
    if (!m) this.compiled.set(supplier, (m = this.inputs.compile(supplier)));
    return m;
  }
}
