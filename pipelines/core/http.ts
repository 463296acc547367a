import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CellarMetrics } from './metrics.js';

/** What a worker's health endpoints report. */
export interface HealthSource {
  /** Alive: the process is running its loop. */
  live(): boolean;
  /** Ready: its dependencies answer (false while it retries an unreachable store or broker). */
  ready(): boolean;
  /** While not ready: what it is waiting for, for `/readyz`'s `reason` (never a secret). */
  reason?(): string | undefined;
}

/**
 * A worker's operations endpoint: `/metrics` (Prometheus text), `/healthz` (200 while alive) and
 * `/readyz` (200 when ready, 503 otherwise). Listens on 0.0.0.0 at `port` (0 = any free port).
 */
export async function startOpsServer(port: number, metrics: CellarMetrics, health: HealthSource): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        },
        () => {
          res.writeHead(500).end();
        },
      );
      return;
    }
    if (path === '/healthz' || path === '/readyz') {
      const ok = path === '/healthz' ? health.live() : health.live() && health.ready();
      const reason = ok ? undefined : health.reason?.();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: ok ? 'ok' : 'unavailable', ...(reason ? { reason } : {}) }));
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not found' }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '0.0.0.0', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
