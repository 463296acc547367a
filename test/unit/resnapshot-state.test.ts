import { describe, expect, it } from 'vitest';
import { afterBatch, oweSnapshot, snapshotStateOf, type SnapshotState } from '../../pipelines/runtime/resnapshot.js';

/** What a reader owes after `cellar resnapshot` requests, and how its batches settle it (pipelines/runtime/resnapshot.ts). */
describe('resnapshot state in checkpoints', () => {
  it('reads a checkpoint: none or an old one owes the initial snapshot; owed tables and requests are kept', () => {
    expect(snapshotStateOf(undefined)).toEqual({ snapshotDone: false });
    expect(snapshotStateOf({ snapshotDone: true })).toEqual({ snapshotDone: true });
    expect(snapshotStateOf({ snapshotDone: true, snapshotTables: ['public.a'], resnapshotRequests: [4] })).toEqual({ snapshotDone: true, snapshotTables: ['public.a'], resnapshotRequests: [4] });
  });

  it('adds requested tables to those owed; a request without tables, or an owed full snapshot, owes every table', () => {
    const done: SnapshotState = { snapshotDone: true };
    const a = oweSnapshot(done, [{ id: 1, tables: ['public.a'] }]);
    expect(a).toEqual({ snapshotDone: true, snapshotTables: ['public.a'], resnapshotRequests: [1] });
    expect(oweSnapshot(a, [{ id: 2, tables: ['public.b', 'public.a'] }])).toEqual({ snapshotDone: true, snapshotTables: ['public.a', 'public.b'], resnapshotRequests: [1, 2] });
    expect(oweSnapshot(a, [{ id: 2, tables: null }])).toEqual({ snapshotDone: false, resnapshotRequests: [1, 2] });
    expect(oweSnapshot({ snapshotDone: false }, [{ id: 3, tables: ['public.a'] }])).toEqual({ snapshotDone: false, resnapshotRequests: [3] });
  });

  it('settles what is owed on the batch that ends the snapshot, returning the requests it finishes', () => {
    const states = new Map<string, SnapshotState>([['acme', { snapshotDone: true, snapshotTables: ['public.a'], resnapshotRequests: [1, 2] }]]);
    expect(afterBatch(states, 'acme', { snapshot: true })).toEqual([]);
    expect(states.get('acme')?.snapshotTables).toEqual(['public.a']);
    expect(afterBatch(states, 'acme', { snapshot: true, snapshotComplete: true })).toEqual([1, 2]);
    expect(states.get('acme')).toEqual({ snapshotDone: true });
    expect(afterBatch(states, 'acme', { snapshot: false })).toEqual([]);
    // A reader that never snapshots (snapshot: never) is done once it streams.
    states.set('b', { snapshotDone: false });
    afterBatch(states, 'b', { snapshot: false });
    expect(states.get('b')).toEqual({ snapshotDone: true });
  });
});
