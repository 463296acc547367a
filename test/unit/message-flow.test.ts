import { describe, expect, it } from 'vitest';
import { MessageFlow } from '../../connectors/postgres-cdc/flow.js';

/** A flow whose handler waits on commits (`c…`) until the test releases them; everything else is handled at once. */
function harness() {
  const handled: string[] = [];
  const events: string[] = [];
  const failures: string[] = [];
  const gates: Array<() => void> = [];
  let stopped = false;
  const flow = new MessageFlow<string>({
    handle: (m) => {
      if (m.startsWith('throw')) throw new Error(m);
      handled.push(m);
      if (m.startsWith('reject')) return Promise.reject(new Error(m));
      if (!m.startsWith('c')) return undefined;
      return new Promise<void>((resolve) => gates.push(() => {
        handled.push(`${m} done`);
        resolve();
      }));
    },
    pause: () => events.push('pause'),
    resume: () => events.push('resume'),
    stopped: () => stopped,
    failed: (err) => failures.push((err as Error).message),
  });
  const settle = () => new Promise((r) => setTimeout(r, 0));
  return { flow, handled, events, failures, gates, settle, stop: () => (stopped = true) };
}

describe('the Postgres reader\'s flow control', () => {
  it('handles messages at once until a commit waits, then queues behind it in order, paused until it is done', async () => {
    const h = harness();
    for (const m of ['b1', 'r1', 'c1', 'b2', 'r2', 'c2', 'b3']) h.flow.push(m);
    expect(h.handled).toEqual(['b1', 'r1', 'c1']);
    expect(h.events).toEqual(['pause']);
    expect(h.flow.idle).toBe(false);
    expect(h.flow.queued).toBe(4);
    h.gates.shift()!();
    await h.settle();
    // c2 now waits: the rest stays queued, and the socket stays paused.
    expect(h.handled).toEqual(['b1', 'r1', 'c1', 'c1 done', 'b2', 'r2', 'c2']);
    expect(h.events).toEqual(['pause']);
    h.flow.push('r3');
    h.gates.shift()!();
    await h.settle();
    expect(h.handled).toEqual(['b1', 'r1', 'c1', 'c1 done', 'b2', 'r2', 'c2', 'c2 done', 'b3', 'r3']);
    expect(h.events).toEqual(['pause', 'resume']);
    expect(h.flow.idle).toBe(true);
    h.flow.push('r4');
    expect(h.handled.at(-1)).toBe('r4');
  });

  it('reports a handler that throws or rejects and goes on with the next message', async () => {
    const h = harness();
    for (const m of ['throw-1', 'r1', 'c1', 'reject-2', 'r2']) h.flow.push(m);
    h.gates.shift()!();
    await h.settle();
    expect(h.failures).toEqual(['throw-1', 'reject-2']);
    expect(h.handled).toEqual(['r1', 'c1', 'c1 done', 'reject-2', 'r2']);
    expect(h.events).toEqual(['pause', 'resume']);
    expect(h.flow.idle).toBe(true);
  });

  it('drops what is queued once the reader stopped, and does not resume the socket', async () => {
    const h = harness();
    for (const m of ['c1', 'r1', 'r2']) h.flow.push(m);
    h.stop();
    h.gates.shift()!();
    await h.settle();
    expect(h.handled).toEqual(['c1', 'c1 done']);
    expect(h.events).toEqual(['pause']);
    expect(h.flow.idle).toBe(true);
  });
});
