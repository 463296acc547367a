import type { Producer } from 'kafkajs';
import type pg from 'pg';
import { fromKafkaError } from '../core/errors.js';
import { insertDeadLetters } from '../state/dead-letters.js';
import type { CanonicalCodecs } from '../../schemas/registry.js';
import { valueSubject } from '../../schemas/registry.js';
import type { DeadLetter } from '../../schemas/records.js';

/**
 * Writes dead letters to the `cellar.dlq` topic (Avro DeadLetter) and the `cellar.dead_letters` table.
 * Idempotent per (stage, topic, partition, offset): a redelivered batch does not duplicate rows.
 */
export class DeadLetterWriter {
  constructor(
    private readonly producer: Producer,
    private readonly codecs: CanonicalCodecs,
    private readonly topic: string,
    private readonly pool: pg.Pool,
  ) {}

  async init(): Promise<void> {
    await this.codecs.deadLetter.register(valueSubject(this.topic));
  }

  async write(letters: DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    const subject = valueSubject(this.topic);
    try {
      await this.producer.send({
        topic: this.topic,
        acks: -1,
        messages: letters.map((l) => ({
          key: l.supplierId ?? l.stage,
          value: this.codecs.deadLetter.encode(subject, l),
          headers: { 'cellar-reason': l.reason, 'cellar-stage': l.stage },
        })),
      });
    } catch (err) {
      throw fromKafkaError(err, 'writing dead letters to Kafka');
    }
    await insertDeadLetters(this.pool, letters);
  }
}
