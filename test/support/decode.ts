import { expect } from 'vitest';
import { toDebeziumJson } from '../../connectors/debezium/envelope.js';
import { SourceChange } from '../../connectors/source-change.js';
import { decodeDebeziumJson, type ChangeEvent } from '../../pipelines/normalize/debezium.js';

/**
 * Encodes a native reader's change as capture publishes it (Debezium JSON), decodes those bytes as the
 * Kafka runtime's normalizer does, and checks that the event the change gives directly (the embedded
 * runtime's path, no JSON) is the same, field by field.
 */
export function decodeChecked(c: SourceChange): ChangeEvent {
  expect(c, 'native readers hand over SourceChange').toBeInstanceOf(SourceChange);
  const m = toDebeziumJson(c);
  const decoded = decodeDebeziumJson(m.key ? Buffer.from(m.key) : null, Buffer.from(m.value))!;
  const e = c.event();
  // `source` is built when read (a getter): compared as a field like the others.
  expect({ ...e, source: e.source }, `decoded without JSON: ${m.value.slice(0, 200)}`).toEqual(decoded);
  expect(decoded.table, 'the change names its table as the decoded event does').toBe(c.table);
  return decoded;
}
