import { z } from 'zod';
import { parseSpec } from '../../pipelines/core/spec.js';

const ident = z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'lowercase identifier (letters, digits, _), at most 63 characters');

/** Settings of the native Postgres CDC reader. */
export const PostgresCdcSpec = z.object({
  /** Connection URL of the supplier database (the user needs REPLICATION and SELECT on the tables). */
  url: z.string().min(1).describe('connection URL of the supplier database'),
  /** Debezium logical server name: topics and `source.name` are `<topicPrefix>.<schema>.<table>`. */
  topicPrefix: z.string().regex(/^[A-Za-z0-9_.-]+$/).describe('Debezium topic.prefix'),
  /** Captured tables as `schema.table`. */
  tables: z.array(z.string().regex(/^[A-Za-z_][\w$]*\.[A-Za-z_][\w$]*$/, 'schema.table')).min(1),
  /** Replication slot; created when missing. Default `cellar_<topicPrefix>`. */
  slotName: ident.optional(),
  /** Publication covering exactly `tables`; created or altered when needed. Default `cellar_<topicPrefix>`. */
  publicationName: ident.optional(),
  /** `initial`: read existing rows in the slot's exported snapshot, then stream. `never`: stream only. */
  snapshot: z.enum(['initial', 'never']).default('initial'),
  /** Rows per snapshot fetch. Default 5000. */
  snapshotFetchRows: z.number().int().min(1).default(5000),
});

export type PostgresCdcConfig = z.output<typeof PostgresCdcSpec> & { slotName: string; publicationName: string };

/** Parses the reader's config, naming every bad field. */
export function parsePostgresCdcConfig(input: unknown): PostgresCdcConfig {
  const c = parseSpec(PostgresCdcSpec, input, 'postgres-cdc');
  const base = `cellar_${c.topicPrefix.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`.slice(0, 63);
  return { ...c, slotName: c.slotName ?? base, publicationName: c.publicationName ?? base };
}
