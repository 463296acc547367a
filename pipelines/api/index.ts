import type { Producer } from 'kafkajs';
import type { RuntimeConfig } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import { connectProducer, createKafka } from '../kafka/client.js';
import { createConnectStatusSource } from './connect-status.js';
import type { ReconcileFn } from './routes-ops.js';
import { createApiServer, type ApiServer } from './server.js';

export { createApiServer, type ApiServer, type ApiServerOptions } from './server.js';
export type { ReconcileFn } from './routes-ops.js';
export type { ConnectorStatusSource, ConnectorStatus } from './connect-status.js';

/** A listening read API. */
export interface RunningApi {
  url: string;
  server: ApiServer;
  stop(): Promise<void>;
}

/**
 * Starts the read API and dashboard from the runtime configuration (`cellar run api`, or inside
 * `cellar run embedded` / `cellar demo --api`): Postgres and Redis from CELLAR_PG_URL / CELLAR_REDIS_URL,
 * connector status from CELLAR_CONNECT_URL, worker metrics from CELLAR_API_SCRAPE_URLS, a Kafka producer
 * (created on the first dead-letter replay) from CELLAR_KAFKA_*.
 */
export async function startApi(
  cfg: RuntimeConfig,
  log: Logger,
  metrics: CellarMetrics,
  extra: { extraRegistries?: CellarMetrics[]; reconcile?: ReconcileFn; port?: number; host?: string } = {},
): Promise<RunningApi> {
  let producer: Promise<Producer> | undefined;
  const server = await createApiServer({
    pgUrl: cfg.pgUrl,
    redisUrl: cfg.redisUrl,
    log,
    metrics,
    extraRegistries: extra.extraRegistries,
    scrapeUrls: cfg.apiScrapeUrls,
    connectors: cfg.connectUrl ? createConnectStatusSource(cfg.connectUrl) : undefined,
    reconcile: extra.reconcile,
    producer: () => (producer ??= connectProducer(createKafka(cfg, log, 'api'), cfg).catch((err: unknown) => {
      producer = undefined;
      throw err;
    })),
  });
  const url = await server.listen(extra.port ?? cfg.apiPort, extra.host ?? cfg.apiHost);
  return {
    url,
    server,
    stop: async () => {
      await server.close();
      await (await producer?.catch(() => undefined))?.disconnect().catch(() => undefined);
    },
  };
}

/** `cellar run api`: the read API and dashboard until SIGTERM/SIGINT. */
export async function runApiProcess(cfg: RuntimeConfig, log: Logger, metrics: CellarMetrics): Promise<void> {
  const api = await startApi(cfg, log, metrics);
  log.info({ url: api.url, dashboard: `${api.url}/dashboard`, openapi: `${api.url}/openapi.json` }, 'read API listening');
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      log.info({ signal: sig }, 'stopping');
      void api.stop().then(() => process.exit(0));
    });
  }
}
