import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Cellar's Prometheus metrics, prefix `cellar_`. One registry per process; every stage records into
 * the same names with a `stage` label so dashboards and alerts work across runtimes.
 */
export class CellarMetrics {
  readonly registry = new Registry();
  /** Records read by a stage. */
  readonly eventsIn: Counter<'stage'>;
  /** Records written by a stage (observations, totals, sink rows applied). */
  readonly eventsOut: Counter<'stage'>;
  /** Records dead-lettered, by stage and reason code. */
  readonly deadLetters: Counter<'stage' | 'reason'>;
  /** Changes at or below the version already applied (duplicates, replays). */
  readonly staleEvents: Counter<'stage'>;
  /** now − source commit time when a total reaches a sink, seconds. */
  readonly freshness: Histogram<'sink'>;
  /** Duration of one sink batch write, seconds. */
  readonly sinkBatch: Histogram<'sink'>;
  /** Messages behind the partition's high watermark after this member's last batch (Kafka workers). */
  readonly consumerLag: Gauge<'group' | 'topic' | 'partition'>;
  /** Keys found drifted by the supplier's last reconciliation run (0 when clean). */
  readonly reconciliationDrift: Gauge<'supplier'>;
  /** Unix time of the supplier's last reconciliation run that completed (clean, drift found or repaired), seconds. */
  readonly reconciliationLastSuccess: Gauge<'supplier'>;
  /** Source rows compared by reconciliation. */
  readonly reconciliationRows: Counter<'supplier'>;
  /** Native readers started again after their stream stopped on an error (embedded runtime). */
  readonly readerRestarts: Counter<'supplier'>;
  /** Consumer offsets kafkajs reset past messages retention removed before they were consumed (skipped changes). */
  readonly offsetResets: Counter<'group' | 'topic'>;
  /** 1 while a supplier's reader is snapshotting or streaming, 0 while it starts, restarts or stopped. */
  readonly sourceUp: Gauge<'supplier'>;
  /** When a supplier's reader last handed over a change (Unix seconds). */
  readonly sourceLastChange: Gauge<'supplier'>;
  /** Postgres: WAL bytes the supplier's slot retains; MySQL/MariaDB: binlog bytes after Cellar's checkpoint. */
  readonly sourceLagBytes: Gauge<'supplier'>;
  /** Consumers started again because their partitions had lag and they made no progress (CELLAR_KAFKA_STALL_MS). */
  readonly consumerStalls: Counter<'group'>;
  /** 1 while a Kafka Connect connector is RUNNING, else 0 (exported by `cellar run scheduler` with CELLAR_CONNECT_URL). */
  readonly connectorUp: Gauge<'connector'>;
  /** 1 while a connector's task is FAILED, else 0. */
  readonly connectorTaskFailed: Gauge<'connector' | 'task'>;
  /** 1 while Redis is behind Postgres (unreachable, or being rebuilt from it), else 0 (embedded runtime). */
  readonly redisStale: Gauge;
  /**
   * Embedded runtime, per group commit: seconds spent in each phase (`wait`: from the group's first batch
   * handed over until it was taken; `prepare`: normalize and aggregate in memory; `queued`: prepared, waiting for
   * the previous commit; `postgres`: the transaction; `redis`: the Redis write). Where freshness goes.
   */
  readonly groupPhase: Histogram<'phase'>;
  /** Embedded runtime: changes per group commit. */
  readonly groupChanges: Histogram;
  /** Kafka runtime: messages per partition batch a worker handled (small batches pay the per-batch round trips often). */
  readonly kafkaBatchMessages: Histogram<'group'>;
  /** Kafka runtime: produce requests a worker made, and the sends they carried (joined by SendCoalescer). */
  readonly produceRequests: Counter;
  readonly produceSends: Counter;
  readonly groupCommits: Counter<'path'>;
  /**
   * Embedded runtime: aggregate keys not in memory that a group needed, by where their state came from
   * (`read_ahead`: read while earlier groups committed; `group`: read by the group itself).
   */
  readonly stateKeysLoaded: Counter<'from'>;
  /** File feeds: files read, by supplier and outcome (`applied`, `held`: held back as truncated). */
  readonly feedFiles: Counter<'supplier' | 'outcome'>;
  /** File feeds: rows of the supplier's last applied file. */
  readonly feedRows: Gauge<'supplier'>;
  /** File feeds: when the supplier's last file was applied (Unix seconds). */
  readonly feedLastApplied: Gauge<'supplier'>;

