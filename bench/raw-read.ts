import pg from 'pg';
import { createNativeSource, type NativeSource } from '../connectors/native-source.js';
import { parseSupplier } from '../connectors/registry/loader.js';
import { createDatabase } from '../infra/local/postgres.js';
import { createLogger } from '../pipelines/core/logger.js';
import { createSupplierTable, pollUntil, ROWS, supplierYaml, writeSustained, type Contestant, type Follower } from './workload.js';

/**
 * The limit: Cellar's own Postgres reader alone (`createNativeSource`, exactly as the embedded runtime's
 * reader supervisor starts it: pgoutput, explicit confirms) on its own supplier database
 * (`bench_raw_supplier`, slot `cellar_raw`), with a handler that only counts the changes and acknowledges
 * each batch's checkpoint at once: no mapping, no aggregation, no writes. Whatever Cellar does after
 * reading costs the gap between this and the embedded figure.
 */
export interface RawRead extends Contestant {
  /** Seconds its initial snapshot of {@link ROWS} rows took. */
  snapshotS: number;
  /**
   * The reader's own ceiling, changes/s: stops the reader, writes a sustained run's changes, and times a
   * new reader from its start (connection included) until it counted them all from the slot.
   */
  backlogRun(): Promise<number>;
  stop(): Promise<void>;
}

/** Sets the raw read up on the server at `adminUrl` and waits for its snapshot. */
export async function startRawRead(adminUrl: string): Promise<RawRead> {
  const url = await createDatabase(adminUrl, 'bench_raw_supplier');
  const writer = new pg.Client(url);
  const supplier = parseSupplier(supplierYaml('raw', new URL(adminUrl).port, 'bench_raw_supplier'), 'raw.yaml');
  const log = createLogger('bench-raw-read', 'warn');
  let snapshotRows = 0;
  let streamed = 0;
  let source: NativeSource | undefined;
  const read = async (snapshotDone: boolean) => {
    const src = createNativeSource(supplier, log)!;
    source = src;
    await src.start(async (b) => {
      if (b.snapshot) snapshotRows += b.changes.length;
      else streamed += b.changes.length;
      await src.ack(b.checkpoint);
    }, { snapshotDone });
  };
  const stop = async () => {
    await source?.stop().catch(() => undefined);
    await writer.end().catch(() => undefined);
  };
  try {
    await writer.connect();
    await createSupplierTable(writer);
    const t0 = performance.now();
    await read(false);
    await pollUntil('the raw read’s snapshot', async () => snapshotRows >= ROWS);
    const snapshotS = Math.round(performance.now() - t0) / 1000;
    let start = 0;
    const follower: Follower = {
      mark: async () => void (start = streamed),
      caughtUp: (w) => pollUntil(`the raw read of ${w.changes} changes`, async () => streamed - start >= w.changes),
    };
    const backlogRun = async () => {
      await source?.stop();
      const w = await writeSustained(writer);
      start = streamed;
      const t1 = performance.now();
      await read(true);
      await follower.caughtUp(w);
      return Math.round(w.changes / ((performance.now() - t1) / 1000));
    };
    return { name: 'raw read', writer, follower, snapshotS, backlogRun, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
