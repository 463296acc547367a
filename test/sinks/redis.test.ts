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
