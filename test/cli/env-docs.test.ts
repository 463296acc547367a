import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/local/cellar-process.js';
import { ENV_GROUPS, environmentVariables, readmeWithEnvironment } from '../../pipelines/cli/env-help.js';

/**
 * The environment can not drift: every variable comes from a spec (RuntimeConfigSpec, ProcessEnvSpec,
 * KafkaConnectSpec), is documented there, listed by `cellar --help` (test/cli/cli.test.ts) and in the
 * README's one table, and the source names no other `CELLAR_*` variable.
 */

/** Folders whose source may only name variables of the specs (tests and infra/local may read test-only ones). */
const SOURCE_DIRS = ['pipelines', 'connectors', 'sinks', 'schemas'];

/**
 * `CELLAR_*` names the source may use that are in no spec, each with why. A name ending in `_` is a prefix:
 * any variable starting with it is allowed.
 */
const EXCEPTIONS: ReadonlyArray<{ name: string; why: string }> = [
  {
    name: 'CELLAR_DEMO_',
    why: '`cellar demo --kafka` hands this prefix to infra/local/stack.ts, which reads CELLAR_DEMO_PG_URL, _KAFKA_BROKERS, … to use existing services instead of starting private ones: the same overrides the tests take as CELLAR_TEST_* (README, "Tests"), not a setting of Cellar',
  },
];

function sourceFiles(dir: string): string[] {
  return readdirSync(join(REPO_ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return /\.(ts|js)$/.test(e.name) ? [path] : [];
  });
}

const variables = environmentVariables();
const names = new Set(variables.map((v) => v.name));

describe('environment variables', () => {
  it('each spec field with a variable is described, the description starting with the variable name', () => {
    const bad = variables.filter((v) => !v.description.startsWith(`${v.name}: `) || v.text.length < 10).map((v) => `${v.group} ${v.name}: ${JSON.stringify(v.description)}`);
    expect(bad).toEqual([]);
    expect(ENV_GROUPS.map((g) => g.title)).toEqual(['Runtime', 'Process', 'Kafka Connect']);
    for (const name of ['CELLAR_LOG_LEVEL', 'CELLAR_KEEP_LOGS', 'CELLAR_ACTOR', 'CELLAR_CONNECTOR_POLL_MS', 'CELLAR_DEMO_MARIADB', 'CELLAR_CONNECT_NAME_PREFIX', 'CELLAR_CONNECT_SCHEMA_HISTORY_PREFIX', 'CELLAR_CONNECT_SIGNAL_TABLE', 'CELLAR_CONNECT_MYSQL_SERVER_ID_BASE']) {
      expect(names.has(name), name).toBe(true);
    }
  });

  it('the README has the one table made from the specs (run `npm run docs:env` after changing a spec)', () => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    expect(readmeWithEnvironment(readme), 'README.md\'s environment table differs from the specs: run `npm run docs:env`').toBe(readme);
    for (const name of names) expect(readme, name).toContain(`| \`${name}\` |`);
  });

  it(`the source under ${SOURCE_DIRS.join(', ')} names no CELLAR_* variable that is in no spec`, () => {
    const unknown: string[] = [];
    const used = new Set<string>();
    for (const file of SOURCE_DIRS.flatMap(sourceFiles)) {
      const text = readFileSync(join(REPO_ROOT, file), 'utf8');
      for (const m of text.matchAll(/\bCELLAR_[A-Z0-9_]+/g)) {
        const name = m[0];
        const line = text.slice(0, m.index).split('\n').length;
        const exception = EXCEPTIONS.find((e) => (e.name.endsWith('_') ? name.startsWith(e.name) : name === e.name));
        if (exception) {
          used.add(exception.name);
          continue;
        }
        // A prefix (`CELLAR_CONNECT_*` in prose) is fine when some variable has it.
        const known = name.endsWith('_') ? [...names].some((n) => n.startsWith(name)) : names.has(name);
        if (!known) unknown.push(`${relative(REPO_ROOT, join(REPO_ROOT, file))}:${line}: ${name}`);
      }
    }
    expect(unknown, 'add the variable to a spec (pipelines/core/config.ts, pipelines/core/process-env.ts, connectors/kafka-connect/config.ts), or to EXCEPTIONS here with why').toEqual([]);
    // An exception nothing uses any more must go.
    expect(EXCEPTIONS.map((e) => e.name).filter((n) => !used.has(n))).toEqual([]);
  });

  it('reads process.env.CELLAR_* only for variables of a spec', () => {
    const reads: string[] = [];
    for (const file of SOURCE_DIRS.flatMap(sourceFiles)) {
      const text = readFileSync(join(REPO_ROOT, file), 'utf8');
      for (const m of text.matchAll(/process\.env(?:\.|\[['"`])(CELLAR_[A-Z0-9_]+)/g)) if (!names.has(m[1]!)) reads.push(`${file}: ${m[1]}`);
    }
    expect(reads).toEqual([]);
  });
});