  constructor(defaults = true) {
    if (defaults) collectDefaultMetrics({ register: this.registry, prefix: 'cellar_process_' });
    const r = [this.registry];
    this.eventsIn = new Counter({ name: 'cellar_events_in_total', help: 'Records read by a stage', labelNames: ['stage'], registers: r });
    this.eventsOut = new Counter({ name: 'cellar_events_out_total', help: 'Records written by a stage', labelNames: ['stage'], registers: r });
    this.deadLetters = new Counter({ name: 'cellar_dead_letters_total', help: 'Records dead-lettered, by stage and reason', labelNames: ['stage', 'reason'], registers: r });
    this.staleEvents = new Counter({ name: 'cellar_stale_events_total', help: 'Changes at or below the applied version (duplicates, replays)', labelNames: ['stage'], registers: r });
    this.freshness = new Histogram({
      name: 'cellar_freshness_seconds',
      help: 'Time from source commit to the sink write',
      labelNames: ['sink'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: r,
    });
    this.sinkBatch = new Histogram({
      name: 'cellar_sink_batch_seconds',
      help: 'Duration of one sink batch write',
      labelNames: ['sink'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers: r,
    });
    this.consumerLag = new Gauge({ name: 'cellar_consumer_lag', help: 'Messages between the group\'s committed offset and the high watermark, per partition this member consumes (measured every 5 s and after each batch)', labelNames: ['group', 'topic', 'partition'], registers: r });
    this.reconciliationDrift = new Gauge({ name: 'cellar_reconciliation_drift_keys', help: 'Keys found drifted by the last reconciliation run of a supplier', labelNames: ['supplier'], registers: r });
    this.reconciliationLastSuccess = new Gauge({ name: 'cellar_reconciliation_last_success_timestamp_seconds', help: 'Unix time of the last completed reconciliation run of a supplier', labelNames: ['supplier'], registers: r });
    this.offsetResets = new Counter({ name: 'cellar_offset_resets_total', help: 'Consumer offsets reset because the broker no longer had the next message (removed by retention): changes were skipped', labelNames: ['group', 'topic'], registers: r });
    this.sourceUp = new Gauge({ name: 'cellar_source_up', help: '1 while the supplier\'s native reader is snapshotting or streaming, 0 while it starts, restarts or is stopped', labelNames: ['supplier'], registers: r });
    this.sourceLastChange = new Gauge({ name: 'cellar_source_last_change_timestamp_seconds', help: 'When the supplier\'s reader last handed over a change', labelNames: ['supplier'], registers: r });
    this.sourceLagBytes = new Gauge({ name: 'cellar_source_lag_bytes', help: 'Postgres: WAL bytes the supplier\'s slot retains; MySQL/MariaDB: binlog bytes after Cellar\'s checkpoint', labelNames: ['supplier'], registers: r });
    this.consumerStalls = new Counter({ name: 'cellar_consumer_stalls_total', help: 'Consumers started again after their partitions had lag and no progress for CELLAR_KAFKA_STALL_MS', labelNames: ['group'], registers: r });
    this.readerRestarts = new Counter({ name: 'cellar_reader_restarts_total', help: 'Native readers started again after their stream stopped on an error', labelNames: ['supplier'], registers: r });
    this.connectorUp = new Gauge({ name: 'cellar_connector_up', help: '1 while the Kafka Connect connector is RUNNING', labelNames: ['connector'], registers: r });
    this.connectorTaskFailed = new Gauge({ name: 'cellar_connector_task_failed', help: '1 while the connector task is FAILED', labelNames: ['connector', 'task'], registers: r });
    this.redisStale = new Gauge({ name: 'cellar_redis_stale', help: '1 while Redis is behind Postgres (unreachable, or being rebuilt from it), else 0 (embedded runtime)', registers: r });
    this.groupPhase = new Histogram({
      name: 'cellar_group_commit_phase_seconds',
      help: 'Embedded runtime: seconds one group commit spent in each phase (wait, prepare, queued, history, postgres, redis)',
      labelNames: ['phase'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers: r,
    });
    this.groupChanges = new Histogram({ name: 'cellar_group_commit_changes', help: 'Embedded runtime: changes per group commit', buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 50_000], registers: r });
    this.kafkaBatchMessages = new Histogram({ name: 'cellar_kafka_batch_messages', help: 'Kafka runtime: messages per partition batch a worker handled, by consumer group', labelNames: ['group'], buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000], registers: r });
    this.produceRequests = new Counter({ name: 'cellar_kafka_produce_requests_total', help: 'Kafka runtime: produce requests a worker made for its outputs (concurrent sends share one)', registers: r });
    this.produceSends = new Counter({ name: 'cellar_kafka_produce_sends_total', help: 'Kafka runtime: sends the produce requests carried (sends ÷ requests: how many shared a request)', registers: r });
    this.groupCommits = new Counter({ name: 'cellar_group_commits_total', help: 'Embedded runtime: group commits by path (ahead: in the transaction opened while the previous group committed; whole: written again in a new one, after a retried commit or a failure on the way ahead)', labelNames: ['path'], registers: r });
    this.stateKeysLoaded = new Counter({ name: 'cellar_state_keys_loaded_total', help: 'Embedded runtime: aggregate keys not in memory that a group needed, by where their state came from (read_ahead: read from Postgres while earlier groups committed; group: read by the group itself)', labelNames: ['from'], registers: r });
    this.feedFiles = new Counter({ name: 'cellar_feed_files_total', help: 'File feeds: files read, by outcome (applied, held: held back as a likely truncated export)', labelNames: ['supplier', 'outcome'], registers: r });
    this.feedRows = new Gauge({ name: 'cellar_feed_rows', help: 'File feeds: rows of the last applied file', labelNames: ['supplier'], registers: r });
    this.feedLastApplied = new Gauge({ name: 'cellar_feed_last_applied_timestamp_seconds', help: 'File feeds: when the last file was applied', labelNames: ['supplier'], registers: r });
    this.reconciliationRows = new Counter({ name: 'cellar_reconciliation_rows_compared_total', help: 'Source rows compared by reconciliation', labelNames: ['supplier'], registers: r });
  }

  /**
   * What a stage did with one batch, recorded the same way by both runtimes once the batch is durable:
   * records in and out, stale changes (at or below the applied version), dead letters by reason.
   */
  recordStage(stage: string, r: { in?: number; out?: number; stale?: number; letters?: ReadonlyArray<{ reason: string }> }): void {
    if (r.in) this.eventsIn.inc({ stage }, r.in);
    if (r.out) this.eventsOut.inc({ stage }, r.out);
    if (r.stale) this.staleEvents.inc({ stage }, r.stale);
    for (const l of r.letters ?? []) this.deadLetters.inc({ stage, reason: l.reason });
  }

  /** A file feed's report on a file it read (both runtimes, as the file is handed over). */
  recordFeedFile(supplier: string, r: { rows: number; held?: string }): void {
    this.feedFiles.inc({ supplier, outcome: r.held ? 'held' : 'applied' });
    if (r.held) return;
    this.feedRows.set({ supplier }, r.rows);
    this.feedLastApplied.set({ supplier }, Date.now() / 1000);
  }

  /** Value of a counter for the given labels (for tests and the demo's progress line). */
  async value(name: string, labels: Record<string, string> = {}): Promise<number> {
    const m = this.registry.getSingleMetric(name);
    if (!m) return 0;
    const { values } = await m.get();
    return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((s, v) => s + v.value, 0);
  }
}
