import { scrubSecrets } from './secrets.js';

/**
 * Cellar's error model. Every error that crosses a component boundary is a {@link CellarError}:
 * it names what failed, says whether trying again can help (`retriable`, decided where the error
 * is created) and keeps the underlying error as `cause`. Errors from kafkajs, pg and ioredis are
 * converted where they enter our code by {@link fromKafkaError}, {@link fromPgError} and
 * {@link fromRedisError}.
 */

/** Options shared by all Cellar errors. */
export interface CellarErrorOptions {
  /** True when the same operation may succeed if tried again (network, broker or database hiccups). */
  retriable?: boolean;
  /** The error this one wraps. */
  cause?: unknown;
  /** Structured facts for logs (never secrets). */
  details?: Record<string, unknown>;
}

/** Base class for every error Cellar raises on purpose. */
export class CellarError extends Error {
  /** Stable machine-readable code, e.g. `config_invalid`, `postgres_unavailable`. */
  readonly code: string;
  /** Whether retrying the failed operation may help. */
  readonly retriable: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: string, message: string, options: CellarErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retriable = options.retriable ?? false;
    this.details = options.details ?? {};
  }
}

/** Invalid configuration or supplier registry content. Never retriable: a person must fix the input. */
export class ConfigError extends CellarError {
  /** Each problem as `where: field.path: what was expected`. */
  readonly problems: string[];
  constructor(message: string, problems: string[] = [], options: CellarErrorOptions = {}) {
    super('config_invalid', problems.length ? `${message}\n  - ${problems.join('\n  - ')}` : message, {
      ...options,
      retriable: false,
    });
    this.problems = problems;
  }
}

/** True when `err` says retrying may help. Unknown errors (programming errors) are never retriable. */
export function isRetriable(err: unknown): boolean {
  return err instanceof CellarError && err.retriable;
}

/** Node's codes of a connection the other end did not answer (or could not be reached). */
export const RETRIABLE_NET_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

/** A driver's message, secrets removed (a connection string echoed back, say). */
function errMessage(err: unknown): string {
  return scrubSecrets(err instanceof Error ? err.message : String(err));
}

/**
 * Converts a pg error. Connection failures, server shutdowns (class 08, 57P0x), serialization
 * failures and deadlocks (40001, 40P01) and resource exhaustion (53xxx) are retriable; constraint
 * violations and syntax errors are not.
 */
export function fromPgError(err: unknown, context: string): CellarError {
  if (err instanceof CellarError) return err;
  const code = errCode(err);
  const msg = errMessage(err);
  const retriable =
    (code !== undefined &&
      (RETRIABLE_NET_CODES.has(code) ||
        code.startsWith('08') ||
        code.startsWith('57P') ||
        code.startsWith('53') ||
        code === '40001' ||
        code === '40P01')) ||
    /Connection terminated|connection timeout|Client has encountered a connection error|not queryable/i.test(msg);
  return new CellarError(retriable ? 'postgres_unavailable' : 'postgres_error', `${context}: ${msg}`, {
    retriable,
    cause: err,
    details: { pgCode: code },
  });
}

/**
 * Converts a kafkajs error. kafkajs marks its own errors with `retriable`; connection-level
 * failures and exhausted internal retries are treated as retriable at our level too.
 */
export function fromKafkaError(err: unknown, context: string): CellarError {
  if (err instanceof CellarError) return err;
  const e = err as { retriable?: boolean; name?: string; type?: string };
  const name = e?.name ?? '';
  const retriable =
    e?.retriable === true ||
    /KafkaJSConnectionError|KafkaJSNumberOfRetriesExceeded|KafkaJSRequestTimeoutError|KafkaJSBrokerNotFound|KafkaJSLockTimeout|KafkaJSConnectionClosedError/.test(
      name,
    ) ||
    RETRIABLE_NET_CODES.has(errCode(err) ?? '');
  return new CellarError(retriable ? 'kafka_unavailable' : 'kafka_error', `${context}: ${errMessage(err)}`, {
    retriable,
    cause: err,
    details: { kafkaError: name || undefined, kafkaType: e?.type },
  });
}

/**
 * Converts an ioredis error. Connection loss, command timeouts (a frozen or overloaded server; every
 * write Cellar makes is version-guarded, so one that did run is harmless to repeat) and the server's
 * transient states (LOADING, BUSY, TRYAGAIN, CLUSTERDOWN, MASTERDOWN) are retriable; script and type
 * errors are not.
 */
export function fromRedisError(err: unknown, context: string): CellarError {
  if (err instanceof CellarError) return err;
  const msg = errMessage(err);
  const retriable =
    RETRIABLE_NET_CODES.has(errCode(err) ?? '') ||
    /Connection is closed|connect ECONNREFUSED|Stream isn't writeable|max retries|Command timed out|^(LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN)/i.test(
      msg,
    );
  // ioredis' words for "not connected" say nothing to an operator.
  const said = /Stream isn't writeable and enableOfflineQueue/i.test(msg) ? 'Redis is not connected (the server does not answer)' : msg;
  return new CellarError(retriable ? 'redis_unavailable' : 'redis_error', `${context}: ${said}`, {
    retriable,
    cause: err,
  });
}
