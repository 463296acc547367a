import type { Logger } from '../../pipelines/core/logger.js';
import type { CellarMetrics } from '../../pipelines/core/metrics.js';
import type { ConnectorStatusSource } from './status-source.js';

/**
 * Polls Kafka Connect and exports each connector's state as `cellar_connector_up{connector}` (1 while
 * RUNNING) and each task's as `cellar_connector_task_failed{connector,task}`, for the alert rules. A
 * connector that disappears is dropped from the gauges; while Connect does not answer, the gauges keep
 * their last values and the failure is logged (Prometheus' own `up` tells the process is alive).
 * Returns a stop function. Default every 30 s.
 */
export function watchConnectors(source: ConnectorStatusSource, metrics: CellarMetrics, log: Logger, everyMs = 30_000): { stop(): void; poll(): Promise<void> } {
  let known = new Set<string>();
  const poll = async () => {
    try {
      const all = await source.status();
      const now = new Set(all.map((c) => c.name));
      for (const gone of known) {
        if (!now.has(gone)) {
          metrics.connectorUp.remove({ connector: gone });
        }
      }
      metrics.connectorTaskFailed.reset();
      for (const c of all) {
        metrics.connectorUp.set({ connector: c.name }, c.state === 'RUNNING' ? 1 : 0);
        for (const t of c.tasks) metrics.connectorTaskFailed.set({ connector: c.name, task: String(t.id) }, t.state === 'FAILED' ? 1 : 0);
      }
      known = now;
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'Kafka Connect status unavailable; connector gauges keep their last values');
    }
  };
  const timer = setInterval(() => void poll(), everyMs);
  timer.unref();
  void poll();
  return { stop: () => clearInterval(timer), poll };
}
