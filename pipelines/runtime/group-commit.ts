/**
 * The embedded runtime's group commit, apart from what a group holds: sources hand over batches as they
 * arrive; one loop takes everything that accumulated, prepares it (normalize and aggregate in memory) and
 * commits it, two groups deep (the next group is prepared while the previous one commits; commits stay in
 * order). The buffer is bounded: a full buffer makes the sources wait (their streams pause). Any failure
 * after retries stops the loop for good: memory is then ahead of the database, and a restart restores from
 * the database and resumes at the checkpoints.
 */
export class GroupCommitLoop<P, G> {
  private readonly buffer: P[] = [];
  private buffered = 0;
  private stopping = false;
  private wake: (() => void) | undefined;
  private space: Array<() => void> = [];
  /** Groups taken from the buffer, and how many of them are committing or committed. */
  private taken = 0;
  private committed = 0;
  /** The commit of the previous group, in flight while the next one is prepared. */
  private committing: Promise<void> = Promise.resolve();
  private fatal: Error | undefined;
  /** When the oldest batch in the buffer was handed over (ms, performance.now()). */
  private firstAt = 0;
  private readonly loop: Promise<void>;

  constructor(
    private readonly prepare: (taken: P[]) => Promise<G>,
    private readonly commit: (group: G) => Promise<void>,
    private readonly onFatal: (err: Error) => void,
    /** Buffered changes beyond which {@link GroupCommitLoop.push} waits. */
    private readonly maxBuffered = 50_000,
    /** Told, per group, how long it waited to be taken, was prepared, and waited for the previous commit (seconds). */
    private readonly observe?: (phase: 'wait' | 'prepare' | 'queued', seconds: number) => void,
  ) {
    this.loop = this.run();
  }

  /** The error that stopped the loop, if one did. */
  get failed(): Error | undefined {
    return this.fatal;
  }

  /** Resolves once the commit in flight (if any) has landed. */
  settled(): Promise<void> {
    return this.committing;
  }

  /** Stops the loop for good on `err` (first error wins). */
  stopOn = (err: unknown): void => {
    if (this.fatal) return;
    this.fatal = err instanceof Error ? err : new Error(String(err));
    this.onFatal(this.fatal);
    for (const r of this.space.splice(0)) r();
    this.wake?.();
  };

  /** Hands over one batch of `size` changes; waits while the buffer is full. Throws once the loop has stopped. */
  async push(item: P, size: number): Promise<void> {
    if (this.fatal) throw this.fatal;
    if (!this.buffer.length) this.firstAt = performance.now();
    this.buffer.push(item);
    this.buffered += size;
    this.wake?.();
    while (this.buffered > this.maxBuffered && !this.fatal) await new Promise<void>((r) => this.space.push(r));
  }

  /** Hands over a batch without waiting (corrections, which must not block their poller). */
  offer(item: P): void {
    if (!this.buffer.length) this.firstAt = performance.now();
    this.buffer.push(item);
    this.wake?.();
  }

  /**
   * Resolves once everything handed over so far has committed (the group holding the last batch, then its
   * commit); rejects when the loop stopped.
   */
  async drain(): Promise<void> {
    const last = this.taken + (this.buffer.length ? 1 : 0);
    while (this.committed < last && !this.fatal) await new Promise((r) => setTimeout(r, 10));
    await this.committing;
    if (this.fatal) throw this.fatal;
  }

  /** Commits what was handed over, then ends the loop. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.fatal) {
      if (!this.buffer.length) {
        if (this.stopping) break;
        await new Promise<void>((r) => (this.wake = r));
        continue;
      }
      const taken = this.buffer.splice(0);
      const takenAt = performance.now();
      this.observe?.('wait', (takenAt - this.firstAt) / 1000);
      this.taken++;
      this.buffered = 0;
      for (const r of this.space.splice(0)) r();
      let group: G;
      try {
        group = await this.prepare(taken);
      } catch (err) {
        this.stopOn(err);
        break;
      }
      const preparedAt = performance.now();
      this.observe?.('prepare', (preparedAt - takenAt) / 1000);
      await this.committing;
      this.observe?.('queued', (performance.now() - preparedAt) / 1000);
      if (this.fatal) break;
      this.committing = this.commit(group).catch(this.stopOn);
      this.committed = this.taken;
    }
    await this.committing;
  }
}
