import { z } from 'zod';
import { parseSpec } from '../../pipelines/core/spec.js';

/** Postgres sink settings. */
export const PostgresSinkSpec = z.object({
  /** Connection URL of Cellar's database. */
  url: z.string().min(1),
  /** Pool size. Default 4. */
  poolMax: z.number().int().min(1).default(4),
});
export type PostgresSinkConfig = z.output<typeof PostgresSinkSpec>;

export function parsePostgresSinkConfig(input: unknown): PostgresSinkConfig {
  return parseSpec(PostgresSinkSpec, input, 'postgres sink');
}
