import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RegionalStock } from '../../schemas/records.js';
import type { StockSink } from '../../sinks/types.js';
import { rid } from '../support/services.js';

function rec(region: string, sku: string, bottles: number, version: number, bottleSizeMl: number | null = 750): RegionalStock {
  return { region, sku, bottleSizeMl, bottles, contributors: bottles > 0 ? 1 : 0, version, sourceTsMs: 1_700_000_000_000 + version, updatedTsMs: Date.now() };
}

/** A key as read back from a sink, for records written with the default size. */
const stored = (bottles: number, version: number, bottleSizeMl: number | null = 750) => ({ bottles, version, bottleSizeMl });

/**
 * The behaviour every StockSink must have. Each sink's test file calls this with a factory for a sink
 * on fresh storage. A sink may answer its first write on a new store with `reset` (nothing written:
 * replay your input); the suite consumes that once after connecting.
 */
export function sinkConformance(name: string, make: () => Promise<{ sink: StockSink; cleanup?: () => Promise<void> }>): void {
  describe(`${name} conformance`, () => {
    let sink: StockSink;
    let cleanup: (() => Promise<void>) | undefined;
    beforeAll(async () => {
      ({ sink, cleanup } = await make());
      await sink.connect();
      await sink.writeBatch([]);
    });
    afterAll(async () => {
      await sink.close();
      await cleanup?.();
    });

    it('writes a batch and reads it back', async () => {
      const region = rid('r');
      expect(await sink.writeBatch([rec(region, 'a', 10, 1), rec(region, 'b', 5, 1)])).toEqual({ applied: 2, skipped: 0 });
      expect(await sink.read(region, 'a')).toEqual(stored(10, 1));
      expect(await sink.read(region, 'b')).toEqual(stored(5, 1));
      expect(await sink.read(region, 'missing')).toBeUndefined();
    });

    it('keeps each SKU\'s bottle size: 375 ml and 1500 ml SKUs read back with their own size', async () => {
      const region = rid('r');
      expect(await sink.writeBatch([rec(region, 'half', 12, 1, 375), rec(region, 'magnum', 3, 1, 1500)])).toEqual({ applied: 2, skipped: 0 });
      expect(await sink.read(region, 'half')).toEqual(stored(12, 1, 375));
      expect(await sink.read(region, 'magnum')).toEqual(stored(3, 1, 1500));
      // The size is written under the version guard: a replayed record with another size changes nothing.
      expect(await sink.writeBatch([rec(region, 'half', 99, 1, 1500)])).toMatchObject({ applied: 0 });
      expect(await sink.read(region, 'half')).toEqual(stored(12, 1, 375));
    });

    it('reads a total written without a bottle size as null, and takes the size of a newer record', async () => {
      const region = rid('r');
      await sink.writeBatch([rec(region, 'old', 6, 1, null)]);
      expect(await sink.read(region, 'old')).toEqual(stored(6, 1, null));
      await sink.writeBatch([rec(region, 'old', 7, 2, 375)]);
      expect(await sink.read(region, 'old')).toEqual(stored(7, 2, 375));
    });

    it('never moves a key backwards: replays and older versions are skipped', async () => {
      const region = rid('r');
      await sink.writeBatch([rec(region, 'a', 10, 5)]);
      expect(await sink.writeBatch([rec(region, 'a', 99, 4), rec(region, 'a', 10, 5)])).toMatchObject({ applied: 0 });
      expect(await sink.read(region, 'a')).toEqual(stored(10, 5));
      await sink.writeBatch([rec(region, 'a', 0, 6)]);
      expect(await sink.read(region, 'a')).toEqual(stored(0, 6));
    });

    it('keeps the highest version when a batch holds several writes of one key, in any order', async () => {
      const region = rid('r');
      await sink.writeBatch([rec(region, 'a', 3, 3), rec(region, 'a', 7, 7), rec(region, 'a', 5, 5)]);
      expect(await sink.read(region, 'a')).toEqual(stored(7, 7));
    });

    it('converges to the same state when batches are replayed in any order', async () => {
      const region = rid('r');
      const batches = [[rec(region, 'a', 1, 1), rec(region, 'b', 2, 1)], [rec(region, 'a', 4, 2)], [rec(region, 'b', 0, 2), rec(region, 'a', 6, 3)]];
      for (const b of [...batches].reverse()) await sink.writeBatch(b);
      for (const b of batches) await sink.writeBatch(b);
      expect(await sink.read(region, 'a')).toEqual(stored(6, 3));
      expect(await sink.read(region, 'b')).toEqual(stored(0, 2));
    });

    it('writes a large batch in one call', async () => {
      const region = rid('r');
      const batch = Array.from({ length: 5000 }, (_, i) => rec(region, `sku-${i}`, i, 1));
      expect((await sink.writeBatch(batch)).applied).toBe(5000);
      expect(await sink.read(region, 'sku-4999')).toEqual(stored(4999, 1));
    });

    it('reports reset at most once on a new store, and never afterwards', async () => {
      const region = rid('r');
      for (let i = 1; i <= 3; i++) expect((await sink.writeBatch([rec(region, 'a', i, i)])).reset).toBeFalsy();
      expect(await sink.read(region, 'a')).toEqual(stored(3, 3));
    });

    it('accepts an empty batch and close() twice', async () => {
      expect(await sink.writeBatch([])).toEqual({ applied: 0, skipped: 0 });
      const { sink: other } = await make();
      await other.connect();
      await other.close();
      await other.close();
    });
  });
}
