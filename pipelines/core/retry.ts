import { isRetriable } from './errors.js';

/** Options for {@link withRetry}. */
export interface RetryOptions {
  /** Attempts after the first; default Infinity (retry until aborted). */
  retries?: number;
  /** First backoff ceiling in ms; default 100. */
  minDelayMs?: number;
  /** Largest backoff ceiling in ms; default 10_000. */
  maxDelayMs?: number;
  /** Stops retrying (the last error is thrown) once aborted. */
  signal?: AbortSignal;
  /** Called before each wait, e.g. to log or mark a worker unready. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Overrides which errors are retried; default {@link isRetriable}. */
  shouldRetry?: (err: unknown) => boolean;
}

/** Resolves after `ms`, or early when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** The wait before retry number `attempt` (from 1): uniform in [0, min(max, min·2^(attempt-1))] (full jitter), ms. */
export function backoffDelay(attempt: number, minDelayMs: number, maxDelayMs: number): number {
  return Math.round(Math.random() * Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30)));
}

/**
 * Runs `fn` until it succeeds, retrying only retriable errors (see `CellarError.retriable`) with
 * exponential backoff and full jitter: the n-th wait is uniform in [0, min(max, min·2ⁿ)].
 * Programming errors and non-retriable errors are thrown at once.
 */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const { retries = Infinity, minDelayMs = 100, maxDelayMs = 10_000, signal, onRetry } = options;
  const shouldRetry = options.shouldRetry ?? isRetriable;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= retries || !shouldRetry(err) || signal?.aborted) throw err;
      const delay = backoffDelay(attempt + 1, minDelayMs, maxDelayMs);
      onRetry?.(err, attempt + 1, delay);
      await sleep(delay, signal);
      if (signal?.aborted) throw err;
    }
  }
}

/**
 * The one policy for retrying a stage's I/O in place (a store or the broker unreachable, a commit whose
 * outcome is unknown): backoff with jitter from 200 ms up to 5 s, forever (until `signal` aborts), retriable
 * errors only. Every retry is logged with what was being done; `onRetry` and `onSuccess` let a runtime
 * report itself not ready meanwhile (its `/readyz` says what it waits for). Used by both runtimes and capture.
 */
export function retryInPlace(
  log: { warn(obj: object, msg: string): void },
  hooks: {
    signal?: AbortSignal;
    onRetry?: (what: string, err: unknown, attempt: number) => void;
    onSuccess?: () => void;
    /** Names what is waited for with where it is and its variable (config.ts `dependencyAt`). */
    describe?: (what: string) => string;
  } = {},
): <T>(what: string, fn: () => Promise<T>) => Promise<T> {
  return (what, fn) =>
    withRetry(fn, {
      minDelayMs: 200,
      maxDelayMs: 5_000,
      ...(hooks.signal ? { signal: hooks.signal } : {}),
      onRetry: (err, attempt, delayMs) => {
        log.warn({ err: (err as Error).message, attempt, delayMs, what }, waitingLine(hooks.describe?.(what) ?? what, attempt, delayMs, err));
        hooks.onRetry?.(what, err, attempt);
      },
    }).then((v) => {
      hooks.onSuccess?.();
      return v;
    });
}

/** `waiting for Kafka at 127.0.0.1:9092 (CELLAR_KAFKA_BROKERS), attempt 3, next in 2 s: connect ECONNREFUSED …` */
export function waitingLine(dependency: string, attempt: number, delayMs: number, err: unknown): string {
  const next = delayMs < 1_000 ? `${delayMs} ms` : `${Math.round(delayMs / 100) / 10} s`;
  return `waiting for ${dependency}, attempt ${attempt}, next in ${next}: ${(err as Error)?.message ?? String(err)}`;
}
