import { createNativeSource } from '../../connectors/native-source.js';
import { describeFeedReport } from '../../connectors/feed/source.js';
import type { InboxEntry } from '../../connectors/feed/push-source.js';
import type { RememberedRow } from '../../connectors/feed/snapshot-diff.js';
import type { Supplier } from '../../connectors/registry/loader.js';
import { CellarError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import { sleep } from '../core/retry.js';
import type { CompiledMapping } from '../normalize/mapping.js';
import type { Pending } from './embedded-group.js';
import { resumePoint, type StoredCheckpoint } from '../state/checkpoints.js';
import type { SnapshotState } from './resnapshot.js';
import type { SourceStatusBoard } from '../state/source-status.js';


/** Wait before starting a reader again after its stream stopped on an error, ms (then retries with backoff). */
const READER_RESTART_MS = 1_000;

/** What supervising readers needs from the embedded runtime. */
export interface SupervisorDeps {
  log: Logger;
  metrics: CellarMetrics;
  retry: <T>(what: string, fn: () => Promise<T>) => Promise<T>;
  /** Hands a batch to the group commit (waits while its buffer is full). */
  accept: (p: Pending, size: number) => Promise<void>;
  /** What each supplier's reader owes (snapshot state), kept by the group commit. */
  snapshots: Map<string, SnapshotState>;
  readCheckpoint: (supplierId: string) => Promise<StoredCheckpoint | undefined>;
  /** Feeds: the rows the supplier's last applied file left (`cellar.feed_rows`). */
  loadFeedRows: (supplierId: string) => Promise<Map<string, RememberedRow>>;
  /** Pushed feeds: the requests the API accepted for the supplier (`cellar.feed_inbox`). */
  readFeedInbox: (supplierId: string, afterId: number, limit: number) => Promise<InboxEntry[]>;
  /** True once the runtime stops or failed: readers are not started again. */
  ended: () => boolean;
  onFatal: (err: unknown) => void;
  /** Where each reader's state is reported (starting, snapshotting, streaming, restarting, stopped). */
  board?: SourceStatusBoard;
}

/**
 * The embedded runtime's native readers: one per supplier, started from where Cellar's commits left it
 * (the slot's confirmed position, or the checkpointed binlog position), and started again, with backoff,
 * when its stream stops on an error (a restarted or unreachable supplier database): changes read but not
 * yet committed are read again, and the version guards make the repeats harmless. A reader paused for a
 * resnapshot moves to a new generation, so batches its predecessor still hands over are dropped.
 */
export class ReaderSupervisor {
  private readonly readers = new Map<string, { stop(): Promise<void>; done: Promise<void> }>();
  private readonly generation = new Map<string, number>();

  constructor(private readonly d: SupervisorDeps) {}

  /** Starts (or restarts) the supplier's reader. */
  async start(supplier: Supplier, mapping: CompiledMapping): Promise<void> {
    const { d } = this;
    const gen = this.generation.get(supplier.id) ?? 0;
    const current = () => (this.generation.get(supplier.id) ?? 0) === gen;
    const accept = async (p: Omit<Pending, 'supplier' | 'mapping'>) => {
      if (!current()) return;
      const report = p.batch.feed?.report;
      if (report) d.metrics.recordFeedFile(supplier.id, report);
      d.board?.batch(supplier.id, { changes: p.batch.changes.length, snapshot: p.batch.snapshot, ...(p.batch.snapshotComplete ? { snapshotComplete: true } : {}), ...(report ? { detail: describeFeedReport(report) } : {}) });
      await d.accept({ supplier, mapping, ...p }, p.batch.changes.length);
    };
    const owed = d.snapshots.get(supplier.id);
    if (d.board?.get(supplier.id)?.state !== 'restarting') d.board?.set(supplier.id, 'starting');
    const source = await d.retry(`starting the reader of ${supplier.id}`, async () => {
      const src = createNativeSource(supplier, d.log, { evictSlotHolder: true, loadFeedRows: () => d.loadFeedRows(supplier.id), readFeedInbox: (after, limit) => d.readFeedInbox(supplier.id, after, limit) })!;
      try {
        // A batch of a reader that has since stopped cannot be acknowledged through it: its successor
        // resumes from the last durable checkpoint (the slot's confirmed position, or the saved binlog position).
        const checkpoint = supplier.source.kind === 'postgres' ? undefined : resumePoint(await d.readCheckpoint(supplier.id));
        await src.start((b) => accept({ batch: b, checkpoint: b.checkpoint, confirm: () => src.ack(b.checkpoint).catch(() => undefined) }), { ...owed, ...(checkpoint ? { checkpoint } : {}) });
        return src;
      } catch (err) {
        d.board?.set(supplier.id, 'restarting', (err as Error).message);
        throw err instanceof CellarError ? err : new CellarError('cdc_start', `${supplier.id}: ${(err as Error).message}`, { retriable: true, cause: err });
      }
    });
    if (!current()) return void (await source.stop()); // superseded while starting
    this.readers.set(supplier.id, source);
    const st = d.board?.get(supplier.id)?.state;
    if (st === 'starting' || st === 'restarting') d.board?.set(supplier.id, 'streaming');
    source.done.catch(async (err: unknown) => {
      if (this.readers.get(supplier.id) === source) this.readers.delete(supplier.id);
      await source.stop().catch(() => undefined);
      if (d.ended()) return;
      d.metrics.readerRestarts.inc({ supplier: supplier.id });
      d.board?.set(supplier.id, 'restarting', (err as Error).message);
      d.log.error({ supplier: supplier.id, err: (err as Error).message }, 'reader stopped; starting it again from the last commit');
      await sleep(READER_RESTART_MS);
      if (!d.ended() && current()) await this.start(supplier, mapping).catch((e: unknown) => d.onFatal(e));
    });
  }

  /** Stops the supplier's reader and drops whatever it still hands over (a resnapshot starts a new one). */
  async pause(supplierId: string): Promise<void> {
    this.generation.set(supplierId, (this.generation.get(supplierId) ?? 0) + 1);
    await this.readers.get(supplierId)?.stop();
  }

  /** Stops every reader. */
  async stopAll(): Promise<void> {
    for (const [id, r] of this.readers) {
      await r.stop();
      this.d.board?.set(id, 'stopped');
    }
  }
}
