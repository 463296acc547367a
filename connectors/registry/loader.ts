import { rememberSecret } from '../../pipelines/core/secrets.js';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve, dirname, isAbsolute } from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError } from '../../pipelines/core/errors.js';
import { formatPath } from '../../pipelines/core/spec.js';
import { SupplierSpec, type SecretRef, type SupplierConfig } from './schema.js';

/** A validated supplier with where it came from. */
export interface Supplier extends SupplierConfig {
  /** The YAML file this supplier was read from. */
  file: string;
  /** Resolved topic prefix (source.topicPrefix or the id). */
  topicPrefix: string;
}

/** Parses one supplier document; problems name the file and field path. Does not read secrets. */
export function parseSupplier(text: string, file: string): Supplier {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length) {
    throw new ConfigError(`invalid YAML in ${file}`, doc.errors.map((e) => `${file}: ${e.message.split('\n')[0]}`));
  }
  const result = SupplierSpec.safeParse(doc.toJS());
  if (!result.success) {
    throw new ConfigError(
      `invalid supplier in ${file}`,
      result.error.issues.map((i) => `${file}: ${formatPath(i.path)}: ${i.message}`),
    );
  }
  return { ...result.data, file, topicPrefix: result.data.source.topicPrefix ?? result.data.id };
}

/** Reads a single supplier file. */
export function loadSupplierFile(file: string): Supplier {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read supplier file ${file}: ${(err as Error).message}`);
  }
  return parseSupplier(text, file);
}

/**
 * Loads every `*.yaml`/`*.yml` in `dir`. Collects the problems of all files (and duplicate ids or topic
 * prefixes across files) into one ConfigError, so an operator sees everything to fix at once.
 */
export function loadRegistry(dir: string): Supplier[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => /\.ya?ml$/.test(n)).sort();
  } catch (err) {
    throw new ConfigError(`cannot read supplier registry folder ${dir}: ${(err as Error).message}`);
  }
  const suppliers: Supplier[] = [];
  const problems: string[] = [];
  for (const n of names) {
    const file = join(dir, n);
    if (!statSync(file).isFile()) continue;
    try {
      suppliers.push(loadSupplierFile(file));
    } catch (err) {
      if (err instanceof ConfigError) problems.push(...(err.problems.length ? err.problems : [err.message]));
      else throw err;
    }
  }
  const seen = new Map<string, string>();
  for (const s of suppliers) {
    for (const [what, value] of [['id', s.id], ['topic prefix', s.topicPrefix]] as const) {
      const k = `${what}:${value}`;
      const other = seen.get(k);
      if (other) problems.push(`${s.file}: ${what === 'id' ? 'id' : 'source.topicPrefix'}: ${what} "${value}" is also used by ${other}`);
      else seen.set(k, s.file);
    }
  }
  if (problems.length) throw new ConfigError(`supplier registry ${dir} has problems`, problems);
  if (suppliers.length === 0) throw new ConfigError(`supplier registry ${dir} has no *.yaml supplier files`);
  return suppliers;
}

/**
 * Resolves a secret reference at the moment it is needed. The value is returned to the caller only;
 * errors name the reference, never the value.
 */
export function resolveSecret(ref: SecretRef, baseFile: string, env: NodeJS.ProcessEnv = process.env): string {
  if (typeof ref === 'string') {
    const name = ref.slice(2, -1);
    const v = env[name];
    if (v === undefined) throw new ConfigError(`${baseFile}: secret \${${name}} is not set in the environment`);
    rememberSecret(v);
    return v;
  }
  const path = isAbsolute(ref.file) ? ref.file : resolve(dirname(baseFile), ref.file);
  try {
    const v = readFileSync(path, 'utf8').trim();
    rememberSecret(v);
    return v;
  } catch (err) {
    throw new ConfigError(`${baseFile}: cannot read secret file ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}
