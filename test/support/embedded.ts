import { existsSync, readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import type pg from 'pg';
import { Redis } from 'ioredis';
import { startLocalRedis, type LocalRedis } from '../../infra/local/redis.js';
import { loadRuntimeConfig } from '../../pipelines/core/config.js';
import { createLogger } from '../../pipelines/core/logger.js';
import { CellarMetrics } from '../../pipelines/core/metrics.js';
import { startEmbedded, type EmbeddedRuntime } from '../../pipelines/runtime/embedded-runtime.js';
import { freshDatabase, supplierDir } from './services.js';

/** The embedded runtime in this process, over a fresh Cellar database and a private Redis. */
export interface EmbeddedUnderTest {
  rt: EmbeddedRuntime;
  metrics: CellarMetrics;
  cellar: { url: string; pool: pg.Pool };
  redis: Redis;
  /** The private Redis the runtime writes. */
  redisUrl: string;
  /** The folder of the supplier files the runtime reads (a test may change them, then reload). */
  suppliersDir: string;
  /** The error the runtime stopped on, if it did. */
  failed(): Error | undefined;
  stop(): Promise<void>;
}

/**
 * Starts the embedded runtime in-process for the given supplier files. Redis is private because the
 * runtime rebuilds Redis from its own database at start (and removes regions it does not know).
 * `opts.cellar` is a Cellar database prepared beforehand (its pool is closed by `stop()`); `opts.env`
 * adds settings.
 */
export async function startEmbeddedUnderTest(
  suppliers: Record<string, string>,
  logName = 'embedded-test',
  opts: { cellar?: { url: string; pool: pg.Pool }; env?: Record<string, string> } = {},
): Promise<EmbeddedUnderTest> {
  const cellar = opts.cellar ?? (await freshDatabase());
  let redisServer: LocalRedis | undefined;
  try {
    redisServer = await startLocalRedis();
    const cfg = loadRuntimeConfig({ ...process.env, CELLAR_STATE_CACHE_CONTRIBUTORS: '100', ...opts.env, CELLAR_PG_URL: cellar.url, CELLAR_REDIS_URL: redisServer.url, CELLAR_SUPPLIERS_DIR: supplierDir(suppliers) });
    const metrics = new CellarMetrics(false);
    const rt = await startEmbedded(cfg, createLogger(logName, 'error'), metrics);
    let failed: Error | undefined;
    void rt.failed.then((e) => (failed = e));
    const redis = new Redis(redisServer.url);
    const server = redisServer;
    return {
      rt, metrics, cellar, redis, redisUrl: server.url, suppliersDir: cfg.suppliersDir,
      failed: () => failed,
      stop: async () => {
        await rt.stop();
        redis.disconnect();
        await server.destroy();
        await cellar.pool.end();
      },
    };
  } catch (err) {
    await redisServer?.destroy();
    await cellar.pool.end();
    throw err;
  }
}

/** A `cellar` process' state and the last `lines` lines of its log, for a failure message: why a wait did not converge. */
export function explainProcess(proc: ChildProcess | undefined, logFile: string, lines = 30): string {
  const state = !proc ? 'not started' : proc.exitCode !== null ? `exited with ${proc.exitCode}` : proc.signalCode ? `ended by ${proc.signalCode}` : `running, pid ${proc.pid}`;
  const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n').filter(Boolean).slice(-lines) : [];
  return `--- cellar (${state}); last ${tail.length} log lines of ${logFile}:\n${tail.join('\n')}`;
}

/** The value of an unlabelled metric on a process' `/metrics` (`CELLAR_HTTP_PORT`), or undefined when absent. */
export async function metricValue(httpPort: number, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}
