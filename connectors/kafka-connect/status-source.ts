import { createKafkaConnectClient } from './client.js';

/**
 * One connector's state as Kafka Connect reports it, flattened for the operator endpoint (`GET /v1/ops/connectors`)
 * and the connector gauges (`watch.ts`); `client.ts`'s `ConnectorStatus` is Connect's raw shape.
 */
export interface ConnectorStatus {
  name: string;
  state: string;
  workerId?: string;
  /** Connector class type (`source`), when Connect says. */
  type?: string;
  tasks: Array<{ id: number; state: string; workerId?: string; trace?: string }>;
}

/** Where the operator endpoint and `watchConnectors` get connector status from (a Kafka Connect cluster, or a test double). */
export interface ConnectorStatusSource {
  status(): Promise<ConnectorStatus[]>;
}

/**
 * Every connector's status from the Kafka Connect REST API in one call (`GET /connectors?expand=status`),
 * through Cellar's Connect client (timeouts, retries on rebalance, credentials kept out of messages).
 * Failures are retriable CellarErrors, which the endpoint answers with 503.
 */
export function createConnectStatusSource(connectUrl: string, timeoutMs = 5_000): ConnectorStatusSource {
  const client = createKafkaConnectClient({ connectUrl, timeoutMs, retries: 1, retryMinDelayMs: 200, retryMaxDelayMs: 1_000 });
  return {
    async status() {
      const all = await client.listConnectors();
      return Object.entries(all)
        .map(([name, v]) => ({
          name,
          state: v.status?.connector.state ?? 'UNKNOWN',
          workerId: v.status?.connector.worker_id,
          type: v.status?.type ?? v.info?.type,
          tasks: (v.status?.tasks ?? []).map((t) => ({ id: t.id, state: t.state, workerId: t.worker_id, trace: t.trace })),
        }))
        .sort((a, b) => a.name.localeCompare(b.name));
    },
  };
}
