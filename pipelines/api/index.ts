import cluster from 'node:cluster';
import type { Producer } from 'kafkajs';
import type { RuntimeConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import { connectProducer, createKafka } from '../kafka/client.js';
import { Reconciler } from '../reconcile/runner.js';
import { createConnectStatusSource } from '../../connectors/kafka-connect/status-source.js';
import type { ReconcileFn } from './routes-ops.js';
import { createApiServer, type ApiServer } from './server.js';

export { createApiServer, type ApiServer, type ApiServerOptions } from './server.js';
export type { ReconcileFn } from './routes-ops.js';
export type { ConnectorStatusSource, ConnectorStatus } from '../../connectors/kafka-connect/status-source.js';

/** A listening read API. */
export interface RunningApi {
  url: string;
  server: ApiServer;
  stop(): Promise<void>;
}

/**
 * Reconciliation for `POST /v1/ops/reconcile`: the suppliers of CELLAR_SUPPLIERS_DIR, one by id or every
 * readable one, through the same {@link Reconciler} as `cellar reconcile` (created on first use). Answers
 * each run's summary and its first 100 differences.
 */
export function apiReconcile(cfg: RuntimeConfig, log: Logger, metrics: CellarMetrics): { run: ReconcileFn; close(): Promise<void> } {
  let reconciler: Promise<Reconciler> | undefined;
  const get = () =>
    (reconciler ??= (async () => {
      const r = new Reconciler(cfg, log, metrics);
      await r.prepare();
      return r;
    })().catch((err: unknown) => {
      reconciler = undefined;
      throw err;
    }));
  return {
    run: async ({ supplierId, repair }) => {
      const reports = await (await get()).run({ supplierId, repair, trigger: 'api' });
      return {
        runs: reports.map(({ drift, ...r }) => ({ ...r, driftedKeys: drift.length, drift: drift.slice(0, 100) })),
      };
    },
    close: async () => (await reconciler?.catch(() => undefined))?.close(),
  };
}

/**
 * Starts the read API and dashboard from the runtime configuration (`cellar run api`, or inside
 * `cellar run embedded` / `cellar demo --api`): Postgres and Redis from CELLAR_PG_URL / CELLAR_REDIS_URL,
 * reconciliation of the suppliers in CELLAR_SUPPLIERS_DIR, connector status from CELLAR_CONNECT_URL, worker metrics from CELLAR_API_SCRAPE_URLS, a Kafka producer
 * (created on the first dead-letter replay) from CELLAR_KAFKA_*.
 */
export async function startApi(
  cfg: RuntimeConfig,
  log: Logger,
  metrics: CellarMetrics,
  extra: { extraRegistries?: CellarMetrics[]; reconcile?: ReconcileFn; port?: number; host?: string } = {},
): Promise<RunningApi> {
  let producer: Promise<Producer> | undefined;
  const reconcile = extra.reconcile ? undefined : apiReconcile(cfg, log, metrics);
  const server = await createApiServer({
    ...(cfg.apiTlsCertFile && cfg.apiTlsKeyFile ? { tls: { certFile: cfg.apiTlsCertFile, keyFile: cfg.apiTlsKeyFile } } : {}),
    ...(cfg.apiTrustProxy ? { trustProxy: cfg.apiTrustProxy.split(',').map((x) => x.trim()).filter(Boolean) } : {}),
    pgUrl: cfg.pgUrl,
    redisUrl: cfg.redisUrl,
    suppliersDir: cfg.suppliersDir,
    log,
    metrics,
    extraRegistries: extra.extraRegistries,
    scrapeUrls: cfg.apiScrapeUrls,
    connectors: cfg.connectUrl ? createConnectStatusSource(cfg.connectUrl) : undefined,
    reconcile: extra.reconcile ?? reconcile?.run,
    producer: () => (producer ??= connectProducer(createKafka(cfg, log, 'api'), cfg).catch((err: unknown) => {
      producer = undefined;
      throw err;
    })),
  });
  const url = await server.listen(extra.port ?? cfg.apiPort, extra.host ?? cfg.apiHost);
  // SIGHUP: a renewed certificate is served without a restart.
  const onHangup = () => {
    try {
      if (server.reloadTls()) log.info({ cert: cfg.apiTlsCertFile }, 'API TLS certificate reloaded');
    } catch (err) {
      log.error({ err: (err as Error).message }, 'reloading the API TLS certificate failed; the previous one is still served');
    }
  };
  process.on('SIGHUP', onHangup);
  return {
    url,
    server,
    stop: async () => {
      process.off('SIGHUP', onHangup);
      await server.close();
      await reconcile?.close();
      await (await producer?.catch(() => undefined))?.disconnect().catch(() => undefined);
    },
  };
}

/** `cellar run api`: the read API and dashboard until SIGTERM/SIGINT. */
export async function runApiProcess(cfg: RuntimeConfig, log: Logger, metrics: CellarMetrics): Promise<void> {
  if (cfg.apiWorkers > 1 && cluster.isPrimary) return superviseApiWorkers(cfg.apiWorkers, log);
  const api = await startApi(cfg, log, metrics);
  log.info({ listening: api.url, dashboard: `${api.url}/dashboard`, openapi: `${api.url}/openapi.json` }, 'read API listening');
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      log.info({ signal: sig }, 'stopping');
      void api.stop().then(() => process.exit(0));
    });
  }
}

/**
 * With CELLAR_API_WORKERS > 1: forks that many API processes sharing the port (the primary hands out
 * connections), replaces one that dies, and on SIGTERM/SIGINT stops them all and exits. Each worker has its
 * own caches, rate limits and event-stream readers (rate limits are per process).
 */
function superviseApiWorkers(n: number, log: Logger): void {
  let stopping = false;
  const fork = () => cluster.fork();
  for (let i = 0; i < n; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    log.error({ pid: worker.process.pid, code, signal }, 'API worker exited; starting another');
    setTimeout(fork, 1_000).unref();
  });
  log.info({ workers: n }, 'read API workers starting');
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      stopping = true;
      log.info({ signal: sig }, 'stopping API workers');
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    });
  }
}
