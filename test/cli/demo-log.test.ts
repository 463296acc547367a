import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fileLogger } from '../../pipelines/demo/log.js';

/** `cellar demo` keeps the terminal for people: its log lines go to a file, in Cellar's log format. */
describe('the demo\'s log file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cellar-demo-log-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('gets JSON lines at the level asked, with secrets redacted as in every Cellar log', () => {
    const file = join(dir, 'sub', 'cellar.log');
    const log = fileLogger(file, 'demo', 'info');
    log.debug('not at info');
    log.info({ url: 'postgres://u:pw@h/db', conn: { password: 'pw', host: 'h' }, rows: 3 }, 'snapshot complete');
    log.error({ err: new Error('Connection terminated unexpectedly') }, 'replication stream error');
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.msg)).toEqual(['snapshot complete', 'replication stream error']);
    expect(lines[0]).toMatchObject({ level: 30, component: 'demo', url: '[redacted]', conn: { password: '[redacted]', host: 'h' }, rows: 3 });
    expect(lines[1]).toMatchObject({ level: 50, err: { message: 'Connection terminated unexpectedly' } });
    expect(typeof lines[0]!.time).toBe('string');
  });
});
