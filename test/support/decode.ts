import { expect } from 'vitest';
import { DebeziumJsonMessage } from '../../connectors/debezium/envelope.js';
import { decodeDebeziumJson, type ChangeEvent } from '../../pipelines/normalize/debezium.js';

/**
 * Decodes a native reader's message from its JSON bytes, as the Kafka runtime's normalizer does, and
 * checks that the event the message gives without the JSON round trip (the embedded runtime's path) is
 * the same, field by field.
 */
export function decodeChecked(m: { key: string | null; value: string }): ChangeEvent {
  const decoded = decodeDebeziumJson(m.key ? Buffer.from(m.key) : null, Buffer.from(m.value))!;
  expect(m, 'native readers hand over DebeziumJsonMessage').toBeInstanceOf(DebeziumJsonMessage);
  expect((m as DebeziumJsonMessage).change(), `decoded without JSON: ${m.value.slice(0, 200)}`).toEqual(decoded);
  return decoded;
}
