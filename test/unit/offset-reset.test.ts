import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createKafka, OFFSET_RESET_MESSAGE, type OffsetReset } from '../../pipelines/kafka/client.js';
import { loadRuntimeConfig } from '../../pipelines/core/config.js';
import { memoryLogger } from '../api/api-support.js';

/**
 * kafkajs resets a consumer whose next offset the broker no longer has (retention removed it before it was
 * consumed) and says so only in its log. Cellar turns that log line into a counted, loud event; these check
 * that the installed kafkajs still logs it that way, and that the line reaches the hook with its fields.
 */
describe('offset resets by kafkajs', () => {
  it('kafkajs still resets with that message and those fields (a kafkajs upgrade that changes it must fail here)', () => {
    const src = join(dirname(createRequire(import.meta.url).resolve('kafkajs')), 'src', 'consumer', 'consumerGroup.js');
    const text = readFileSync(src, 'utf8');
    const at = text.indexOf(`'${OFFSET_RESET_MESSAGE}'`);
    expect(at, `${src} no longer logs "${OFFSET_RESET_MESSAGE}"`).toBeGreaterThan(0);
    expect(text.slice(at, at + 300)).toMatch(/topic: e\.topic,\s+partition: e\.partition,\s+groupId: this\.groupId/);
  });

  it('hands the reset to the hook with topic, partition and group; other log lines go to the logger', () => {
    const { log, lines } = memoryLogger();
    const seen: OffsetReset[] = [];
    const kafka = createKafka(loadRuntimeConfig({ CELLAR_KAFKA_BROKERS: '127.0.0.1:1' }), log, 'test', { onOffsetReset: (r) => seen.push(r) });
    kafka.logger().error(OFFSET_RESET_MESSAGE, { topic: 'north.public.stock', partition: 2, groupId: 'cellar-normalizer', memberId: 'm' });
    kafka.logger().error('something else', { topic: 't' });
    expect(seen).toEqual([{ topic: 'north.public.stock', partition: 2, groupId: 'cellar-normalizer' }]);
    expect(lines.some((l) => l.includes('something else'))).toBe(true);
    expect(lines.some((l) => l.includes(OFFSET_RESET_MESSAGE))).toBe(false);
  });
});
