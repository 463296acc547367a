import { describe, expect, it } from 'vitest';
import { resumePoint, storedPosition } from '../../pipelines/state/checkpoints.js';

describe('one stored checkpoint form for both runtimes', () => {
  const position = { file: 'mariadb-bin.000003', pos: 1234, gtids: '0-1-77' };

  it('stores an LSN as lsn and a binlog position as position, and resumes only from a binlog position', () => {
    expect(storedPosition({ kind: 'postgres', lsn: '0/16B3748' })).toEqual({ lsn: '0/16B3748' });
    expect(storedPosition({ kind: 'mysql', position })).toEqual({ position });
    expect(resumePoint({ kind: 'mariadb', ...storedPosition({ kind: 'mysql', position }), snapshotDone: true })).toEqual({ kind: 'mysql', position });
    // Postgres resumes from its slot: the stored LSN is for people, not for the reader.
    expect(resumePoint({ kind: 'postgres', lsn: '0/16B3748', snapshotDone: true })).toBeUndefined();
  });

  it('reads checkpoints written before this form (the embedded runtime kept the LSN text under position)', () => {
    expect(resumePoint({ kind: 'postgres', position: '0/16B3748', snapshotDone: true })).toBeUndefined();
    expect(resumePoint({ kind: 'mysql', position, snapshotDone: true })).toEqual({ kind: 'mysql', position });
    expect(resumePoint(undefined)).toBeUndefined();
  });
});
