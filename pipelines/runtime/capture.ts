import { loadRegistry, type Supplier } from '../../connectors/registry/loader.js';
import { createNativeSource, hasNativeSource, type ChangeBatch, type SourceCheckpoint } from '../../connectors/native-source.js';
import { describeFeedReport } from '../../connectors/feed/source.js';
import { applyFeedDelta, loadFeedRows, markFeedRowsPending } from '../state/feed-rows.js';
import type { FeedDelta } from '../../connectors/feed/source.js';
import type { InboxEntry } from '../../connectors/feed/push-source.js';
import type { RememberedRow } from '../../connectors/feed/snapshot-diff.js';
import { readFeedInbox } from '../state/feed-inbox.js';
import { insertDeadLetters } from '../state/dead-letters.js';
import { deadLetter } from '../dlq/letter.js';
import { toDebeziumJson } from '../../connectors/debezium/envelope.js';
import { createPgPool, inTransaction } from '../core/pg.js';
import { migrate } from '../state/migrate.js';
import { dependencyAt, type RuntimeConfig } from '../core/config.js';
import { ConfigError, fromKafkaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import { retryInPlace } from '../core/retry.js';
import { connectProducer, createKafka, ensureTopics } from '../kafka/client.js';
import { readCheckpoint, resumePoint, storedPosition, writeCheckpoint, type StoredCheckpoint } from '../state/checkpoints.js';
import { RuntimeLease } from './lease.js';
import { SourceStatusBoard } from '../state/source-status.js';
import { watchSourceHealth } from './source-health.js';
import { diffSuppliers, NO_RELOAD, watchReloadRequests } from './reload.js';
import type { ReloadOutcome } from '../state/control.js';
import { finishResnapshotRequests, pollResnapshotRequests, snapshotStateOf } from './resnapshot.js';


/** A position is checkpointed at most this often while streaming (and at snapshot end and on stop). */
const CHECKPOINT_EVERY_MS = 1_000;

/**
 * `cellar run capture --supplier ID`: the native reader of one supplier (Postgres or MySQL/MariaDB)
 * publishing to Kafka raw topics under Debezium's topic names and format, for sites that run Kafka
 * without Kafka Connect. A source position is acknowledged only after the broker acknowledged
 * (acks=all) every message before it: Postgres through the slot, MySQL/MariaDB through the binlog
 * position (with GTIDs) checkpointed in `cellar.checkpoints` as `capture:<supplier>`. A restart may
 * publish the last second's changes again; the normalizer's version guard makes that harmless.
 * `cellar resnapshot` requests of the supplier are taken as the embedded runtime takes them (see
 * pollResnapshotRequests): the reader stops, the checkpoint records the tables owed, and a new reader
 * publishes their snapshot (each table starting with a truncate) before it streams on.
 */
export async function startCapture(cfg: RuntimeConfig, supplierId: string, log: Logger, metrics: CellarMetrics): Promise<{ stop(): Promise<void>; reload(): Promise<ReloadOutcome>; done?: Promise<void> }> {
  const startedAt = new Date();
  let supplier = capturable(loadRegistry(cfg.suppliersDir), supplierId, cfg.suppliersDir);
  const kind = supplier.source.kind;
  const retry = retryInPlace(log, { describe: (what) => dependencyAt(cfg, what) });
  const sessionTag = RuntimeLease.sessionTag('capture');
  const pool = createPgPool(cfg.pgUrl, { max: 2, applicationName: sessionTag });
  await retry('migrating Cellar\'s database', () => migrate(pool));
  // One capture per supplier: a second is refused, and one taken over cannot checkpoint any more.
  const lease = await retry('taking the capture lease', () => RuntimeLease.acquire(cfg.pgUrl, `capture:${supplier.id}`, log, { takeOver: cfg.takeOver, sessionTag })).catch(async (err: unknown) => {
    await pool.end().catch(() => undefined);
    throw err;
  });
  const kafka = createKafka(cfg, log, `capture-${supplier.id}`);
  const topicsOf = (s: Supplier) => s.source.tables.map((t) => `${s.topicPrefix}.${t.name}`);
  const topics = topicsOf(supplier);
  await retry('Kafka topics', () => ensureTopics(kafka, cfg, topics));
  const producer = await retry('Kafka', () => connectProducer(kafka, cfg));
  const sourceId = `capture:${supplier.id}`;
  // A checkpoint that records the end of a snapshot also marks the resnapshot requests it fulfils finished.
  // A feed's checkpoint carries the rows its file left and the lines it refused, written in the same transaction.
  const checkpoint: Checkpoint = (c, finished = [], feed) =>
    retry('writing checkpoint', () =>
      inTransaction(pool, 'writing checkpoint', async (tx) => {
        await lease.fence(tx);
        await writeCheckpoint(tx, sourceId, c);
        await finishResnapshotRequests(tx, finished);
        if (feed?.delta) await applyFeedDelta(tx, sourceId, feed.delta);
        if (feed?.rejected.length) {
          const letters = feed.rejected.map((r) => deadLetter('source', r.reason, r.message, { supplierId: supplier.id, sourcePosition: `${r.file}:${r.line}`, value: r.text }));
          await insertDeadLetters(tx, letters);
        }
      }),
    ).then(() => {
      if (feed?.rejected.length) {
        metrics.recordStage('source', { letters: feed.rejected });
        log.warn({ supplier: supplier.id, deadLetters: feed.rejected.length, first: feed.rejected[0]!.message }, 'feed lines dead-lettered (cellar dlq list)');
      }
    });
  const publish = async (messages: Array<{ topic: string; key: string | null; value: string }>) => {
    if (!messages.length) return;
    await retry('producing raw changes', async () => {
      try {
        await producer.sendBatch({
          acks: -1,
          topicMessages: [...new Set(messages.map((m) => m.topic))].map((topic) => ({
            topic,
            messages: messages.filter((m) => m.topic === topic).map((m) => ({ key: m.key, value: m.value })),
          })),
        });
      } catch (err) {
        throw fromKafkaError(err, 'producing raw changes');
      }
    });
    metrics.eventsOut.inc({ stage: 'capture' }, messages.length);
  };
  // `done` rejects when a reader fails (one stopped for a resnapshot resolves its own `done`) or the lease is lost.
  let fail!: (err: unknown) => void;
  const failed = new Promise<void>((_, reject) => (fail = reject));
  failed.catch(() => undefined);
  const board = new SourceStatusBoard('capture');
  const startReader = async (): Promise<Reader> => {
    const saved = await readCheckpoint<StoredCheckpoint>(pool, sourceId);
    const r = await startNative(supplier, saved, publish, checkpoint, retry, log, board, () => loadFeedRows(pool, sourceId), (delta) => markFeedRowsPending(pool, sourceId, delta), metrics, (after, limit) => readFeedInbox(pool, supplier.id, after, limit));
    r.done?.catch(async (err: unknown) => {
      board.set(supplier.id, 'restarting', (err as Error).message);
      await board.flush(pool).catch(() => undefined);
      fail(err);
    });
    return r;
  };
  let capturing = true;
  // One reader at a time: a resnapshot (pause … resume) and a reload each stop and start it, in turn.
  let turns: Promise<void> = Promise.resolve();
  const readerTurn = async (): Promise<() => void> => {
    const before = turns;
    let release!: () => void;
    turns = new Promise((r) => (release = r));
    await before;
    return release;
  };
  let resnapshotTurn: (() => void) | undefined;
  const health = watchSourceHealth({ pool, board, metrics, log, suppliers: () => (capturing ? [supplier] : []), checkpoint: () => readCheckpoint<StoredCheckpoint>(pool, sourceId) });
  let reader = await startReader();
  log.info({ supplier: supplier.id, kind, topics }, 'capturing');
  const resnapshots = pollResnapshotRequests({
    pool, log, runtime: sourceId, suppliers: () => (capturing ? [supplierId] : []), sourceId: () => sourceId, fence: (tx) => lease.fence(tx),
    pause: async () => {
      resnapshotTurn = await readerTurn();
      await reader.stop();
    },
    // The new reader reads what is owed from the checkpoint; failing to start it fails the capture (a restart resumes).
    resume: async () => {
      try {
        reader = await startReader().catch((err: unknown) => (fail(err), reader));
      } finally {
        resnapshotTurn?.();
      }
    },
  });
  /**
   * `cellar reload` and SIGHUP: the supplier files are read again and every problem rejects them (the
   * running reader keeps going). A changed file restarts the reader with it, from the slot or checkpoint
   * (repeats are harmless); a supplier removed from the files stops being captured (its slot is kept) and
   * starts again if it comes back.
   */
  let reloading: Promise<ReloadOutcome> = Promise.resolve(NO_RELOAD);
  const reload = (): Promise<ReloadOutcome> => (reloading = reloading.catch(() => NO_RELOAD).then(async () => {
    let next: Supplier | undefined;
    try {
      const all = loadRegistry(cfg.suppliersDir);
      next = all.some((s) => s.id === supplierId) ? capturable(all, supplierId, cfg.suppliersDir) : undefined;
    } catch (err) {
      log.error({ err: (err as Error).message }, 'configuration reload rejected; the running configuration is kept');
      return { ...NO_RELOAD, ok: false, error: (err as Error).message };
    }
    const diff = diffSuppliers(capturing ? [supplier] : [], next ? [next] : []);
    const release = await readerTurn();
    try {
      if (diff.removed.length) {
        await reader.stop();
        capturing = false;
        board.set(supplierId, 'stopped', 'removed from the supplier files');
        await board.flush(pool).catch(() => undefined);
      }
      if (next && (diff.added.length || diff.changed.length)) {
        if (capturing) await reader.stop();
        supplier = next;
        await retry('Kafka topics', () => ensureTopics(kafka, cfg, topicsOf(next!)));
        // A reader that cannot start fails the capture, as at start-up (a restart resumes from the slot).
        reader = await startReader().catch((err: unknown) => (fail(err), reader));
        capturing = true;
      }
    } finally {
      release();
    }
    const outcome = { ...NO_RELOAD, added: diff.added.map((s) => s.id), removed: diff.removed.map((s) => s.id), changed: diff.changed.map((s) => s.id) };
    log.info({ ...outcome, topics: topicsOf(supplier) }, 'configuration reloaded');
    return outcome;
  }));
  const stopReloads = watchReloadRequests({ pool, role: sourceId, reload, log, startedAt });
  const leaseLost = lease.lost.then((err) => Promise.reject(err));
  leaseLost.catch(() => undefined);
  return {
    done: Promise.race([failed, leaseLost]),
    reload,
    stop: async () => {
      await stopReloads();
      await reloading;
      health.stop();
      await resnapshots.stop();
      if (capturing) await reader.stop();
      if (capturing) board.set(supplier.id, 'stopped');
      await board.flush(pool).catch(() => undefined);
      await producer.disconnect().catch(() => undefined);
      await lease.release();
      await pool.end().catch(() => undefined);
    },
  };
}

/** The supplier `id` from the files, if a native reader can capture it (else a ConfigError naming the file). */
function capturable(all: Supplier[], id: string, dir: string): Supplier {
  const s = all.find((x) => x.id === id);
  if (!s) throw new ConfigError(`no supplier "${id}" in ${dir}`);
  if (!hasNativeSource(s)) throw new ConfigError(`${s.file}: source.kind: ${s.source.kind} has no native reader; capture it with Debezium on Kafka Connect (cellar connectors apply)`);
  return s;
}

type Publish = (messages: Array<{ topic: string; key: string | null; value: string }>) => Promise<void>;
type Retry = <T>(what: string, fn: () => Promise<T>) => Promise<T>;
/** `done` rejects when the reader's stream stops on an error; `cellar run capture` then exits 1 for its supervisor to restart it. */
type Reader = { stop(): Promise<void>; done?: Promise<void> };

type Checkpoint = (c: StoredCheckpoint, finished?: number[], feed?: ChangeBatch['feed']) => Promise<unknown>;

/**
 * The supplier's native source (see connectors/native-source.ts) publishing to Kafka: each batch is acked
 * after the broker acknowledged it; the checkpoint carries the position (the binlog position is where a
 * MySQL restart resumes; Postgres resumes from its slot) and the snapshot still owed, written at most every
 * second once a snapshot of every table is done, and always by the batch that ends a snapshot.
 */
async function startNative(supplier: Supplier, saved: StoredCheckpoint | undefined, publish: Publish, checkpoint: Checkpoint, retry: Retry, log: Logger, board: SourceStatusBoard, loadRows: () => Promise<Map<string, RememberedRow>>, markPending: (d: FeedDelta) => Promise<void>, metrics: CellarMetrics, readInbox: (afterId: number, limit: number) => Promise<InboxEntry[]>): Promise<Reader> {
  const source = createNativeSource(supplier, log, { evictSlotHolder: true, loadFeedRows: () => retry('reading the rows of the last feed file', loadRows), readFeedInbox: (after, limit) => retry('reading pushed requests', () => readInbox(after, limit)) })!;
  board.set(supplier.id, 'starting');
  let owed = snapshotStateOf(saved);
  let latest: SourceCheckpoint | undefined;
  let written = 0;
  const resume = resumePoint(saved);
  const from = { ...owed, ...(resume ? { checkpoint: resume } : {}) };
  await retry(`starting the reader of ${supplier.id}`, () =>
    source.start(async (batch) => {
      const report = batch.feed?.report;
      if (report) metrics.recordFeedFile(supplier.id, report);
      board.batch(supplier.id, { changes: batch.changes.length, snapshot: batch.snapshot, ...(batch.snapshotComplete ? { snapshotComplete: true } : {}), ...(report ? { detail: describeFeedReport(report) } : {}) });
      // A feed's keys are marked pending first: published but not checkpointed, they are sent again by the next file.
      if (batch.feed?.delta) await retry('marking feed rows pending', () => markPending(batch.feed!.delta!));
      await publish(batch.changes.map((c) => toDebeziumJson(c)));
      const finished = batch.snapshotComplete ? owed.resnapshotRequests ?? [] : [];
      if (batch.snapshotComplete) owed = { snapshotDone: true };
      // Only positions after a snapshot of every table are resumable: a crash inside it snapshots again.
      if (owed.snapshotDone) {
        latest = batch.checkpoint;
        // A feed's batch is one whole file: its checkpoint (with the rows it left) is written every time.
        if (batch.snapshotComplete || batch.feed || Date.now() - written >= CHECKPOINT_EVERY_MS) {
          written = Date.now();
          await checkpoint({ kind: supplier.source.kind, ...storedPosition(latest), ...owed }, finished, batch.feed);
        }
      }
      await source.ack(batch.checkpoint);
    }, from).catch((err: unknown) => {
      board.set(supplier.id, 'restarting', (err as Error).message);
      throw err;
    }),
  );
  if (board.get(supplier.id)?.state !== 'snapshotting') board.set(supplier.id, 'streaming');
  return {
    done: source.done,
    stop: async () => {
      await source.stop();
      if (latest) await checkpoint({ kind: supplier.source.kind, ...storedPosition(latest), ...owed }).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'final checkpoint not written; a restart publishes the last changes again'));
    },
  };
}
