import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import avro from 'avsc';
import { debeziumAvroSchema, debeziumAvroValue, debeziumTopic, type ChangeSpec, type ColumnDef, type SourceInfo } from '../connectors/debezium/envelope.js';

/**
 * What a Debezium connector with the Avro converter writes for a table keyed by one integer `id` column:
 * registers the value and key schemas under `<topic>-value` and `<topic>-key` and returns an encoder of
 * changes into Confluent wire-format messages (magic byte 0, schema id, Avro body). Used by the benches.
 */
export async function debeziumAvroWriter(registryUrl: string, info: SourceInfo, columns: ColumnDef[]): Promise<(c: ChangeSpec) => { key: Buffer; value: Buffer }> {
  const topic = debeziumTopic(info);
  const registry = new SchemaRegistry({ host: registryUrl });
  const schema = debeziumAvroSchema(info, columns);
  const keySchema = { type: 'record', name: 'Key', namespace: topic, fields: [{ name: 'id', type: 'int' }] };
  const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }, { subject: `${topic}-value` });
  const { id: keyId } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(keySchema) }, { subject: `${topic}-key` });
  const type = avro.Type.forSchema(schema as avro.Schema, { wrapUnions: 'auto' });
  const keyType = avro.Type.forSchema(keySchema as avro.Schema);
  const wire = (sid: number, body: Buffer) => {
    const out = Buffer.allocUnsafe(5 + body.length);
    out[0] = 0;
    out.writeInt32BE(sid, 1);
    body.copy(out, 5);
    return out;
  };
  return (c) => ({ key: wire(keyId, keyType.toBuffer({ id: (c.after ?? c.before)!.id })), value: wire(id, type.toBuffer(debeziumAvroValue(info, columns, c))) });
}
