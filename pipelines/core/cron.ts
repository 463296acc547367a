import { Cron } from 'croner';

/** True when `expr` is a cron expression croner accepts (minute hour day month weekday; an optional seconds field first). */
export function validCron(expr: string): boolean {
  try {
    new Cron(expr, { paused: true }).stop();
    return true;
  } catch {
    return false;
  }
}

/** True when `tz` is an IANA time zone this runtime knows (`Europe/Paris`, `UTC`). */
export function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/**
 * Milliseconds from now to the next time `expr` fires in `timezone` (default UTC): the delay of a check
 * that runs on a supplier's schedule. A schedule that never fires again gives Infinity.
 */
export function msToNextRun(expr: string, timezone = 'UTC'): number {
  const job = new Cron(expr, { paused: true, timezone });
  const ms = job.msToNext();
  job.stop();
  return ms === null ? Infinity : Math.max(0, ms);
}
