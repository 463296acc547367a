import type { Producer } from 'kafkajs';
import type pg from 'pg';
import { fromKafkaError } from '../core/errors.js';
import { query } from '../../sinks/postgres/pool.js';
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
    const col = <K extends keyof DeadLetter>(k: K) => letters.map((l) => l[k]);
    await query(
      this.pool,
      'writing dead letters',
      `INSERT INTO cellar.dead_letters (stage, reason, message, supplier_id, topic, partition, "offset", source_position, key, value, created_at)
       SELECT u.stage, u.reason, u.message, u.sup, u.topic, u.part, u.off, u.pos, u.k, u.v, to_timestamp(u.ts / 1000.0)
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::integer[], $7::text[], $8::text[],
                     $9::bytea[], $10::bytea[], $11::double precision[]) AS u(stage, reason, message, sup, topic, part, off, pos, k, v, ts)
       ON CONFLICT (stage, topic, partition, "offset") DO NOTHING`,
      [col('stage'), col('reason'), col('message'), col('supplierId'), col('topic'), col('partition'), col('offset'), col('sourcePosition'), col('key'), col('value'), col('tsMs')],
    );
  }
}
