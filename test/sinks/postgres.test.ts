import { createPostgresStockSink } from '../../sinks/postgres/sink.js';
import { freshDatabase } from '../support/services.js';
import { sinkConformance } from './conformance.js';

sinkConformance('PostgresStockSink', async () => {
  const db = await freshDatabase();
  return { sink: createPostgresStockSink({ url: db.url }), cleanup: () => db.pool.end() };
});
