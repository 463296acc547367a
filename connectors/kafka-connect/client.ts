import axios, { type AxiosInstance, type AxiosResponse } from 'axios';
import { httpEndpoint } from '../../schemas/endpoint.js';
import { CellarError } from '../../pipelines/core/errors.js';
import { redactUrl } from '../../pipelines/core/logger.js';
import { withRetry } from '../../pipelines/core/retry.js';
import type { KafkaConnectOptions } from './config.js';

/** `GET /connectors/{name}` and the `info` of `?expand=info`. */
export interface ConnectorInfo {
  name: string;
  config: Record<string, string>;
  tasks: Array<{ connector: string; task: number }>;
  type?: string;
}

/** States Connect reports for connectors and tasks. */
export type ConnectState = 'RUNNING' | 'PAUSED' | 'FAILED' | 'UNASSIGNED' | 'RESTARTING' | 'STOPPED' | (string & {});

/** `GET /connectors/{name}/status`. `trace` is the Java stack trace of a FAILED connector or task. */
export interface ConnectorStatus {
  name: string;
  connector: { state: ConnectState; worker_id?: string; trace?: string };
  tasks: Array<{ id: number; state: ConnectState; worker_id?: string; trace?: string }>;
  type?: string;
}

/** One entry of a validate response's `configs`. */
export interface ConfigValidation {
  definition?: { name: string; type?: string; required?: boolean; group?: string; documentation?: string };
  value: { name: string; value: string | null; recommended_values?: string[]; errors: string[]; visible?: boolean };
}

/** `PUT /connector-plugins/{class}/config/validate`. */
export interface ValidationResult {
  name: string;
  error_count: number;
  groups: string[];
  configs: ConfigValidation[];
}

/** Options of {@link KafkaConnectClient}. */
export type ClientOptions = Pick<KafkaConnectOptions, 'connectUrl' | 'timeoutMs' | 'retries' | 'retryMinDelayMs' | 'retryMaxDelayMs'> & {
  /** Cleans text that came from Connect (messages, traces) before it is put in an error. */
  scrub?: (text: string) => string;
  /** Called before each retry, e.g. to tell the operator Connect is rebalancing. */
  onRetry?: (err: CellarError, attempt: number, delayMs: number) => void;
};

const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ECONNABORTED', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'ERR_SOCKET_CONNECTION_TIMEOUT']);

interface Call {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  path: string;
  body?: unknown;
  /** Statuses that are success for this call. */
  ok: number[];
}

/**
 * Kafka Connect REST client. Every call has a timeout; answers 409 (rebalance in progress), 5xx and
 * network failures are retried with backoff; everything else becomes a {@link CellarError} naming the
 * request and Connect's `error_code`/`message`. Credentials in the URL are sent as basic auth and never
 * appear in messages.
 */
export class KafkaConnectClient {
  private readonly http: AxiosInstance;
  /** The Connect URL without credentials, for messages. */
  readonly url: string;

  constructor(private readonly opts: ClientOptions) {
    const e = httpEndpoint(opts.connectUrl, 'CELLAR_CONNECT_URL');
    this.url = redactUrl(e.url).replace(/\/$/, '');
    this.http = axios.create({
      baseURL: this.url,
      timeout: opts.timeoutMs,
      ...(e.auth ? { auth: e.auth } : {}),
      ...(e.agent ? { httpsAgent: e.agent } : {}),
      headers: { accept: 'application/json', 'content-type': 'application/json' },
      validateStatus: () => true,
      // A body that is not JSON is reported as such instead of failing in the parser.
      transformResponse: [(data: unknown) => data],
      responseType: 'text',
    });
  }

  private scrub(text: string): string {
    return this.opts.scrub ? this.opts.scrub(text) : text;
  }

