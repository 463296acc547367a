import type pg from 'pg';

/**
 * Random changes to rows `fromId`..`fromId + 149` of a Postgres `table` of STOCK_TABLE's columns (updates,
 * moves between depots `d1`/`d2`, deletes, re-inserts) until `stop()`, which resolves with how many it made;
 * rows below `fromId` are never touched.
 */
export function concurrentWriter(client: pg.Client, table: string, fromId: number): { stop(): Promise<number> } {
  let stop = false;
  let n = 0;
  const done = (async () => {
    for (let i = 0; !stop; i++, n++) {
      const id = fromId + Math.floor(Math.random() * 150);
      const roll = Math.random();
      if (roll < 0.15) await client.query(`DELETE FROM ${table} WHERE id = $1`, [id]);
      else if (roll < 0.35) await client.query(`INSERT INTO ${table} VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET qty = excluded.qty`, [id, `sku-${i % 13}`, `d${1 + (i % 2)}`, i % 11]);
      else await client.query(`UPDATE ${table} SET qty = $2, depot = $3 WHERE id = $1`, [id, i % 17, `d${1 + (i % 2)}`]);
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  return { stop: async () => ((stop = true), await done, n) };
}
