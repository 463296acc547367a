import { CellarError, ConfigError, isRetriable, RETRIABLE_NET_CODES as NET_CODES } from '../core/errors.js';
import { scrubSecrets } from '../core/secrets.js';
import { wrap } from './format.js';

/** The exit codes of every `cellar` command (README.md, "Exit codes", says the same). */
export const EXIT = {
  /** Done; a check found nothing wrong. */
  ok: 0,
  /** A check found a problem (drift left, a failing supplier, a replay refused again, a rejected event…). */
  problem: 1,
  /** Usage or configuration: unknown command or option, missing argument, bad flag value or variable. */
  usage: 2,
  /** A dependency could not be reached or did not answer. */
  unreachable: 3,
} as const;

/** What each exit code means, for `cellar --help` (README.md, "Exit codes", says the same). */
export const EXIT_CODE_MEANINGS: ReadonlyArray<readonly [code: number, meaning: string]> = [
  [EXIT.ok, 'done; a check found nothing wrong'],
  [EXIT.problem, 'a check found a problem: drift left (reconcile), a failing or unknown supplier or a Redis that does not answer (status), a dead letter refused again (dlq replay), a rejected event (mapping test), an incompatible schema, a change Kafka Connect refused, catalog conflicts, demo totals that do not match'],
  [EXIT.usage, 'usage or configuration, nothing done: an unknown command or option, a missing argument, a bad flag value, a bad environment variable or supplier file, a repartition refused while workers run'],
  [EXIT.unreachable, 'a dependency could not be reached or did not answer: Postgres, Redis, Kafka, the Schema Registry, Kafka Connect, a supplier database (reconcile), or no running Cellar process (reload, resnapshot)'],
];

/** The exit codes as `cellar --help` shows them, wrapped to `columns`. */
export function exitCodesHelp(columns = 80): string {
  const lines = ['Exit codes (every command):'];
  for (const [code, meaning] of EXIT_CODE_MEANINGS) lines.push(...wrap(meaning, columns - 6).map((l, i) => `${i ? '    ' : `  ${code} `} ${l}`));
  lines.push(...wrap('An unexpected internal error (a bug) prints its stack trace and exits 1.', columns - 3).map((l) => `  ${l}`));
  return lines.join('\n');
}


/**
 * The exit code and one message for an error a command threw: a bad configuration is 2, a dependency
 * that did not answer (an error that says retrying may help, or a network error) 3, any other Cellar
 * error 1. Undefined for an unexpected error (a bug): let it surface with its stack.
 */
export function exitOf(err: unknown): { code: number; message: string } | undefined {
  const said = exitLine(err);
  return said && { ...said, message: scrubSecrets(said.message) };
}

function exitLine(err: unknown): { code: number; message: string } | undefined {
  if (err instanceof ConfigError) return { code: EXIT.usage, message: `cellar: ${err.message}` };
  if (err instanceof CellarError) return { code: isRetriable(err) ? EXIT.unreachable : EXIT.problem, message: `cellar: ${err.code}: ${err.message}` };
  const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
  if (code && NET_CODES.has(code)) return { code: EXIT.unreachable, message: `cellar: ${code}: ${(err as Error).message ?? String(err)}` };
  return undefined;
}