  private async once<T>(c: Call): Promise<{ status: number; data: T }> {
    const where = `${c.method} ${this.url}${c.path}`;
    let res: AxiosResponse<string>;
    try {
      res = await this.http.request<string>({ method: c.method, url: c.path, data: c.body === undefined ? undefined : JSON.stringify(c.body) });
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      const timedOut = code === 'ECONNABORTED' || /timeout/i.test((err as Error).message);
      const why = timedOut ? `no answer within ${this.opts.timeoutMs} ms` : code || (err as Error).message;
      throw new CellarError('kafka_connect_unavailable', `cannot reach Kafka Connect at ${this.url} (${c.method} ${c.path}): ${why}`, {
        retriable: timedOut || NET_CODES.has(code),
        cause: err,
        details: { url: this.url, code },
      });
    }
    const text = typeof res.data === 'string' ? res.data : '';
    let data: unknown = undefined;
    if (text.length > 0) {
      try {
        data = JSON.parse(text);
      } catch {
        if (c.ok.includes(res.status) || res.status < 500) {
          throw new CellarError('kafka_connect_unexpected_response', `${where}: HTTP ${res.status} with a body that is not JSON: ${this.scrub(text.slice(0, 200))}`, {
            details: { status: res.status },
          });
        }
      }
    }
    if (c.ok.includes(res.status)) return { status: res.status, data: data as T };
    const body = (data ?? {}) as { error_code?: unknown; message?: unknown };
    const message = typeof body.message === 'string' ? this.scrub(body.message) : this.scrub(text.slice(0, 200)) || '(no message)';
    const errorCode = typeof body.error_code === 'number' ? body.error_code : res.status;
    const retriable = res.status === 409 || res.status >= 500;
    const code =
      res.status === 409 ? 'kafka_connect_rebalancing'
      : res.status === 404 ? 'kafka_connect_not_found'
      : res.status >= 500 ? 'kafka_connect_server_error'
      : res.status >= 400 ? 'kafka_connect_rejected'
      : 'kafka_connect_unexpected_response';
    throw new CellarError(code, `${where}: HTTP ${res.status} (error_code ${errorCode}): ${message}`, {
      retriable,
      details: { status: res.status, errorCode, connectMessage: message },
    });
  }

  private async call<T>(c: Call): Promise<{ status: number; data: T }> {
    let attempts = 0;
    try {
      return await withRetry(
        () => {
          attempts++;
          return this.once<T>(c);
        },
        {
          retries: this.opts.retries,
          minDelayMs: this.opts.retryMinDelayMs,
          maxDelayMs: this.opts.retryMaxDelayMs,
          onRetry: (err, attempt, delay) => this.opts.onRetry?.(err as CellarError, attempt, delay),
        },
      );
    } catch (err) {
      if (err instanceof CellarError && err.retriable && attempts > 1) {
        throw new CellarError(err.code, `${err.message} (gave up after ${attempts} attempts)`, { retriable: true, cause: err, details: err.details });
      }
      throw err;
    }
  }

  private shape<T>(ok: boolean, c: Call, what: string, data: T): T {
    if (!ok) throw new CellarError('kafka_connect_unexpected_response', `${c.method} ${this.url}${c.path}: answer is not ${what}: ${this.scrub(JSON.stringify(data) ?? 'nothing').slice(0, 200)}`);
    return data;
  }

  private async get<T>(path: string, what: string, check: (d: unknown) => boolean): Promise<T> {
    const c: Call = { method: 'GET', path, ok: [200] };
    const { data } = await this.call<T>(c);
    return this.shape(check(data), c, what, data);
  }

  /** `GET /`: the worker's version, to check Connect is there. */
  serverInfo(): Promise<{ version: string; commit?: string; kafka_cluster_id?: string }> {
    return this.get('/', 'Connect server info', (d) => isObject(d) && typeof (d as { version?: unknown }).version === 'string');
  }

  /** `GET /connectors?expand=status&expand=info`: every connector with its config and status. */
  listConnectors(): Promise<Record<string, { info?: ConnectorInfo; status?: ConnectorStatus }>> {
    return this.get('/connectors?expand=status&expand=info', 'a map of connectors with info and status', (d) =>
      isObject(d) && Object.values(d as object).every((v) => isObject(v) && (!('info' in v) || isObject((v as { info: unknown }).info))),
    );
  }

