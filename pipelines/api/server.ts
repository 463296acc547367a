import { readdirSync, readFileSync } from 'node:fs';
import { registerHistoryRoutes } from './routes-history.js';
import { readPem } from '../core/pg-tls.js';
import { createRedis } from '../core/redis.js';
import { extname, join } from 'node:path';
import Fastify, { type FastifyInstance, type onRequestHookHandler, type onSendHookHandler } from 'fastify';
import { Redis } from 'ioredis';
import type pg from 'pg';
import type { Logger } from '../core/logger.js';
import type { CellarMetrics } from '../core/metrics.js';
import { assetPath } from '../core/paths.js';
import { createPgPool, query } from '../core/pg.js';
import { createApiMetrics } from './api-metrics.js';
import { recordAudit } from './audit.js';
import { ApiKeyAuthenticator, presentedKey, type AuthenticatedKey, type AuthResult } from './auth.js';
import { errorAnswer } from './errors.js';
import { roleAllows, type Role } from './keys-store.js';
import { collectRoutes, openApiDocument } from './openapi.js';
import { PipelineMonitor } from './pipeline-health.js';
import { RateLimiter } from './rate-limit.js';
import { registerOpsRoutes, type OpsDeps } from './routes-ops.js';
import { registerSupplierRoutes } from './routes-suppliers.js';
import { registerFeedRoutes } from './routes-feed.js';
import { registerStockRoutes } from './routes-stock.js';
import { ANY_OBJECT, errorResponses } from './schemas.js';
import { registerEventRoutes, StockEventHub } from './sse.js';
import { registerStockEventRoutes } from './routes-stock-events.js';
import { registerWebhookRoutes } from './routes-webhooks.js';
import { StockEventLogHub } from './stock-event-hub.js';
import { StockReader } from './stock-reader.js';
import { HotKeyCache } from './hot-cache.js';

declare module 'fastify' {
  /** OpenAPI annotations on route schemas (see openapi.ts). */
  interface FastifySchema {
    summary?: string;
    description?: string;
    tags?: string[];
    /** Left out of the OpenAPI document. */
    hide?: boolean;
  }
  interface FastifyContextConfig {
    /** The least role a key needs; routes without one are public (health, metrics, OpenAPI, the dashboard page). */
    role?: Role;
    /** Audit action name: every call of the route is written to cellar.api_audit. */
    audit?: string;
  }
  interface FastifyRequest {
    apiKey?: AuthenticatedKey;
    /** What an audited action acted on, set by its handler. */
    auditTarget?: string;
    /** A short outcome note for the audit row, set by its handler. */
    auditDetail?: string;
  }
}

/** What the read API serves from and acts on. */
export interface ApiServerOptions extends Omit<OpsDeps, 'pool'> {
  /** The supplier files (CELLAR_SUPPLIERS_DIR): which suppliers push their rows, and their limits. */
  suppliersDir?: string;
  /** Cellar's Postgres (regional_stock, api_keys, api_audit, dead_letters). */
  pgUrl: string;
  /** The Redis of the snapshots and the change stream. */
  redisUrl: string;
  log: Logger;
  /** This process' registry: the API's own metrics go here, and it is read for pipeline health. */
  metrics: CellarMetrics;
  /** Further in-process registries read for pipeline health (the embedded runtime's). */
  extraRegistries?: CellarMetrics[];
  /** Worker /metrics URLs read for pipeline health. */
  scrapeUrls?: string[];
  /** Key prefix of the Redis snapshots. Default `cellar`. */
  keyPrefix?: string;
  /** Serve HTTPS with this certificate and key (PEM files, read again by {@link ApiServer.reloadTls}). */
  tls?: { certFile: string; keyFile: string };
  /** Proxies whose X-Forwarded-For is believed for the client address (addresses or CIDRs). Default none. */
  trustProxy?: string[];
  /** Requests without a valid key one client address may make per second (bursts of twice that); 0: unlimited. Default 5. */
  failedAuthPerS?: number;
  /**
   * Prefix of Cellar's connector names (`<prefix><supplier id>`), to find each supplier's connector among
   * `connectors`. Default CELLAR_CONNECT_NAME_PREFIX, else the one `cellar connectors` uses.
   */
  connectorNamePrefix?: string;
}

/** Requests without a valid key each client address may make, per second on average (bursts of twice that). */
const FAILED_AUTH_PER_S = 5;

/** A built (not yet listening) read API and what it holds. */
export interface ApiServer {
  app: FastifyInstance;
  pool: pg.Pool;
  /** Starts listening; returns the base URL. */
  listen(port: number, host: string): Promise<string>;
  /** Reads the TLS certificate and key files again (SIGHUP); false when the API serves plain HTTP. Throws when they cannot be read. */
  reloadTls(): boolean;
  close(): Promise<void>;
}

/** Content types of the dashboard's files, by extension: every such file of pipelines/api/dashboard is served. */
const DASHBOARD_TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

