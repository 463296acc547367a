import { z } from 'zod';
import { CSV_DELIMITERS } from './csv.js';
import { validCron, validTimeZone } from '../../pipelines/core/cron.js';

/**
 * Where a file-feed supplier's snapshots come from and how to read them (`source.feed` of a `csv`
 * supplier). Each file is the supplier's whole stock: Cellar applies what changed since the last file it
 * applied, once, and holds back a file that looks truncated.
 */
export const FeedSpec = z
  .object({
    /**
     * A folder the supplier (or `cellar feed push`) drops files into: at each check the newest file whose
     * name matches `pattern` (by modification time, then name) is the current snapshot.
     */
    path: z.string().min(1).optional(),
    /** An HTTP(S) address fetched at each check; `ETag` and `Last-Modified` are sent back, so an unchanged file costs a 304. */
    url: z.string().url().refine((u) => /^https?:\/\//.test(u), 'an http:// or https:// address').optional(),
    /** File names considered in `path` (`*` matches any characters). Default `*.csv`. */
    pattern: z.string().min(1).default('*.csv'),
    /** How often the folder or address is checked, ms. Default 60000 (a minute); at least 100. Unused with `schedule`. */
    checkEveryMs: z.number().int().min(100).default(60_000),
    /**
     * The supplier's schedule, as a cron expression (`30 2 * * *`: each night at 02:30): the folder or
     * address is checked at those times (and once when the reader starts, for a file that came while it
     * was down) instead of every `checkEveryMs`. For an export that lands at a known time.
     */
    schedule: z.string().min(9).refine(validCron, 'a cron expression like "30 2 * * *" (minute hour day month weekday; an optional seconds field first)').optional(),
    /** The time zone `schedule` is read in (IANA name, e.g. `Europe/Paris`). Default UTC. */
    timezone: z.string().min(1).refine(validTimeZone, 'an IANA time zone such as Europe/Paris or UTC').default('UTC'),
    /** The column delimiter; default: detected from the header line (`,` `;` tab `|`). */
    delimiter: z.enum(CSV_DELIMITERS).optional(),
    /** The file's encoding (`utf-8`, `windows-1252`, `utf-16le`, …); default: a BOM's, else UTF-8 when valid, else windows-1252. */
    encoding: z.string().min(1).refine((e) => {
      try {
        new TextDecoder(e);
        return true;
      } catch {
        return false;
      }
    }, 'an encoding name TextDecoder knows, e.g. utf-8 or windows-1252').optional(),
    /** Spreadsheets (.xlsx, told by their content): the sheet to read, by name. Default: the first. */
    sheet: z.string().min(1).optional(),
    /** Read `12,5` as 12.5 (only with a delimiter other than `,`). Default false. */
    decimalComma: z.boolean().default(false),
    /**
     * A file with fewer rows than this fraction of the last applied one (or none, after some) is held back
     * and reported instead of applied: a truncated export must not delete the supplier's stock. 0 turns
     * the guard off. Default 0.5.
     */
    minRowsFraction: z.number().min(0).max(1).default(0.5),
  })
  .strict()
  .superRefine((f, ctx) => {
    if ((f.path === undefined) === (f.url === undefined)) ctx.addIssue({ code: 'custom', path: ['path'], message: 'give exactly one of path (a folder) or url (an http(s) address)' });
  });

export type FeedConfig = z.output<typeof FeedSpec>;

/** True when `name` matches a `*` pattern (the only wildcard), case-sensitively. */
export function matchesPattern(name: string, pattern: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(name);
}

/**
 * An `http` supplier that pushes its rows to the API (`source.push`): `POST /v1/suppliers/{id}/feed`, with
 * its own key (role `supplier`). Limits per request; a snapshot is held back like a file.
 */
export const PushSpec = z
  .object({
    /** Largest request body, bytes; a larger one is refused with 413. Default 10 MiB. */
    maxBodyBytes: z.number().int().min(1024).max(1 << 30).default(10 * 1024 * 1024),
    /** Most rows in one request; more are refused with 413. Default 100000. */
    maxRows: z.number().int().min(1).max(1_000_000).default(100_000),
    /** As a file feed's: a pushed snapshot with fewer rows than this fraction of the last one is held back. Default 0.5. */
    minRowsFraction: z.number().min(0).max(1).default(0.5),
    /** How often the runtime looks for pushed requests, ms. Default 200. */
    checkEveryMs: z.number().int().min(10).max(60_000).default(200),
  })
  .strict();

export type PushConfig = z.output<typeof PushSpec>;
