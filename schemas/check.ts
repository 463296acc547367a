import axios from 'axios';
import { CellarError } from '../pipelines/core/errors.js';

const SR_JSON = 'application/vnd.schemaregistry.v1+json';

/** One subject's verdict. */
export interface SchemaCheck {
  subject: string;
  /** `compatible`, `incompatible`, or `new` (nothing registered under the subject yet). */
  verdict: 'compatible' | 'incompatible' | 'new';
  /** Registry messages explaining an incompatibility, when it gives them. */
  messages?: string[];
}

/**
 * Asks the Schema Registry whether each schema can be registered under its subject given the subject's
 * compatibility level (Cellar registers with BACKWARD): `POST /compatibility/subjects/{s}/versions/latest`.
 */
export async function checkSchemas(registryUrl: string, entries: Array<{ subject: string; schema: string }>): Promise<SchemaCheck[]> {
  const out: SchemaCheck[] = [];
  for (const { subject, schema } of entries) {
    try {
      const res = await axios.post<{ is_compatible: boolean; messages?: string[] }>(
        `${registryUrl}/compatibility/subjects/${encodeURIComponent(subject)}/versions/latest?verbose=true`,
        { schema },
        { headers: { 'content-type': SR_JSON }, timeout: 10_000, validateStatus: (s) => s === 200 || s === 404 },
      );
      if (res.status === 404) out.push({ subject, verdict: 'new' });
      else out.push({ subject, verdict: res.data.is_compatible ? 'compatible' : 'incompatible', messages: res.data.messages });
    } catch (err) {
      throw new CellarError('schema_registry', `checking ${subject} against ${registryUrl}: ${(err as Error).message}`, { retriable: true, cause: err });
    }
  }
  return out;
}
