import { hostname } from 'node:os';
import type pg from 'pg';
import { query } from '../core/pg.js';
import { CellarError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/** How often a writer records that its deployment is alive, ms. */
const HEARTBEAT_MS = 5_000;
/** A deployment not seen for this long is gone (its writers stopped), ms. */
export const DEPLOYMENT_STALE_MS = 30_000;

/** The identity of the deployment a process writes for: `embedded`, or `kafka:<topic prefix>`. */
export function deploymentId(runtime: 'embedded' | 'kafka', topicPrefix?: string): string {
  return runtime === 'embedded' ? 'embedded' : `kafka:${topicPrefix}`;
}

/** Another deployment's writer seen recently in Cellar's database, or undefined. */
async function otherLive(pool: pg.Pool, id: string, staleMs: number): Promise<{ id: string; host: string; pid: number; role: string; agoS: number } | undefined> {
  const { rows } = await query<{ id: string; host: string; pid: number; role: string; ago: number }>(pool, 'reading deployments',
    `SELECT id, host, pid, role, extract(epoch from now() - last_seen) AS ago FROM cellar.deployments
      WHERE id <> $1 AND last_seen > now() - make_interval(secs => $2 / 1000.0) ORDER BY last_seen DESC LIMIT 1`,
    [id, staleMs]);
  const r = rows[0];
  return r && { id: r.id, host: r.host, pid: r.pid, role: r.role, agoS: Math.round(Number(r.ago)) };
}

/**
 * Registers this process as a writer of deployment `id` in `cellar.deployments` and keeps the record
 * fresh. Refuses (a non-retriable `deployment_conflict`) when a writer of another deployment was seen within
 * {@link DEPLOYMENT_STALE_MS}: the embedded runtime and a Kafka deployment, or two Kafka deployments with
 * different topic prefixes, must not write one database. While running, a conflict appearing later is
 * logged at error level every heartbeat and reported through `onConflict`. Returns a stop function; with
 * `forget` (a deployment of one process: the embedded runtime) it also removes the record, so another
 * deployment may start at once.
 */
export async function registerDeployment(pool: pg.Pool, id: string, role: string, log: Logger, onConflict?: (message: string) => void, staleMs = DEPLOYMENT_STALE_MS): Promise<(forget?: boolean) => Promise<void>> {
  const describe = (o: NonNullable<Awaited<ReturnType<typeof otherLive>>>) =>
    `Cellar's database is written by another deployment: ${o.id} (its ${o.role} on ${o.host} pid ${o.pid}, seen ${o.agoS} s ago), and this process belongs to ${id}. ` +
    `Two deployments on one database count every supplier twice: give each its own database (CELLAR_PG_URL), or stop the other one (it is forgotten ${staleMs / 1000} s after its last writer stopped).`;
  const other = await otherLive(pool, id, staleMs);
  if (other) throw new CellarError('deployment_conflict', describe(other));
  const beat = () => query(pool, 'recording this deployment',
    `INSERT INTO cellar.deployments (id, host, pid, role) VALUES ($1, $2, $3, $4)
     ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, role = excluded.role, last_seen = now()`,
    [id, hostname(), process.pid, role]);
  await beat();
  const timer = setInterval(() => {
    void (async () => {
      await beat();
      const o = await otherLive(pool, id, staleMs);
      if (o) {
        const message = describe(o);
        log.error({ deployment: id, other: o.id }, message);
        onConflict?.(message);
      }
    })().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'recording this deployment failed; retrying'));
  }, HEARTBEAT_MS);
  timer.unref();
  return async (forget = false) => {
    clearInterval(timer);
    if (forget) {
      await query(pool, 'forgetting this deployment', 'DELETE FROM cellar.deployments WHERE id = $1 AND host = $2 AND pid = $3', [id, hostname(), process.pid]).catch(() => undefined);
    }
  };
}
