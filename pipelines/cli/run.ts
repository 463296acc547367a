import { loadProcessEnv } from '../core/process-env.js';
import { loadRegistry } from '../../connectors/registry/loader.js';
import { loadRuntimeConfig } from '../core/config.js';
import { ConfigError } from '../core/errors.js';
import { createLogger, redactUrl } from '../core/logger.js';
import { CellarMetrics } from '../core/metrics.js';
import { startOpsServer } from '../core/http.js';
import { startWorker, type WorkerRole } from '../runtime/kafka-runtime.js';
import { startEmbedded } from '../runtime/embedded-runtime.js';
import { startCapture } from '../runtime/capture.js';
import { Reconciler, startScheduler } from '../reconcile/runner.js';
import { runApiProcess, startApi } from '../api/index.js';
import { watchConnectors } from '../../connectors/kafka-connect/watch.js';
import { createConnectStatusSource } from '../../connectors/kafka-connect/status-source.js';

/** What `cellar run <role>` runs: a Kafka worker, or one of the other long-running processes. */
export type RunRole = WorkerRole | 'embedded' | 'capture' | 'api' | 'scheduler';

/** `cellar run <role>`: loaded by main.ts only when a process is to run (it loads every runtime). */
export async function runCommand(role: RunRole, opts: { supplier?: string; api?: boolean; takeOver?: boolean }): Promise<void> {
  if (role === 'scheduler') return runSchedulerCommand();
  if (role === 'embedded') return runEmbeddedCommand(Boolean(opts.api), Boolean(opts.takeOver));
  if (role === 'api') return runApiProcess(loadRuntimeConfig(), createLogger('api'), new CellarMetrics());
  if (role === 'capture') return runCaptureCommand(opts.supplier, Boolean(opts.takeOver));
  return runWorkerCommand(role);
}

/** `cellar run normalizer|aggregator|sink-postgres|sink-redis`: runs until SIGTERM/SIGINT (drains). */
async function runWorkerCommand(role: WorkerRole): Promise<void> {
  const cfg = loadRuntimeConfig();
  const log = createLogger(role);
  log.info({ brokers: cfg.kafkaBrokers, compat: cfg.kafkaCompat, pg: redactUrl(cfg.pgUrl), topicPrefix: cfg.topicPrefix }, 'starting');
  const running = await startWorker(role, cfg, log);
  process.on('SIGHUP', () => {
    if (running.reload) void running.reload();
    else log.info({ role }, 'SIGHUP: this role reads no supplier files; nothing to reload');
  });
  let exiting = false;
  const shutdown = async (signal: string) => {
    if (exiting) return;
    exiting = true;
    log.info({ signal }, 'draining');
    await running.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/** `cellar run capture --supplier ID`: runs until SIGTERM/SIGINT. */
async function runCaptureCommand(supplierId: string | undefined, takeOver = false): Promise<void> {
  if (!supplierId) throw new ConfigError('cellar run capture needs --supplier <id>');
  const loaded = loadRuntimeConfig();
  const cfg = { ...loaded, takeOver: loaded.takeOver || takeOver };
  const log = createLogger(`capture-${supplierId}`);
  const metrics = new CellarMetrics();
  const capture = await startCapture(cfg, supplierId, log, metrics);
  const ops = cfg.httpPort >= 0 ? await startOpsServer(cfg.httpPort, metrics, { live: () => true, ready: () => true }) : undefined;
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      log.info({ signal: sig }, 'draining');
      void Promise.all([ops?.close(), capture.stop()]).then(() => process.exit(0));
    });
  }
  // SIGHUP: read the supplier files again (the outcome is logged; `cellar reload` reports it).
  process.on('SIGHUP', () => void capture.reload());
  capture.done?.catch((err: unknown) => {
    log.error({ err }, 'capture failed; exiting so a restart resumes from the last checkpoint');
    process.exit(1);
  });
}

/** `cellar run embedded`: runs until SIGTERM/SIGINT (drains) or a fatal error (exit 1, restart resumes). */
async function runEmbeddedCommand(withApi = false, takeOver = false): Promise<void> {
  const loaded = loadRuntimeConfig();
  const cfg = { ...loaded, takeOver: loaded.takeOver || takeOver };
  const log = createLogger('embedded');
  const metrics = new CellarMetrics();
  const rt = await startEmbedded(cfg, log, metrics);
  const ops = cfg.httpPort >= 0 ? await startOpsServer(cfg.httpPort, metrics, { live: () => true, ready: () => rt.isReady(), reason: () => rt.notReadyReason() }) : undefined;
  const api = withApi ? await startApi(cfg, log, metrics) : undefined;
  log.info({ captured: rt.captured, skipped: rt.skipped, httpPort: ops?.port, api: api?.url, dashboard: api && `${api.url}/dashboard` }, 'embedded runtime started');
  const shutdown = async (signal: string) => {
    log.info({ signal }, 'draining');
    await api?.stop();
    await ops?.close();
    await rt.stop();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
  // SIGHUP: read the supplier files and SKU maps again (the outcome is logged; `cellar reload` reports it).
  process.on('SIGHUP', () => void rt.reload());
  const err = await rt.failed;
  log.error({ err }, 'embedded runtime failed; exiting so a restart resumes from the last commit');
  process.exit(1);
}

/**
 * `cellar run scheduler`: scheduled reconciliations from the registry, and with CELLAR_CONNECT_URL the
 * Kafka Connect connector gauges (read every CELLAR_CONNECTOR_POLL_MS), until SIGTERM/SIGINT.
 */
async function runSchedulerCommand(): Promise<void> {
  const cfg = loadRuntimeConfig();
  const { connectorPollMs } = loadProcessEnv();
  const log = createLogger('scheduler');
  const metrics = new CellarMetrics();
  const reconciler = new Reconciler(cfg, log, metrics);
  await reconciler.prepare();
  const scheduler = startScheduler(reconciler, loadRegistry(cfg.suppliersDir), log);
  if (!scheduler.jobs) log.warn('no supplier has reconcile.schedule in the registry; nothing to do until one does');
  // With Kafka Connect configured, this process also exports connector states for the alert rules.
  const watch = cfg.connectUrl ? watchConnectors(createConnectStatusSource(cfg.connectUrl), metrics, log, connectorPollMs) : undefined;
  const ops = cfg.httpPort >= 0 ? await startOpsServer(cfg.httpPort, metrics, { live: () => true, ready: () => true }) : undefined;
  log.info({ reconciliations: scheduler.jobs, connectors: cfg.connectUrl ? 'watched' : 'not configured', httpPort: ops?.port }, 'scheduler started');
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      log.info({ signal: sig }, 'draining');
      watch?.stop();
      void Promise.all([ops?.close(), scheduler.stop()]).then(() => reconciler.close()).then(() => process.exit(0));
    });
  }
}
