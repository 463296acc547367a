import { RUNTIME_ENV, RuntimeConfigSpec } from '../core/config.js';
import { PROCESS_ENV, ProcessEnvSpec } from '../core/process-env.js';
import { CONNECT_ENV, KafkaConnectSpec } from '../../connectors/kafka-connect/config.js';
import { wrap } from './format.js';

/**
 * Every environment variable Cellar reads, from the three specs that read them: `cellar --help` and the
 * README's table are made from here (test/cli/env-docs.test.ts keeps the README equal to it, and every
 * `CELLAR_*` name in the source in some spec). Loaded only when help is shown: the specs need zod.
 */
export interface EnvGroup {
  /** Heading in `cellar --help` and the README. */
  title: string;
  /** What the group is for, and where its spec is. */
  about: string;
  /** The spec's fields: their `.describe()` text starts with the variable name. */
  shape: Record<string, { description?: string | undefined }>;
  /** Field → variable. */
  names: Partial<Record<string, string>>;
}

export const ENV_GROUPS: readonly EnvGroup[] = [
  {
    title: 'Runtime',
    about: 'Cellar\'s services, topics and ports, read by every process (RuntimeConfigSpec, pipelines/core/config.ts)',
    shape: RuntimeConfigSpec.shape,
    names: RUNTIME_ENV,
  },
  {
    title: 'Process',
    about: 'logging, who acts, the demo (ProcessEnvSpec, pipelines/core/process-env.ts)',
    shape: ProcessEnvSpec.shape,
    names: PROCESS_ENV,
  },
  {
    title: 'Kafka Connect',
    about: '`cellar connectors` and the Debezium connectors it manages; unset ones follow the runtime settings (KafkaConnectSpec, connectors/kafka-connect/config.ts)',
    shape: KafkaConnectSpec.shape,
    names: CONNECT_ENV,
  },
];

/** One variable of one group. */
export interface EnvVariable {
  group: string;
  name: string;
  /** The spec's description without the leading `NAME: `. */
  text: string;
  /** The spec's whole description, as written. */
  description: string;
}

/** Every variable, group by group, in the specs' order (a variable two specs read is listed in both). */
export function environmentVariables(): EnvVariable[] {
  return ENV_GROUPS.flatMap((g) =>
    Object.entries(g.names).flatMap(([field, name]) => {
      if (!name) return [];
      const description = g.shape[field]?.description ?? '';
      const text = description.startsWith(`${name}:`) ? description.slice(name.length + 1).trim() : description;
      return [{ group: g.title, name, text, description }];
    }),
  );
}

/**
 * The `Environment:` part of `cellar --help`, wrapped to `columns`: name and meaning side by side on a
 * wide terminal, the meaning under the name on a narrow one.
 */
export function environmentHelp(columns = 80): string {
  const vars = environmentVariables();
  const nameWidth = Math.max(...vars.map((v) => v.name.length)) + 2;
  const sideBySide = columns >= 4 + nameWidth + 60;
  const indent = sideBySide ? 4 + nameWidth : 8;
  const textWidth = Math.max(40, columns - indent - 1);
  const out = wrap('Environment (all optional; a bad value stops any command with exit 2, naming the variable):', columns - 1);
  for (const g of ENV_GROUPS) {
    out.push('', ...wrap(`${g.title}: ${g.about}`, columns - 5).map((l, i) => `${i ? '    ' : '  '}${l}`));
    for (const v of vars.filter((x) => x.group === g.title)) {
      const lines = wrap(v.text, textWidth);
      if (sideBySide) out.push(`    ${v.name.padEnd(nameWidth)}${lines[0] ?? ''}`, ...lines.slice(1).map((l) => `${' '.repeat(indent)}${l}`));
      else out.push(`    ${v.name}`, ...lines.map((l) => `${' '.repeat(indent)}${l}`));
    }
  }
  return out.join('\n');
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\s+/g, ' ');

/** The README's environment table: one table, a heading row per group. */
export function environmentMarkdown(): string {
  const vars = environmentVariables();
  const rows = ['| variable | meaning and default |', '| --- | --- |'];
  for (const g of ENV_GROUPS) {
    rows.push(`| **${cell(g.title)}** | ${cell(g.about)} |`);
    for (const v of vars.filter((x) => x.group === g.title)) rows.push(`| \`${v.name}\` | ${cell(v.text)} |`);
  }
  return rows.join('\n');
}

/** Where the generated table starts and ends in README.md. */
export const README_MARKERS = {
  begin: '<!-- environment table: generated from the specs by `npm run docs:env`; test/cli/env-docs.test.ts fails when it differs -->',
  end: '<!-- end of environment table -->',
} as const;

/** `readme` with the text between the markers replaced by {@link environmentMarkdown}; throws without the markers. */
export function readmeWithEnvironment(readme: string): string {
  const b = readme.indexOf(README_MARKERS.begin);
  const e = readme.indexOf(README_MARKERS.end);
  if (b < 0 || e < b) throw new Error(`README.md has no environment table markers (${README_MARKERS.begin} … ${README_MARKERS.end})`);
  return `${readme.slice(0, b + README_MARKERS.begin.length)}\n${environmentMarkdown()}\n${readme.slice(e)}`;
}
