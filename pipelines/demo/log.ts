import { pino } from 'pino';
import { createLogger, type Logger } from '../core/logger.js';

/**
 * The demo's JSON logger, written to `file` instead of stdout, so the terminal shows only the demo's own
 * lines while the runtime's and the services' log lines (start-up retries, a stream cut by Ctrl-C…) stay
 * readable in the file. The same logger as every Cellar process' (createLogger: format, redaction, secrets
 * scrubbed). Writes synchronously, so nothing is lost when the demo exits.
 */
export function fileLogger(file: string, component: string, level: string): Logger {
  return createLogger(component, level, pino.destination({ dest: file, sync: true, mkdir: true }));
}
