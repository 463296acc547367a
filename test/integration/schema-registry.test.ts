import axios from 'axios';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { AvroCodec, canonicalSchemaText, canonicalType, createCodecs } from '../../schemas/registry.js';
import type { StockObservation } from '../../schemas/records.js';
import { rid, services } from '../support/services.js';

const SR = 'application/vnd.schemaregistry.v1+json';

describe('Schema Registry contract and codecs', () => {
  const http = () => axios.create({ baseURL: services().schemaRegistryUrl, validateStatus: () => true, headers: { 'content-type': SR } });

  it('registers, looks up and refuses incompatible schemas with the documented error shapes', async () => {
    const subject = `${rid()}-value`;
    const v1 = { type: 'record', name: 'R', fields: [{ name: 'a', type: 'string' }] };
    const r1 = await http().post(`/subjects/${subject}/versions`, { schema: JSON.stringify(v1) });
    expect(r1.status).toBe(200);
    expect(r1.headers['content-type']).toContain(SR);
    expect((await http().post(`/subjects/${subject}/versions`, { schema: JSON.stringify(v1) })).data).toEqual({ id: r1.data.id });
    expect((await http().get(`/config/${subject}`)).data).toMatchObject({ error_code: 40408 });
    expect((await http().put(`/config/${subject}`, { compatibility: 'BACKWARD' })).data).toEqual({ compatibility: 'BACKWARD' });
    const bad = { type: 'record', name: 'R', fields: [{ name: 'a', type: 'string' }, { name: 'b', type: 'int' }] };
    const r2 = await http().post(`/subjects/${subject}/versions`, { schema: JSON.stringify(bad) });
    expect(r2.status).toBe(409);
    expect(r2.data).toMatchObject({ error_code: 409 });
    const good = { type: 'record', name: 'R', fields: [{ name: 'a', type: 'string' }, { name: 'b', type: 'int', default: 0 }] };
    expect((await http().post(`/compatibility/subjects/${subject}/versions/latest`, { schema: JSON.stringify(good) })).data).toEqual({ is_compatible: true });
    const r3 = await http().post(`/subjects/${subject}/versions`, { schema: JSON.stringify(good) });
    expect(r3.status).toBe(200);
    expect((await http().get(`/subjects/${subject}/versions/latest`)).data).toMatchObject({ subject, version: 2, id: r3.data.id });
    expect((await http().get(`/schemas/ids/${r1.data.id}`)).data.schema).toBe(JSON.stringify(v1));
    expect((await http().get('/schemas/ids/999999')).data).toMatchObject({ error_code: 40403 });
    expect((await http().get(`/subjects/${rid()}/versions/latest`)).data).toMatchObject({ error_code: 40401 });
  });

  it('round-trips canonical records in the Confluent wire format', async () => {
    const codecs = createCodecs(services().schemaRegistryUrl);
    const subject = `${rid()}.observations-value`;
    const id = await codecs.observation.register(subject);
    const o: StockObservation = {
      supplierId: 's', warehouseId: 'w', region: 'r', sku: 'k', supplierSku: 'K', vintage: 2019, bottleSizeMl: 750, bottles: 12,
      op: 'UPSERT', contributorId: 's/t/id=1', sourceVersion: '0001', sourceTsMs: 1, ingestTsMs: 2, traceId: 'x',
    };
    const buf = codecs.observation.encode(subject, o);
    expect(buf[0]).toBe(0);
    expect(buf.readInt32BE(1)).toBe(id);
    expect(await createCodecs(services().schemaRegistryUrl).observation.decode(buf)).toEqual(o);
    const lib = new SchemaRegistry({ host: services().schemaRegistryUrl });
    expect(await lib.decode(buf)).toMatchObject({ sku: 'k', bottles: 12 });
  });

  it('decodes records written with an older schema version when the canonical schema gains an optional field', async () => {
    const subject = `${rid()}-value`;
    const registry = new SchemaRegistry({ host: services().schemaRegistryUrl });
    const current = JSON.parse(canonicalSchemaText('StockObservation')) as { fields: Array<{ name: string }> };
    const older = { ...current, fields: current.fields.filter((f) => f.name !== 'vintage') };
    const olderCodec = new AvroCodec<Record<string, unknown>>(registry, avro.Type.forSchema(older as avro.Schema), JSON.stringify(older));
    await olderCodec.register(subject);
    const buf = olderCodec.encode(subject, {
      supplierId: 's', warehouseId: 'w', region: 'r', sku: 'k', supplierSku: 'K', bottleSizeMl: 750, bottles: 3,
      op: 'DELETE', contributorId: 'c', sourceVersion: '1', sourceTsMs: 1, ingestTsMs: 1, traceId: 't',
    });
    const reader = new AvroCodec<StockObservation>(registry, canonicalType('StockObservation'), canonicalSchemaText('StockObservation'));
    expect(await reader.decode(buf)).toMatchObject({ vintage: null, bottles: 3, op: 'DELETE' });
    await expect(reader.decode(Buffer.from('plain json'))).rejects.toMatchObject({ code: 'wire_format' });
  });
});

describe('cellar schemas check', () => {
  it('passes for the shipped schemas and fails for an incompatible change', async () => {
    const { checkSchemas } = await import('../../schemas/check.js');
    const subject = `${rid()}.regional-stock-value`;
    const current = canonicalSchemaText('RegionalStock');
    expect(await checkSchemas(services().schemaRegistryUrl, [{ subject, schema: current }])).toEqual([{ subject, verdict: 'new' }]);
    await createCodecs(services().schemaRegistryUrl).regionalStock.register(subject);
    expect((await checkSchemas(services().schemaRegistryUrl, [{ subject, schema: current }]))[0]!.verdict).toBe('compatible');
    const parsed = JSON.parse(current) as { fields: Array<Record<string, unknown>> };
    const optional = { ...parsed, fields: [...parsed.fields, { name: 'warehouseCount', type: ['null', 'int'], default: null }] };
    const required = { ...parsed, fields: [...parsed.fields, { name: 'warehouseCount', type: 'int' }] };
    expect((await checkSchemas(services().schemaRegistryUrl, [{ subject, schema: JSON.stringify(optional) }]))[0]!.verdict).toBe('compatible');
    expect((await checkSchemas(services().schemaRegistryUrl, [{ subject, schema: JSON.stringify(required) }]))[0]!.verdict).toBe('incompatible');
  });
});
