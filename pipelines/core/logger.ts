import { pino, type Logger } from 'pino';
import { logLevelOr } from './process-env.js';

export type { Logger };

/** Field names whose values are never written to logs. */
const REDACT = [
  'password',
  '*.password',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'apiKey',
  '*.apiKey',
  'connectionString',
  '*.connectionString',
  'url',
  '*.url',
];

/**
 * Creates the JSON logger for a component. Level from `CELLAR_LOG_LEVEL` (default `info`).
 * Fields named like secrets (password, token, url…) are redacted; callers log hosts, not URLs.
 */
export function createLogger(component: string, level = logLevelOr('info')): Logger {
  return pino({
    level,
    base: { component, pid: process.pid },
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/** Replaces the credentials in a connection URL, for messages that must name the endpoint. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '[unparseable url]';
  }
}
