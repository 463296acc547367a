import { createPgPool } from '../core/pg.js';
import { sleep } from '../core/retry.js';

/**
 * Waits until a runtime applied the feed file with content hash `hash` (its checkpoint, `<supplier>` or
 * `capture:<supplier>`, names it) or held it back (its reader's status says so), printing the outcome
 * through `say`. Returns the exit code: 0 applied, 1 held back or not applied within `waitS`.
 */
export async function waitForFeedFile(pgUrl: string, supplierId: string, hash: string, name: string, waitS: number, say: (line: string) => void): Promise<number> {
  const pool = createPgPool(pgUrl, { max: 1 });
  try {
    const until = Date.now() + waitS * 1000;
    while (Date.now() < until) {
      const applied = await pool.query<{ source_id: string }>(
        `SELECT source_id FROM cellar.checkpoints WHERE source_id IN ($1, $2) AND position->'feed'->'file'->>'hash' = $3`, [supplierId, `capture:${supplierId}`, hash]);
      const status = await pool.query<{ detail: string | null }>('SELECT detail FROM cellar.source_status WHERE supplier_id = $1 ORDER BY updated_at DESC LIMIT 1', [supplierId]);
      const detail = status.rows[0]?.detail ?? '';
      if (applied.rows.length) {
        say(`applied by ${applied.rows[0]!.source_id.startsWith('capture:') ? 'capture' : 'the embedded runtime'}${detail.includes(name) ? `: ${detail}` : ''}`);
        return 0;
      }
      if (detail.includes(name) && detail.includes('held back')) {
        say(detail);
        return 1;
      }
      await sleep(250);
    }
    say(`not applied within ${waitS} s: is the runtime (cellar run embedded, or cellar run capture --supplier ${supplierId}) running against this database? See cellar status`);
    return 1;
  } finally {
    await pool.end();
  }
}
