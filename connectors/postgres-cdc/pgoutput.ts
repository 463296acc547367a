import pg from 'pg';
import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';

/** `timestamptz`'s type OID. */
const TIMESTAMPTZ = 1184;

/** node-postgres' parser of `timestamptz` text (postgres-date): a Date, or ±Infinity. */
const parseTimestamptz = pg.types.getTypeParser(TIMESTAMPTZ) as (text: string) => Date | number;

/** `YYYY-MM-DD HH:MM:SS[.ffffff]+00`: a time in UTC as the server prints it when its TimeZone is UTC. */
const UTC_TEXT = /^\d{4}-\d\d-\d\d ([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?\+00$/;

/**
 * A `timestamptz` as pgoutput sends it (text) → what the reader emits for it: the ISO text
 * `Date.prototype.toISOString` gives for node-postgres' Date, e.g. `2026-12-01T03:00:00.123Z`.
 *
 * A time in UTC is rewritten without building a Date (one per streamed row and column: a parse, a Date and
 * its ISO text each time): its first three fraction digits are the milliseconds, which is what
 * node-postgres' `1000 × parseFloat(fraction)` truncates to for every fraction of up to six digits
 * (checked for all of them in the tests). Any other text (another offset, BC, `infinity`) goes through
 * node-postgres' parser: a Date or ±Infinity, converted where the row is read.
 */
export function timestamptzValue(text: string): string | Date | number {
  if (!UTC_TEXT.test(text)) return parseTimestamptz(text);
  const ms = text.length > 22 ? `${text.slice(20, Math.min(23, text.length - 3))}000`.slice(0, 3) : '000';
  return `${text.slice(0, 10)}T${text.slice(11, 19)}.${ms}Z`;
}

/**
 * The pgoutput decoder the reader streams with: pg-logical-replication's, with `timestamptz` columns read
 * by {@link timestamptzValue}. Parsers are set as each Relation message is decoded, before the rows that
 * follow it in the same chunk (the library decodes a chunk's messages as they arrive, ahead of the handler).
 */
export function createPgoutputPlugin(publicationName: string): PgoutputPlugin {
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [publicationName] });
  const parse = plugin.parse.bind(plugin);
  plugin.parse = (buffer: Buffer): Pgoutput.Message => {
    const msg = parse(buffer);
    if (msg.tag === 'relation') {
      for (const c of msg.columns) if (c.typeOid === TIMESTAMPTZ) c.parser = timestamptzValue;
    }
    return msg;
  };
  return plugin;
}