/**
 * Builds the read API: stock reads (Redis, Postgres fallback), server-sent change events, pipeline
 * health, operator/admin endpoints, the dashboard page, `/openapi.json`, `/metrics`, `/healthz`, `/readyz`.
 * Every `/v1` route needs an API key with the route's role; each key is rate limited; operator and admin
 * calls are audited. Keys are read from headers only and never logged.
 */
export async function createApiServer(o: ApiServerOptions): Promise<ApiServer> {
  const pool = createPgPool(o.pgUrl, { max: 8, applicationName: 'cellar-api' });
  const redisOpts = { maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 2_000, retryStrategy: (n: number) => Math.min(200 * n, 2_000) };
  const redis = createRedis(o.redisUrl, { ...redisOpts, enableAutoPipelining: true });
  const streamReader = createRedis(o.redisUrl, { maxRetriesPerRequest: null, retryStrategy: (n: number) => Math.min(200 * n, 2_000) });
  for (const r of [redis, streamReader]) r.on('error', () => undefined); // surfaced per command
  const log = o.log;
  const apiMetrics = createApiMetrics(o.metrics);
  const auth = new ApiKeyAuthenticator(pool, o.pgUrl, log);
  await auth.start();
  const limiter = new RateLimiter();
  const hub = new StockEventHub(streamReader, redis, log, o.keyPrefix);
  const reader = new StockReader(redis, pool, o.keyPrefix, new HotKeyCache(hub));
  const eventLog = new StockEventLogHub(pool, log);
  const monitor = new PipelineMonitor([o.metrics, ...(o.extraRegistries ?? [])], o.scrapeUrls ?? [], pool, redis);
  monitor.start();

  const pem = () => o.tls && { cert: readPem(o.tls.certFile, 'CELLAR_API_TLS_CERT_FILE'), key: readPem(o.tls.keyFile, 'CELLAR_API_TLS_KEY_FILE') };
  const app = Fastify({ ...(o.tls ? { https: pem()! } : {}), ...(o.trustProxy?.length ? { trustProxy: o.trustProxy } : {}), logger: false, forceCloseConnections: true, routerOptions: { maxParamLength: 600 }, bodyLimit: 1 << 20, ajv: { customOptions: { coerceTypes: 'array', allErrors: false, removeAdditional: false } } });
  const routes = collectRoutes(app);

  /** Checks key, role and rate limit; answers 401/403/429 itself, else lets the request through. */
  const authHook = (need: Role): onRequestHookHandler => (req, reply, done) => {
    const finish = (res: AuthResult) => {
      if ('failure' in res) {
        // Guessing keys is slowed per client address (behind a trusted proxy: the address it forwards).
        const guard = limiter.take(`addr:${req.ip}`, o.failedAuthPerS ?? FAILED_AUTH_PER_S);
        if (!guard.allowed) {
          return void reply.code(429).header('retry-after', String(guard.retryAfterS))
            .send({ error: { code: 'rate_limited', message: `too many requests without a valid key from ${req.ip}; retry after ${guard.retryAfterS} s` } });
        }
        return void reply.code(401).header('www-authenticate', 'Bearer realm="cellar"').send({ error: res.failure });
      }
      const key = res.key;
      req.apiKey = key;
      if (!roleAllows(key.role, need)) {
        return void reply.code(403).send({ error: { code: 'forbidden', message: `key ${key.id} has role ${key.role}; this endpoint needs ${need}` } });
      }
      const rate = limiter.take(key.id, key.rateLimitPerS);
      if (!rate.allowed) {
        return void reply
          .code(429)
          .header('retry-after', String(rate.retryAfterS))
          .header('ratelimit-limit', String(rate.limit))
          .header('ratelimit-remaining', '0')
          .send({ error: { code: 'rate_limited', message: `key ${key.id} exceeded its limit of ${key.rateLimitPerS} requests/s; retry after ${rate.retryAfterS} s` } });
      }
      done();
    };
    const presented = presentedKey(req.headers);
    const cached = auth.authenticateCached(presented);
    if (cached) return finish(cached);
    auth.authenticate(presented).then(finish, (err: unknown) => done(err as Error));
  };

  /** Writes the audit row of an operator/admin call before its answer leaves. */
  const auditHook = (action: string): onSendHookHandler => async (req, reply, payload) => {
    const status = reply.statusCode;
    let detail = req.auditDetail;
    if (status >= 400 && typeof payload === 'string') {
      try {
        detail = (JSON.parse(payload) as { error?: { message?: string } }).error?.message ?? detail;
      } catch {
        /* not JSON */
      }
    }
    const key = req.apiKey;
    await recordAudit(pool, {
      keyId: key?.id ?? null,
      keyName: key?.name ?? null,
      actor: key ? `key:${key.name}` : 'anonymous',
      action,
      target: req.auditTarget ?? null,
      params: { params: req.params, query: req.query, body: req.body },
      outcome: status < 400 ? 'ok' : status === 401 || status === 403 || status === 429 ? 'denied' : 'failed',
      status,
      detail,
      clientAddr: req.ip,
    }).catch((err: unknown) => log.error({ err: (err as Error).message, action }, 'writing the audit row failed'));
    return payload;
  };

  // Hooks only on the routes that need them: public routes and reads pay for nothing else.
  app.addHook('onRoute', (r) => {
    const cfg = r.config as { role?: Role; audit?: string } | undefined;
    const list = <T>(h: T | T[] | undefined): T[] => (h === undefined ? [] : Array.isArray(h) ? h : [h]);
    if (cfg?.role) r.onRequest = [...list(r.onRequest), authHook(cfg.role)];
    if (cfg?.audit) r.onSend = [...list(r.onSend), auditHook(cfg.audit)];
  });

  const counters = new Map<string, { inc(): void }>();
  const timers = new Map<string, { observe(v: number): void }>();
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const k = `${route} ${reply.statusCode}`;
    let c = counters.get(k);
    if (!c) counters.set(k, (c = apiMetrics.requests.labels(route, String(reply.statusCode))));
    c.inc();
    let t = timers.get(route);
    if (!t) timers.set(route, (t = apiMetrics.latency.labels(route)));
    t.observe(reply.elapsedTime / 1000);
    done();
  });

  app.setErrorHandler((err, req, reply) => {
    const a = errorAnswer(err);
    if (a.unexpected) log.error({ err, route: req.routeOptions.url, method: req.method }, 'request failed');
    return reply.code(a.status).send(a.body);
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: { code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` } }));

  registerStockRoutes(app, reader, pool);
  registerHistoryRoutes(app, pool);
  registerEventRoutes(app, hub, apiMetrics, (r) => reader.noteRegion(r));
  registerStockEventRoutes(app, pool, eventLog, apiMetrics);
  registerOpsRoutes(app, { pool, connectors: o.connectors, reconcile: o.reconcile, producer: o.producer });
  registerSupplierRoutes(app, { pool, connectors: o.connectors, namePrefix: o.connectorNamePrefix });
  registerFeedRoutes(app, { pool, ...(o.suppliersDir ? { suppliersDir: o.suppliersDir } : {}) });
  registerWebhookRoutes(app, { pool });

  app.get(
    '/v1/pipeline',
    {
      config: { role: 'reader' },
      schema: {
        summary: 'Pipeline health: throughput per stage, consumer lag, freshness p50/p99, dead letters by reason, last reconciliation',
        tags: ['pipeline'],
        response: { 200: ANY_OBJECT, ...errorResponses() },
      },
    },
    async () => monitor.health(),
  );

  const doc = () => openApiDocument(routes, { title: 'Cellar read API', version: '1', description: 'Regional stock, live changes, pipeline health and operations.' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => doc());

  let ready = { at: 0, ok: false };
  const checkReady = async () => {
    if (Date.now() - ready.at < 1_000) return ready.ok;
    const ok = await Promise.all([redis.ping().then(() => true), query(pool, 'readiness', 'SELECT 1').then(() => true)]).then(
      () => true,
      () => false,
    );
    ready = { at: Date.now(), ok };
    return ok;
  };
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    const ok = await checkReady();
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ok' : 'unavailable' });
  });
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => reply.type(o.metrics.registry.contentType).send(await o.metrics.registry.metrics()));

  const dashboardDir = assetPath('pipelines', 'api', 'dashboard');
  const files = new Map(readdirSync(dashboardDir).filter((f) => extname(f) in DASHBOARD_TYPES).map((f) => [f, { type: DASHBOARD_TYPES[extname(f)]!, body: readFileSync(join(dashboardDir, f)) }]));
  const serveFile = (name: string) => async (_req: unknown, reply: import('fastify').FastifyReply) => {
    const f = files.get(name)!;
    return reply
      .type(f.type)
      .header('cache-control', 'no-cache')
      .header('content-security-policy', "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
      .header('x-content-type-options', 'nosniff')
      .send(f.body);
  };
  app.get('/', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/dashboard'));
  app.get('/dashboard', { schema: { hide: true } }, serveFile('index.html'));
  for (const name of files.keys()) app.get(`/dashboard/${name}`, { schema: { hide: true } }, serveFile(name));

  await app.ready();
  let closed: Promise<void> | undefined;
  return {
    app,
    pool,
    listen: async (port, host) => {
      await app.listen({ port, host });
      const addr = app.server.address();
      const p = typeof addr === 'object' && addr ? addr.port : port;
      return `${o.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host}:${p}`;
    },
    reloadTls: () => {
      if (!o.tls) return false;
      // New connections get the new certificate; open ones keep theirs. A file that cannot be read keeps the old one (thrown).
      (app.server as import('node:https').Server).setSecureContext(pem()!);
      return true;
    },
    close: () =>
      (closed ??= (async () => {
        monitor.stop();
        await hub.stop();
        eventLog.stop();
        await app.close();
        await auth.close();
        redis.disconnect();
        await pool.end().catch(() => undefined);
      })()),
  };
}
