import pg from 'pg';
import { pgConfig } from '../../pipelines/core/pg-tls.js';
import { fromPgError } from '../../pipelines/core/errors.js';
import type { SourceLag } from '../supplier-rows.js';
import { parsePostgresCdcConfig } from './config.js';

/**
 * How far Cellar's slot is behind its supplier: the WAL the slot makes the server keep (restart_lsn to the
 * current position: disk the supplier pays for) and what is not yet confirmed. Undefined when the slot does
 * not exist (yet).
 */
export async function postgresSlotLag(url: string, topicPrefix: string, tables: string[]): Promise<SourceLag | undefined> {
  const { slotName } = parsePostgresCdcConfig({ url, topicPrefix, tables });
  const c = new pg.Client(pgConfig(url, { application_name: 'cellar-lag', connectionTimeoutMillis: 5_000 }));
  c.on('error', () => undefined);
  try {
    await c.connect();
    const { rows } = await c.query<{ retained: string | null; behind: string | null; active: boolean }>(
      `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained,
              pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS behind, active
         FROM pg_replication_slots WHERE slot_name = $1`, [slotName]);
    const r = rows[0];
    if (!r) return undefined;
    const retained = Number(r.retained ?? 0);
    return { bytes: retained, detail: `slot ${slotName}${r.active ? '' : ' (inactive)'}: ${retained} bytes of WAL retained, ${Number(r.behind ?? 0)} not yet confirmed` };
  } catch (err) {
    throw fromPgError(err, `measuring slot ${slotName}`);
  } finally {
    await c.end().catch(() => undefined);
  }
}