  /** `GET /connectors/{name}/config`. */
  getConfig(name: string): Promise<Record<string, string>> {
    return this.get(`/connectors/${enc(name)}/config`, 'a connector config', isObject);
  }

  /** `GET /connectors/{name}/status`. */
  status(name: string): Promise<ConnectorStatus> {
    return this.get(`/connectors/${enc(name)}/status`, 'a connector status', (d) => isObject(d) && isObject(d.connector) && Array.isArray(d.tasks));
  }

  /** `PUT /connectors/{name}/config`: creates (201) or updates (200) the connector; idempotent. */
  async putConfig(name: string, config: Record<string, string>): Promise<{ created: boolean; info: ConnectorInfo }> {
    const c: Call = { method: 'PUT', path: `/connectors/${enc(name)}/config`, body: config, ok: [200, 201] };
    const { status, data } = await this.call<ConnectorInfo>(c);
    return { created: status === 201, info: this.shape(isObject(data) && (data as ConnectorInfo).name === name, c, `the info of connector ${name}`, data) };
  }

  /** `DELETE /connectors/{name}` (204). */
  async deleteConnector(name: string): Promise<void> {
    await this.call({ method: 'DELETE', path: `/connectors/${enc(name)}`, ok: [204, 200] });
  }

  /** `PUT /connectors/{name}/pause` (202, asynchronous). */
  async pause(name: string): Promise<void> {
    await this.call({ method: 'PUT', path: `/connectors/${enc(name)}/pause`, ok: [202, 204] });
  }

  /** `PUT /connectors/{name}/resume` (202, asynchronous). */
  async resume(name: string): Promise<void> {
    await this.call({ method: 'PUT', path: `/connectors/${enc(name)}/resume`, ok: [202, 204] });
  }

  /**
   * `POST /connectors/{name}/restart?includeTasks=…&onlyFailed=…`. Connect 3.0+ answers 202 with the
   * status in which instances to restart are RESTARTING; older workers ignore the parameters and answer
   * 200/204 having restarted only the connector instance (`status` is then undefined).
   */
  async restart(name: string, opts: { includeTasks: boolean; onlyFailed: boolean }): Promise<{ status?: ConnectorStatus }> {
    const c: Call = { method: 'POST', path: `/connectors/${enc(name)}/restart?includeTasks=${opts.includeTasks}&onlyFailed=${opts.onlyFailed}`, ok: [200, 202, 204] };
    const { status, data } = await this.call<ConnectorStatus>(c);
    return status === 202 && isObject(data) ? { status: data } : {};
  }

  /** `POST /connectors/{name}/tasks/{id}/restart` (204). */
  async restartTask(name: string, task: number): Promise<void> {
    await this.call({ method: 'POST', path: `/connectors/${enc(name)}/tasks/${task}/restart`, ok: [200, 204] });
  }

  /** `PUT /connector-plugins/{class}/config/validate`: per-field errors of a config, nothing is changed. */
  async validate(connectorClass: string, config: Record<string, string>): Promise<ValidationResult> {
    const c: Call = { method: 'PUT', path: `/connector-plugins/${enc(connectorClass)}/config/validate`, body: config, ok: [200] };
    const { data } = await this.call<ValidationResult>(c);
    return this.shape(
      isObject(data) && typeof (data as ValidationResult).error_count === 'number' && Array.isArray((data as ValidationResult).configs),
      c,
      'a validation result',
      data,
    );
  }
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

function isObject(d: unknown): d is Record<string, unknown> {
  return typeof d === 'object' && d !== null && !Array.isArray(d);
}

/** Creates a client from connector-management options. */
export function createKafkaConnectClient(opts: ClientOptions): KafkaConnectClient {
  return new KafkaConnectClient(opts);
}
