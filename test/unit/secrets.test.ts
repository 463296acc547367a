import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { rememberSecret, scrubSecrets } from '../../pipelines/core/secrets.js';
import { createLogger } from '../../pipelines/core/logger.js';

describe('secrets scrubbed from text that came from elsewhere', () => {
  it.each([
    ['jdbc:postgresql://cdc:s3cret-a@db:5432/inv', 'jdbc:postgresql://cdc:***@db:5432/inv'],
    ['redis://:s3cret-b@cache:6379/0 refused', 'redis://:***@cache:6379/0 refused'],
    ['mongodb+srv://app:s3cret-c@cluster0/x', 'mongodb+srv://app:***@cluster0/x'],
    ['?user=cdc&password=s3cret-d&ssl=true', '?user=cdc&password=***&ssl=true'],
    ['{"password":"s3cret-e","host":"h"}', '{"password":"***","host":"h"}'],
    ['sasl.jaas.config=PlainLoginModule required username="u" password="s3cret-f";', 'sasl.jaas.config=PlainLoginModule required username="u" password="***";'],
    ['api_key: s3cret-g', 'api_key: ***'],
    ['http://connect:8083/connectors/x/status', 'http://connect:8083/connectors/x/status'],
    ['FATAL: password authentication failed for user "cdc"', 'FATAL: password authentication failed for user "cdc"'],
  ])('%s', (text, shown) => {
    expect(scrubSecrets(text)).toBe(shown);
  });

  it('masks a resolved secret wherever it appears, URL-encoded too', () => {
    rememberSecret('p@ss w0rd!');
    expect(scrubSecrets('echoed p@ss w0rd! and p%40ss%20w0rd!')).toBe('echoed *** and ***');
    rememberSecret('abc'); // too short to mask without masking words
    expect(scrubSecrets('abc')).toBe('abc');
  });

  it('keeps secrets out of log lines: message, fields and errors', () => {
    const out: string[] = [];
    const log = createLogger('t', 'info', new Writable({ write: (c: Buffer, _e, cb) => (out.push(c.toString()), cb()) }));
    log.error({ err: new Error('connect postgres://u:s3cret-h@h/db'), detail: { to: 'redis://:s3cret-i@r' } }, 'failed with password=s3cret-j');
    const text = out.join('');
    expect(text).toContain('postgres://u:***@h/db');
    expect(text).toContain('"type":"Error"');
    expect(text).toContain('failed with password=***');
    expect(text).not.toMatch(/s3cret-[hij]/);
  });
});
