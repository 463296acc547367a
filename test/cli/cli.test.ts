import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/local/cellar-process.js';
import { RUNTIME_ENV } from '../../pipelines/core/config.js';
import { PROCESS_ENV } from '../../pipelines/core/process-env.js';
import { CONNECT_ENV } from '../../connectors/kafka-connect/config.js';

const run = promisify(execFile);
const EX = join(REPO_ROOT, 'connectors/suppliers/examples');
const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** `cellar <args>` from source, as the other CLI tests run it: exit code, stdout, stderr. */
function cellar(args: string[], env: Record<string, string> = {}, entry = ['--import', 'tsx', 'pipelines/cli/main.ts']): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, [...entry, ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env } }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** A usage error as the issue asks for it: exit 2, one line on stderr, nothing on stdout, no stack trace. */
function expectUsageError(r: { code: number; stdout: string; stderr: string }, says: RegExp): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stdout).toBe('');
  expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stderr).toMatch(says);
}

describe('cellar --version and --help', () => {
  it('--version prints the version of package.json, from source and through bin/cellar.js', async () => {
    const r = await cellar(['--version']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${VERSION}\n`);
    // bin/cellar.js runs dist/ when it is fresh, else the sources through tsx: the answer is the same.
    const bin = await cellar(['--version'], {}, ['bin/cellar.js']);
    expect(bin.code, bin.stderr).toBe(0);
    expect(bin.stdout).toBe(`${VERSION}\n`);
  });

  it('--help lists every variable of the runtime, process and Kafka Connect specs under their headings, and the exit codes', async () => {
    const r = await cellar(['--help']);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout;
    const at = (heading: string) => out.search(new RegExp(`^  ${heading}: `, 'm'));
    const [runtime, proc, connect] = [at('Runtime'), at('Process'), at('Kafka Connect')];
    expect(runtime, out).toBeGreaterThan(out.indexOf('Environment'));
    expect(proc).toBeGreaterThan(runtime);
    expect(connect).toBeGreaterThan(proc);
    const listed = (name: string, from: number, to: number) => out.slice(from, to).includes(`    ${name}`);
    for (const name of Object.values(RUNTIME_ENV)) expect(listed(name, runtime, proc), `${name} under Runtime`).toBe(true);
    for (const name of Object.values(PROCESS_ENV)) expect(listed(name, proc, connect), `${name} under Process`).toBe(true);
    for (const name of Object.values(CONNECT_ENV)) expect(listed(name!, connect, out.length), `${name} under Kafka Connect`).toBe(true);
    for (const name of ['CELLAR_LOG_LEVEL', 'CELLAR_KEEP_LOGS', 'CELLAR_ACTOR', 'CELLAR_CONNECTOR_POLL_MS', 'CELLAR_DEMO_MARIADB', 'CELLAR_CONNECT_NAME_PREFIX', 'CELLAR_CONNECT_SCHEMA_HISTORY_PREFIX', 'CELLAR_CONNECT_SIGNAL_TABLE', 'CELLAR_CONNECT_MYSQL_SERVER_ID_BASE']) {
      expect(out).toContain(name);
    }
    expect(out).toMatch(/^Exit codes/m);
    for (const code of [0, 1, 2, 3]) expect(out).toMatch(new RegExp(`^  ${code}  \\S`, 'm'));
  });

  it('help shows with a bad CELLAR_LOG_LEVEL too; a command refuses it: exit 2 naming the variable', async () => {
    expect((await cellar(['--help'], { CELLAR_LOG_LEVEL: 'loud' })).code).toBe(0);
    const r = await cellar(['status'], { CELLAR_LOG_LEVEL: 'loud' });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('CELLAR_LOG_LEVEL');
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});

describe('usage errors: exit 2, one line', () => {
  it('an unknown option', async () => {
    expectUsageError(await cellar(['status', '--bogus']), /^cellar status: unknown option '--bogus'; see cellar status --help$/m);
  });

  it('a missing argument', async () => {
    expectUsageError(await cellar(['run']), /^cellar run: missing required argument 'role'; see cellar run --help$/m);
    expectUsageError(await cellar(['keys', 'revoke']), /^cellar keys revoke: missing required argument 'id-or-name'/m);
  });

  it('an unknown command, an argument out of its choices, a missing required option', async () => {
    expectUsageError(await cellar(['stauts']), /^cellar: unknown command 'stauts' \(Did you mean status\?\); see cellar --help$/m);
    expectUsageError(await cellar(['run', 'nomalizer']), /^cellar run: .*'nomalizer' is invalid .*normalizer/m);
    expectUsageError(await cellar(['mapping', 'test', '--events', 'e.jsonl']), /^cellar mapping test: required option '--file <path>' not specified/m);
  });

  it('a bad flag value is a configuration error: exit 2, without a stack', async () => {
    const r = await cellar(['demo', '--rate', 'lots']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr.trim()).toBe('cellar: --rate lots: expected changes per second between 1 and 100000');
  });
});

describe('cellar mapping test --file', () => {
  const events = join(EX, 'events/cascade-wines.jsonl');

  it('tests the supplier file given with --file', async () => {
    const r = await cellar(['mapping', 'test', '--file', join(EX, 'cascade-wines.yaml'), '--events', events]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('cascade-wines: 4 events, 4 accepted, 0 ignored (tombstones, stale), 0 rejected\n');
  });

  it('still takes --supplier <file> for this release, saying it is deprecated; not both', async () => {
    const r = await cellar(['mapping', 'test', '--supplier', join(EX, 'cascade-wines.yaml'), '--events', events]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^cellar mapping test: --supplier <file> is deprecated .*use --file <file>$/m);
    expect(r.stdout.trim().split('\n')).toHaveLength(4);
    expectUsageError(await cellar(['mapping', 'test', '--file', 'a.yaml', '--supplier', 'b.yaml', '--events', events]), /--supplier is the old name of --file/);
  });

  it('--help shows --file, not the deprecated name', async () => {
    const r = await cellar(['mapping', 'test', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--file <path>');
    expect(r.stdout).not.toContain('--supplier');
  });
});
