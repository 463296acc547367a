import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { createRedisSnapshotSink } from '../../sinks/redis/sink.js';
import { rid, services } from '../support/services.js';
import { sinkConformance } from './conformance.js';

sinkConformance('RedisSnapshotSink', async () => ({ sink: createRedisSnapshotSink({ url: services().redisUrl }) }));

describe('RedisSnapshotSink specifics', () => {
  it('keeps cellar:stock:<region> and its meta current and publishes applied changes on cellar:stock-updates', async () => {
    const region = rid('r');
    const sink = createRedisSnapshotSink({ url: services().redisUrl });
    const sub = new Redis(services().redisUrl);
    const redis = new Redis(services().redisUrl);
    try {
      const messages: Array<{ region: string; changes: Array<{ sku: string; bottles: number; version: number }> }> = [];
      await sub.subscribe('cellar:stock-updates');
      sub.on('message', (_c, m) => {
        const parsed = JSON.parse(m);
        if (parsed.region === region) messages.push(parsed);
      });
      await sink.connect();
      await sink.writeBatch([]);
      const r = (sku: string, bottles: number, version: number) => ({ region, sku, bottles, contributors: 1, version, sourceTsMs: 1, updatedTsMs: 2 });
      await sink.writeBatch([r('a', 12, 1), r('b', 6, 1)]);
      await sink.writeBatch([r('a', 12, 1)]);
      await sink.writeBatch([r('a', 9, 2)]);
      expect(await redis.hgetall(`cellar:stock:${region}`)).toEqual({ a: '9', b: '6' });
      expect(await redis.hget(`cellar:stock:${region}:meta`, 'version')).toBe('3');
      await new Promise((res) => setTimeout(res, 200));
      expect(messages.map((m) => m.changes.map((c) => `${c.sku}=${c.bottles}@${c.version}`))).toEqual([['a=12@1', 'b=6@1'], ['a=9@2']]);
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
    const r = (sku: string, bottles: number, version: number) => ({ region, sku, bottles, contributors: 1, version, sourceTsMs: 1, updatedTsMs: 2 });
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
