import { Counter, Gauge, Histogram } from 'prom-client';
import type { CellarMetrics } from '../core/metrics.js';

/** The read API's own metrics, registered on the process' Cellar registry (prefix `cellar_api_`). */
export interface ApiMetrics {
  /** Requests answered, by route pattern and status code. */
  requests: Counter<'route' | 'status'>;
  /** Time to answer, seconds, by route pattern. */
  latency: Histogram<'route'>;
  /** Open server-sent event streams. */
  sseClients: Gauge;
}

/** Creates the API metrics on `metrics.registry` (once per registry). */
export function createApiMetrics(metrics: CellarMetrics): ApiMetrics {
  const registers = [metrics.registry];
  const existing = metrics.registry.getSingleMetric('cellar_api_requests_total');
  if (existing) {
    return {
      requests: existing as Counter<'route' | 'status'>,
      latency: metrics.registry.getSingleMetric('cellar_api_request_seconds') as Histogram<'route'>,
      sseClients: metrics.registry.getSingleMetric('cellar_api_sse_clients') as Gauge,
    };
  }
  return {
    requests: new Counter({ name: 'cellar_api_requests_total', help: 'Read API requests answered, by route and status', labelNames: ['route', 'status'], registers }),
    latency: new Histogram({
      name: 'cellar_api_request_seconds',
      help: 'Read API time to answer, by route',
      labelNames: ['route'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
      registers,
    }),
    sseClients: new Gauge({ name: 'cellar_api_sse_clients', help: 'Open server-sent event streams', registers }),
  };
}
