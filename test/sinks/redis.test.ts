import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { readRegionSizes } from '../../sinks/redis/read.js';
import { createRedisSnapshotSink } from '../../sinks/redis/sink.js';
import { rid, services } from '../support/services.js';
import { sinkConformance } from './conformance.js';

sinkConformance('RedisSnapshotSink', async () => ({ sink: createRedisSnapshotSink({ url: services().redisUrl }) }));

describe('RedisSnapshotSink specifics', () => {
  it('keeps cellar:stock:<region>, its sizes and meta current and publishes applied changes on cellar:stock-updates', async () => {
    const region = rid('r');
    const sink = createRedisSnapshotSink({ url: services().redisUrl });
    const sub = new Redis(services().redisUrl);
    const redis = new Redis(services().redisUrl);
    try {
      const messages: Array<{ region: string; changes: Array<{ sku: string; bottles: number; version: number; bottleSizeMl?: number }> }> = [];
      await sub.subscribe('cellar:stock-updates');
      sub.on('message', (_c, m) => {
        const parsed = JSON.parse(m);
        if (parsed.region === region) messages.push(parsed);
      });
      await sink.connect();
      await sink.writeBatch([]);
      const r = (sku: string, bottles: number, version: number, bottleSizeMl: number | null = 750) => ({ region, sku, bottleSizeMl, bottles, contributors: 1, version, sourceTsMs: 1, updatedTsMs: 2 });
      await sink.writeBatch([r('a', 12, 1), r('b', 6, 1, 1500), r('c', 1, 1, null)]);
      await sink.writeBatch([r('a', 12, 1, 375)]);
      await sink.writeBatch([r('a', 9, 2)]);
      expect(await redis.hgetall(`cellar:stock:${region}`)).toEqual({ a: '9', b: '6', c: '1' });
      // A SKU without a known size has no field in the sizes hash; a replay with another size changed nothing.
      expect(await redis.hgetall(`cellar:stock:${region}:sizes`)).toEqual({ a: '750', b: '1500' });
      expect(await readRegionSizes(redis, region)).toEqual(new Map([['a', 750], ['b', 1500]]));
      expect(await redis.hget(`cellar:stock:${region}:meta`, 'version')).toBe('4');
      await new Promise((res) => setTimeout(res, 200));
      const shown = (c: { sku: string; bottles: number; version: number; bottleSizeMl?: number }) => `${c.sku}=${c.bottles}@${c.version}${'bottleSizeMl' in c ? `/${c.bottleSizeMl}ml` : ''}`;
      expect(messages.map((m) => m.changes.map(shown).sort())).toEqual([['a=12@1/750ml', 'b=6@1/1500ml', 'c=1@1'], ['a=9@2/750ml']]);
      // The stream entries carry the same payload.
      const entries = (await redis.xrevrange('cellar:stock-events', '+', '-', 'COUNT', 2_000)).reverse().map(([, f]) => JSON.parse(f[1]!)).filter((d) => d.region === region);
      expect(entries.map((d) => d.changes.map(shown).sort())).toEqual([['a=12@1/750ml', 'b=6@1/1500ml', 'c=1@1'], ['a=9@2/750ml']]);
    } finally {
      await sink.close();
      sub.disconnect();
      redis.disconnect();
    }
  });
});

describe('RedisSnapshotSink after Redis loses its data', () => {
  it('reports reset (writing nothing) once the epoch marker is gone, then writes again', async () => {
    const prefix = rid('p');
    const region = rid('r');
    const redis = new Redis(services().redisUrl);
    const a = createRedisSnapshotSink({ url: services().redisUrl, keyPrefix: prefix });
    const b = createRedisSnapshotSink({ url: services().redisUrl, keyPrefix: prefix });
    const r = (sku: string, bottles: number, version: number) => ({ region, sku, bottleSizeMl: 750, bottles, contributors: 1, version, sourceTsMs: 1, updatedTsMs: 2 });
    try {
      await a.connect();
      expect(await a.writeBatch([r('x', 1, 1)])).toMatchObject({ reset: true, applied: 0 });
      await b.connect();
      expect(await a.writeBatch([r('x', 1, 1)])).toMatchObject({ applied: 1 });
      expect((await b.writeBatch([r('y', 2, 1)])).reset).toBeFalsy();
      // Redis restarts empty: every key of this prefix is gone, the marker too.
      await redis.del(`${prefix}:snapshot:epoch`, `${prefix}:stock:${region}`, `${prefix}:stock:${region}:versions`);
      expect(await a.writeBatch([r('x', 5, 2)])).toMatchObject({ reset: true, applied: 0 });
      expect(await redis.hgetall(`${prefix}:stock:${region}`)).toEqual({});
      // The other instance notices the new epoch on its next write.
      expect(await b.writeBatch([r('y', 3, 2)])).toMatchObject({ reset: true, applied: 0 });
      expect(await a.writeBatch([r('x', 1, 1), r('x', 5, 2)])).toMatchObject({ applied: 1 });
      expect(await redis.hget(`${prefix}:stock:${region}`, 'x')).toBe('5');
    } finally {
      await a.close();
      await b.close();
      redis.disconnect();
    }
  });
});
