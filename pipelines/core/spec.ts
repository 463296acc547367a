import type { z } from 'zod';
import { ConfigError } from './errors.js';

/** Formats a zod issue path like `mapping.regions["depot-1"]` or `tables[2].name`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (typeof p === 'string' && /^[A-Za-z_$][\w$]*$/.test(p)) out += out ? `.${p}` : p;
    else out += `[${JSON.stringify(String(p))}]`;
  }
  return out || '(root)';
}

/**
 * Parses `input` with a component's config spec. Collects every problem and throws one
 * {@link ConfigError} whose lines read `where: field.path: what was expected`.
 */
export function parseSpec<S extends z.ZodType>(
  schema: S,
  input: unknown,
  where: string,
  /** Names a field for people, e.g. a config key as its environment variable. */
  nameField: (path: readonly PropertyKey[]) => string = formatPath,
): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${where}: ${nameField(issue.path)}: ${issue.message}`);
  throw new ConfigError(`invalid configuration in ${where}`, problems);
}
