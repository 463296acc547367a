import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { freePort } from '../../infra/local/process.js';
import { createPgPool } from '../../pipelines/core/pg.js';
import { startEmbeddedUnderTest, type EmbeddedUnderTest } from '../support/embedded.js';
import type { Totals } from '../support/pipeline.js';
import { addRow, storesConverged } from '../support/stores.js';
import { eventually, freshDatabase, rid } from '../support/services.js';
import { postgresSupplierYaml, stockSupplier } from '../support/suppliers.js';

/**
 * A TCP proxy to Cellar's Postgres that, when armed, lets the COMMIT of a transaction that wrote dead
 * letters reach the server and then cuts the connection before the answer comes back: the commit happened,
 * the runtime cannot know it, and retries the whole transaction on a new connection.
 */
async function commitCutter(target: URL): Promise<{ url: (u: string) => string; arm(): void; cuts(): number; close(): Promise<void> }> {
  let armed = false;
  let cuts = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    let wroteLetters = false;
    let cut = false;
    client.on('data', (chunk) => {
      const text = chunk.toString('latin1');
      if (text.includes('cellar.dead_letters')) wroteLetters = true;
      upstream.write(chunk);
      if (/\bCOMMIT\b/.test(text)) {
        if (armed && wroteLetters) {
          armed = false;
          cut = true;
          cuts++;
          // The server receives and performs the COMMIT; its answer never reaches the client.
          setTimeout(() => (client.destroy(), upstream.destroy()), 300);
        }
        wroteLetters = false;
      }
    });
    upstream.on('data', (chunk) => void (!cut && client.write(chunk)));
    for (const s of [client, upstream]) {
      s.on('error', () => undefined);
      s.on('close', () => (client.destroy(), upstream.destroy(), sockets.delete(s)));
    }
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    url: (u) => {
      const x = new URL(u);
      x.hostname = '127.0.0.1';
      x.port = String(port);
      return x.toString();
    },
    arm: () => void (armed = true),
    cuts: () => cuts,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * A commit whose outcome the embedded runtime cannot know (connection lost after COMMIT was sent) is
 * retried; everything it wrote must be written once: dead letters are not duplicated and totals stay
 * exact.
 */
describe('embedded runtime: a commit retried after an unknown outcome', () => {
  const R1 = rid('west');
  const R2 = rid('east');
  const region: Record<string, string> = { d1: R1, d2: R2 };
  let supplier: { url: string; client: pg.Client };
  let cellar: { url: string; pool: pg.Pool };
  let proxy: Awaited<ReturnType<typeof commitCutter>>;
  let e: EmbeddedUnderTest;

  beforeAll(async () => {
    supplier = await stockSupplier({ rows: 50, skus: 4, maxQty: 10 });
    cellar = await freshDatabase();
    proxy = await commitCutter(new URL(cellar.url));
    const viaProxy = proxy.url(cellar.url);
    e = await startEmbeddedUnderTest({ acme: postgresSupplierYaml(supplier.url, { regions: region }) }, 'commit-unknown', {
      cellar: { url: viaProxy, pool: createPgPool(viaProxy, { max: 2 }) },
    });
  }, 60_000);

  afterAll(async () => {
    await e?.stop();
    await proxy?.close();
    await supplier?.client.end();
    await cellar?.pool.end();
  });

  it('writes the dead letters of the retried commit once and keeps the totals exact', async () => {
    const truth = async (): Promise<Totals> => {
      const { rows } = await supplier.client.query<{ sku: string; depot: string; qty: number }>("SELECT sku, depot, qty FROM public.stock WHERE depot IN ('d1', 'd2')");
      const out: Totals = new Map();
      for (const r of rows) addRow(out, region[r.depot]!, r.sku, r.qty);
      return out;
    };
    expect(await storesConverged(truth, cellar.pool, e.redis, [R1, R2])).toEqual([]);
    proxy.arm();
    await supplier.client.query(`INSERT INTO public.stock SELECT g, 'sku-1', 'd9', 3 FROM generate_series(1001, 1005) g`);
    await supplier.client.query(`UPDATE public.stock SET qty = qty + 1 WHERE id <= 20`);
    expect(await eventually(async () => proxy.cuts() === 1, 30_000), 'the proxy cut a commit').toBe(true);
    const letters = async () => (await cellar.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM cellar.dead_letters WHERE reason = 'unknown_warehouse'")).rows[0]!.n;
    expect(await eventually(async () => (await letters()) >= 5, 30_000)).toBe(true);
    expect(await storesConverged(truth, cellar.pool, e.redis, [R1, R2])).toEqual([]);
    expect(await letters(), 'each refused row is dead-lettered once').toBe(5);
    expect(e.failed()).toBeUndefined();
    expect(await e.metrics.value('cellar_dead_letters_total', { stage: 'normalizer', reason: 'unknown_warehouse' })).toBe(5);
  }, 90_000);
});
