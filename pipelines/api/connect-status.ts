import axios from 'axios';
import { CellarError } from '../core/errors.js';
import { redactUrl } from '../core/logger.js';

/** One connector's state as Kafka Connect reports it. */
export interface ConnectorStatus {
  name: string;
  state: string;
  workerId?: string;
  tasks: Array<{ id: number; state: string; workerId?: string; trace?: string }>;
}

/** Where the operator endpoint gets connector status from (a Kafka Connect cluster, or a test double). */
export interface ConnectorStatusSource {
  status(): Promise<ConnectorStatus[]>;
}

interface ConnectStatusBody {
  name: string;
  connector: { state: string; worker_id?: string };
  tasks?: Array<{ id: number; state: string; worker_id?: string; trace?: string }>;
}

/**
 * Reads every connector's status from the Kafka Connect REST API in one call
 * (`GET /connectors?expand=status`). Failures are retriable CellarErrors (the endpoint answers 503).
 */
export function createConnectStatusSource(baseUrl: string, timeoutMs = 5_000): ConnectorStatusSource {
  const http = axios.create({ baseURL: baseUrl.replace(/\/+$/, ''), timeout: timeoutMs });
  return {
    async status() {
      try {
        const res = await http.get<Record<string, { status?: ConnectStatusBody }>>('/connectors', { params: { expand: 'status' } });
        return Object.entries(res.data)
          .map(([name, v]) => ({
            name,
            state: v.status?.connector.state ?? 'UNKNOWN',
            workerId: v.status?.connector.worker_id,
            tasks: (v.status?.tasks ?? []).map((t) => ({ id: t.id, state: t.state, workerId: t.worker_id, trace: t.trace })),
          }))
          .sort((a, b) => a.name.localeCompare(b.name));
      } catch (err) {
        throw new CellarError('connect_unavailable', `Kafka Connect at ${redactUrl(baseUrl)}: ${(err as Error).message}`, { retriable: true, cause: err });
      }
    },
  };
}
